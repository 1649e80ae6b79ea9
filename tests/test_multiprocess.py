"""Two training processes on a CPU: loss logged once, files written once, identical weights on every rank.

accelerate runs several CPU processes through torchrun with `--multi_gpu` (it then uses the gloo backend);
`accelerate launch --cpu --num_processes 2` needs MPI (`--mpirun_hostfile`) and otherwise starts a single process."""
import hashlib, json, re, subprocess, sys, textwrap
import pytest, torch
from PIL import Image
from safetensors.torch import load_file
from dreambooth_nb.checkpoint import checkpoint_weights
from dreambooth_nb.data import sample_subject_dir

LAUNCH = ['accelerate', 'launch', '--multi_gpu', '--num_processes', '2', '--num_machines', '1', '--mixed_precision', 'no',
          '--dynamo_backend', 'no']
FLAGS = ['--resolution', '64', '--max_train_steps', '6', '--with_prior_preservation', '--num_class_images', '4',
         '--prior_num_inference_steps', '2', '--train_text_encoder', '--learning_rate', '1e-4', '--checkpointing_steps', '3',
         '--validation_steps', '3', '--num_inference_steps', '2', '--num_validation_images', '1', '--random_flip']

RANK_SCRIPT = textwrap.dedent('''
    import hashlib, sys
    from dreambooth_nb.config import TrainConfig
    from dreambooth_nb.run import train
    t = train(TrainConfig.from_yaml(sys.argv[1]))
    h = hashlib.sha256()
    for k, v in sorted(t.accelerator.unwrap_model(t.models['unet']).state_dict().items()): h.update(v.detach().numpy().tobytes())
    print(f"RANK {t.accelerator.process_index} WEIGHTS {h.hexdigest()}", flush=True)
''')

def _weights_hash(state: dict) -> str:
    h = hashlib.sha256()
    for k, v in sorted(state.items()): h.update(v.numpy().tobytes())
    return h.hexdigest()

@pytest.fixture(scope='module')
def base_model(tmp_path_factory):
    from dreambooth_nb.load import tiny
    return tiny('sd15').save_pretrained(tmp_path_factory.mktemp('base') / 'tiny')

def _run(cmd, timeout=600):
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr[-4000:]
    return res

def test_two_processes_train_one_model(tmp_path, base_model):
    from dreambooth_nb.config import TrainConfig
    cfg = TrainConfig(pretrained_model_name_or_path=str(base_model), output_dir=str(tmp_path / 'run'), resolution=64,
                      max_train_steps=6, with_prior_preservation=True, num_class_images=4, prior_num_inference_steps=2,
                      train_text_encoder=True, learning_rate=1e-4, checkpointing_steps=3, validation_steps=3,
                      num_inference_steps=2, num_validation_images=1, random_flip=True)
    cfg.to_yaml(tmp_path / 'cfg.yaml')
    (tmp_path / 'rank.py').write_text(RANK_SCRIPT)
    res = _run(LAUNCH + [str(tmp_path / 'rank.py'), str(tmp_path / 'cfg.yaml')])
    hashes = dict(re.findall(r'RANK (\d) WEIGHTS (\w+)', res.stdout))
    assert sorted(hashes) == ['0', '1'] and hashes['0'] == hashes['1']                  # identical weights on every rank
    run = tmp_path / 'run'
    saved = checkpoint_weights(run / 'checkpoint-6', ema=False)['unet']
    assert _weights_hash(saved) == hashes['0']                                          # ... and in the checkpoint
    steps = [json.loads(l)['step'] for l in (run / 'metrics.jsonl').read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]                                                  # loss logged once per step
    priors = sorted((run / 'priors').iterdir())
    assert [p.name for p in priors] == [f'class-{i:05d}.png' for i in range(4)]             # priors generated once, images only
    assert all('dreambooth_nb' in Image.open(p).info for p in priors)
    assert sorted(p.name for p in (run / 'samples').iterdir()) == ['step-000003.png', 'step-000006.png']

def test_module_cli_under_accelerate_launch(tmp_path, base_model):
    res = _run(LAUNCH + ['-m', 'dreambooth_nb', 'train', '--pretrained_model_name_or_path', str(base_model),
                         '--instance_data_dir', str(sample_subject_dir()), '--output_dir', str(tmp_path / 'run')] + FLAGS)
    assert res.stdout.count('Run folder:') == 1                                         # the summary is printed once
    assert sorted(p.name for p in (tmp_path / 'run').glob('checkpoint-*')) == ['checkpoint-3', 'checkpoint-6']

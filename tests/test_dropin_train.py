"""`dreambooth-nb train` run with train_dreambooth.py's command line leaves output_dir as the script does: the pipeline or
pytorch_lora_weights.safetensors at the root, checkpoint-N folders, total limit, resume by name and 'latest'."""
import json, shutil
from pathlib import Path
import pytest
import torch
from tests.conftest import run_cli

def _args(model, out, steps, *extra):
    from dreambooth_nb.data import sample_subject_dir
    return ['train', '--pretrained_model_name_or_path', model, '--instance_data_dir', sample_subject_dir(), '--output_dir', out,
            '--instance_prompt', 'a photo of sks dog', '--resolution', '64', '--train_batch_size', '1',
            '--gradient_accumulation_steps', '1', '--max_train_steps', str(steps), '--learning_rate', '5.0e-04',
            '--lr_scheduler', 'constant', '--lr_warmup_steps', '0', '--checkpointing_steps', '2', '--validation_steps', '100', *extra]

@pytest.fixture(scope='module')
def base(tmp_path_factory):
    from dreambooth_nb.load import tiny
    return tiny('sd15').save_pretrained(tmp_path_factory.mktemp('base') / 'tiny-sd15')

def test_full_fine_tune_total_limit_and_resume(base, tmp_path):
    from diffusers import DiffusionPipeline
    out = tmp_path / 'out'
    res = run_cli(*_args(base, out, 6, '--checkpoints_total_limit', '2'))
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in out.glob('checkpoint-*')) == ['checkpoint-4', 'checkpoint-6']
    for f in ('model_index.json', 'unet/diffusion_pytorch_model.safetensors', 'scheduler/scheduler_config.json'): assert (out / f).is_file()
    pipe = DiffusionPipeline.from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    img = pipe('a photo of sks dog', num_inference_steps=1, height=64, width=64, output_type='np').images
    assert img.shape == (1, 64, 64, 3)
    res = run_cli(*_args(base, out, 8, '--checkpoints_total_limit', '2', '--resume_from_checkpoint', 'checkpoint-4'))
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in out.glob('checkpoint-*')) == ['checkpoint-6', 'checkpoint-8']
    res = run_cli(*_args(base, out, 10, '--resume_from_checkpoint', 'latest'))
    assert res.returncode == 0, res.stderr[-2000:]
    assert [json.loads(l)['step'] for l in (out / 'metrics.jsonl').read_text().splitlines()] == list(range(1, 11))
    assert DiffusionPipeline.from_pretrained(out).unet is not None        # the final pipeline was replaced, still loads

def test_lora_with_text_encoder_writes_pytorch_lora_weights(base, tmp_path):
    from diffusers import StableDiffusionPipeline
    from safetensors import safe_open
    out = tmp_path / 'lora'
    res = run_cli(*_args(base, out, 2, '--rank', '4', '--train_text_encoder'))     # --rank without --mode: LoRA, as the LoRA script
    assert res.returncode == 0, res.stderr[-2000:]
    path = out / 'pytorch_lora_weights.safetensors'
    with safe_open(path, 'pt') as f:
        prefixes = {k.split('.')[0] for k in f.keys()}
        meta = f.metadata()
    assert prefixes == {'unet', 'text_encoder'}
    adapter = json.loads(meta['lora_adapter_metadata'])
    assert (adapter['unet.r'], adapter['unet.lora_alpha'], adapter['text_encoder.r']) == (4, 4, 4)   # alpha defaults to the rank
    pipe = StableDiffusionPipeline.from_pretrained(base)
    pipe.load_lora_weights(out)
    assert any('lora' in n for n, _ in pipe.unet.named_parameters())
    assert not (out / 'model_index.json').exists()                              # LoRA runs leave the LoRA file, not a pipeline

def _safetensors_bytes(folder): return sum(p.stat().st_size for p in Path(folder).rglob('*.safetensors'))

def test_full_checkpoint_loads_the_scripts_way(base, tmp_path):
    "checkpoint-N/unet and checkpoint-N/text_encoder load with from_pretrained(subfolder=...), as the script's README does; weights stored once."
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel
    out = tmp_path / 'out'
    res = run_cli(*_args(base, out, 2, '--train_text_encoder'))
    assert res.returncode == 0, res.stderr[-2000:]
    unet = UNet2DConditionModel.from_pretrained(out, subfolder='checkpoint-2/unet')
    text_encoder = CLIPTextModel.from_pretrained(out, subfolder='checkpoint-2/text_encoder')
    for loaded, final in ((unet, UNet2DConditionModel.from_pretrained(out, subfolder='unet')),
                          (text_encoder, CLIPTextModel.from_pretrained(out, subfolder='text_encoder'))):
        theirs = final.state_dict()
        assert all(torch.equal(v, theirs[k]) for k, v in loaded.state_dict().items())        # the trained weights at step 2
    ckpt = out / 'checkpoint-2'
    assert not (ckpt / 'unet.safetensors').exists() and not (ckpt / 'text_encoder.safetensors').exists()
    once = (out / 'unet' / 'diffusion_pytorch_model.safetensors').stat().st_size + (out / 'text_encoder' / 'model.safetensors').stat().st_size
    assert _safetensors_bytes(ckpt) < 1.05 * once                                 # one copy of the weights, not two
    res = run_cli(*_args(base, out, 4, '--train_text_encoder', '--resume_from_checkpoint', 'checkpoint-2'))
    assert res.returncode == 0, res.stderr[-2000:]
    assert [json.loads(l)['step'] for l in (out / 'metrics.jsonl').read_text().splitlines()] == [1, 2, 3, 4]

def test_lora_checkpoint_loads_with_load_lora_weights(base, tmp_path):
    "checkpoint-N/pytorch_lora_weights.safetensors: pipe.load_lora_weights(checkpoint folder) gets the adapters trained to step N."
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file
    out = tmp_path / 'lora'
    res = run_cli(*_args(base, out, 2, '--rank', '4', '--lora_alpha', '8', '--train_text_encoder'))
    assert res.returncode == 0, res.stderr[-2000:]
    ckpt = out / 'checkpoint-2'
    saved, final = load_file(ckpt / 'pytorch_lora_weights.safetensors'), load_file(out / 'pytorch_lora_weights.safetensors')
    assert set(saved) == set(final) and all(torch.equal(v, final[k]) for k, v in saved.items())   # the same keys and weights
    assert sorted(p.name for p in ckpt.glob('*.safetensors')) == ['pytorch_lora_weights.safetensors']   # stored once
    pipe = StableDiffusionPipeline.from_pretrained(base)
    pipe.load_lora_weights(ckpt)
    lora_b = {n: p for n, p in pipe.unet.named_parameters() if 'lora_B' in n}
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b.values())               # trained adapters (lora_B starts at zero)
    assert pipe.unet.peft_config['default_0'].lora_alpha == 8                         # alpha read from the metadata
    assert any('lora' in n for n, _ in pipe.text_encoder.named_parameters())

def test_total_limit_leaves_the_scripts_checkpoints_and_latest_continues(base, tmp_path):
    "7 steps, every 2, limit 2: checkpoint-4 and checkpoint-6 as the script; step 7 kept resumable in final-state, and 'latest' continues from it."
    from dreambooth_nb.checkpoint import checkpoint_problem
    out = tmp_path / 'out'
    res = run_cli(*_args(base, out, 7, '--checkpoints_total_limit', '2'))
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in out.glob('checkpoint-*')) == ['checkpoint-4', 'checkpoint-6']
    final_state = out / 'final-state'
    assert checkpoint_problem(final_state) is None and json.loads((final_state / 'manifest.json').read_text())['step'] == 7
    step7 = (out / 'metrics.jsonl').read_text().splitlines()[6]
    res = run_cli(*_args(base, out, 9, '--checkpoints_total_limit', '2', '--resume_from_checkpoint', 'latest'))
    assert res.returncode == 0, res.stderr[-2000:]
    lines = (out / 'metrics.jsonl').read_text().splitlines()
    assert [json.loads(l)['step'] for l in lines] == list(range(1, 10))
    assert lines[6] == step7                                        # step 7 was not trained again: it resumed from final-state
    assert sorted(p.name for p in out.glob('checkpoint-*')) == ['checkpoint-6', 'checkpoint-8']
    assert json.loads((final_state / 'manifest.json').read_text())['step'] == 9

def test_every_checkpoint_damaged_refuses_and_keeps_the_finished_model(base, tmp_path):
    "'latest' with every checkpoint corrupt: one error line naming them; nothing restarts from step 0 over the finished model."
    out = tmp_path / 'out'
    res = run_cli(*_args(base, out, 4))
    assert res.returncode == 0, res.stderr[-2000:]
    for ckpt in out.glob('checkpoint-*'):
        w = ckpt / 'unet' / 'diffusion_pytorch_model.safetensors'
        w.write_bytes(w.read_bytes()[:-100])
    final = out / 'unet' / 'diffusion_pytorch_model.safetensors'
    before, metrics = (final.read_bytes(), final.stat().st_mtime_ns), (out / 'metrics.jsonl').read_text()
    res = run_cli(*_args(base, out, 6, '--resume_from_checkpoint', 'latest'))
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    errors = [l for l in res.stderr.splitlines() if l.startswith('error:')]
    assert len(errors) == 1 and 'Traceback' not in res.stderr, res.stderr[-2000:]
    assert 'checkpoint-2' in errors[0] and 'checkpoint-4' in errors[0] and 'checksum' in errors[0], errors[0]
    assert (final.read_bytes(), final.stat().st_mtime_ns) == before and (out / 'metrics.jsonl').read_text() == metrics
    for ckpt in out.glob('checkpoint-*'): shutil.rmtree(ckpt)               # no checkpoint at all, but a finished model
    res = run_cli(*_args(base, out, 6, '--resume_from_checkpoint', 'latest'))
    assert res.returncode == 2 and 'holds a finished model but no checkpoint' in res.stderr, res.stderr[-2000:]
    assert (final.read_bytes(), final.stat().st_mtime_ns) == before

"""FLUX.2 [klein] through the same machinery: LoRA DreamBooth with prior preservation, bit-identical resume, sampling with
reference images (also from the CLI), LoRA files that diffusers' Flux2KleinPipeline loads."""
import json
import pytest, torch
from PIL import Image
from diffusers import Flux2KleinPipeline
from tests.conftest import run_cli, train_stopped_and_resumed

def _cfg(out, **kw):
    from dreambooth_nb.config import preset
    from dreambooth_nb.data import sample_subject_dir
    return preset('tiny', **{'pretrained_model_name_or_path': 'tiny:flux2-klein', 'instance_data_dir': str(sample_subject_dir()),
                             'output_dir': str(out), 'mode': 'lora', 'rank': 4, 'train_text_encoder': False, 'max_train_steps': 6,
                             'num_class_images': 2, 'prior_num_inference_steps': 2, 'checkpointing_steps': 3, 'validation_steps': 3,
                             'num_validation_images': 1, 'num_inference_steps': 2, 'learning_rate': 1e-2,
                             'gradient_checkpointing': True, **kw})

def _losses(run): return [json.loads(l)['loss'] for l in (run / 'metrics.jsonl').read_text().splitlines()]

@pytest.fixture(scope='module')
def klein_run(tmp_path_factory):
    from dreambooth_nb.run import train
    run = tmp_path_factory.mktemp('klein') / 'run'
    trainer = train(_cfg(run))
    assert {'instance_loss', 'prior_loss'} <= set(trainer.history[0])            # prior preservation is on
    assert trainer.cache is not None and all(how == 'emb' for how, _ in trainer.text.values())    # cached latents, precomputed embeddings
    return run

def test_lora_prior_preservation_and_bit_identical_resume(klein_run, tmp_path):
    run = tmp_path / 'resumed'
    train_stopped_and_resumed(_cfg, run)
    assert _losses(run) == _losses(klein_run)
    assert sorted(p.name for p in (klein_run / 'samples').iterdir()) == ['step-000003.png', 'step-000006.png']
    assert (klein_run / 'checkpoint-6' / 'pytorch_lora_weights.safetensors').is_file()   # diffusers' LoRA checkpoint

def test_min_snr_is_refused_for_flow_matching(tmp_path):
    from dreambooth_nb.config import ConfigError
    from dreambooth_nb.run import train
    with pytest.raises(ConfigError, match='flow matching'):
        train(_cfg(tmp_path / 'snr', snr_gamma=5.0))
    assert not (tmp_path / 'snr').exists()                                     # refused before priors or any file

def test_an_unknown_lora_layout_is_refused_with_a_clear_error(klein_run, tmp_path):
    from dreambooth_nb.config import ConfigError
    from dreambooth_nb.export import export_lora
    with pytest.raises(ConfigError, match='Unknown LoRA format'):          # comfyui and kohya keys: tests/test_interop.py
        export_lora(klein_run, tmp_path / 'k', fmt='a1111')
    assert not (tmp_path / 'k').exists()

def test_lora_file_loads_in_the_klein_pipeline(klein_run, tmp_path):
    from dreambooth_nb.export import export_lora
    from dreambooth_nb.load import tiny
    out = export_lora(klein_run, tmp_path / 'lora')                             # checks itself against the trained model
    pipe = tiny('flux2-klein').save_pretrained(tmp_path / 'base')
    pipe = Flux2KleinPipeline.from_pretrained(tmp_path / 'base')
    pipe.load_lora_weights(str(out / 'pytorch_lora_weights.safetensors'))
    assert pipe.get_list_adapters() == {'transformer': ['default_0']}

def test_sampling_with_reference_images(klein_run, tmp_path):
    from dreambooth_nb.checkpoint import load_trained
    from dreambooth_nb.sampling import generate
    trained, _ = load_trained(klein_run)
    refs = [Image.new('RGB', (64, 64), c) for c in ('red', 'blue')]
    a, b = generate(trained, ['the olis dog in the style of image 2'], seeds=[0, 1], num_inference_steps=2, ref_images=refs)
    assert a.size == (64, 64) and a.tobytes() != b.tobytes()
    (c,) = generate(trained, ['the olis dog in the style of image 2'], seeds=[0], num_inference_steps=2, ref_images=refs[::-1])
    assert c.tobytes() != a.tobytes()                                           # the references change the image
    for i, r in enumerate(refs): r.save(tmp_path / f'ref{i}.png')
    res = run_cli('sample', '--run', klein_run, '--seeds', '0', '--num_inference_steps', '2', '--prompt', 'the {identifier} dog like image 1',
                  '--ref', tmp_path / 'ref0.png', '--ref', tmp_path / 'ref1.png', '--out', tmp_path / 'cli')
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / 'cli').iterdir()) == ['001-00-seed0.png', '001-grid.png']

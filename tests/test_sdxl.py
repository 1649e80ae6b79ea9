"""SDXL through the same machinery: LoRA DreamBooth with prior preservation, bit-identical resume, sampling, exports
that diffusers' StableDiffusionXLPipeline loads."""
import json
import pytest, torch
from diffusers import DiffusionPipeline, StableDiffusionXLPipeline
from tests.conftest import train_stopped_and_resumed

def _cfg(out, **kw):
    from dreambooth_nb.config import preset
    from dreambooth_nb.data import sample_subject_dir
    return preset('tiny', **{'pretrained_model_name_or_path': 'tiny:sdxl', 'instance_data_dir': str(sample_subject_dir()),
                             'output_dir': str(out), 'mode': 'lora', 'rank': 4, 'max_train_steps': 6, 'num_class_images': 2,
                             'prior_num_inference_steps': 2, 'checkpointing_steps': 3, 'validation_steps': 3,
                             'num_validation_images': 1, 'num_inference_steps': 2, 'learning_rate': 1e-2, **kw})

def _losses(run): return [json.loads(l)['loss'] for l in (run / 'metrics.jsonl').read_text().splitlines()]

@pytest.fixture(scope='module')
def sdxl_run(tmp_path_factory):
    from dreambooth_nb.run import train
    run = tmp_path_factory.mktemp('sdxl') / 'run'
    trainer = train(_cfg(run))
    assert {'instance_loss', 'prior_loss'} <= set(trainer.history[0])            # prior preservation is on
    return run

def test_lora_prior_preservation_and_bit_identical_resume(sdxl_run, tmp_path):
    run = tmp_path / 'resumed'
    train_stopped_and_resumed(_cfg, run)
    assert _losses(run) == _losses(sdxl_run)
    assert sorted(p.name for p in (sdxl_run / 'samples').iterdir()) == ['step-000003.png', 'step-000006.png']

def test_lora_files_load_in_the_sdxl_pipeline(sdxl_run, tmp_path):
    from dreambooth_nb.export import export_lora
    from dreambooth_nb.load import tiny
    for fmt, name in (('diffusers', 'pytorch_lora_weights.safetensors'), ('kohya', 'lora.safetensors')):
        out = export_lora(sdxl_run, tmp_path / fmt, fmt=fmt)                       # checks itself against the trained model
        pipe = tiny('sdxl').pipeline()
        assert isinstance(pipe, StableDiffusionXLPipeline)
        pipe.load_lora_weights(str(out / name))
        assert len(pipe.get_list_adapters()) == 3                                  # unet, text_encoder, text_encoder_2

def test_diffusers_folder_and_sampling(sdxl_run, tmp_path):
    from dreambooth_nb.export import export_diffusers
    from dreambooth_nb.checkpoint import load_trained
    from dreambooth_nb.sampling import generate
    out = export_diffusers(sdxl_run, tmp_path / 'folder')
    pipe = DiffusionPipeline.from_pretrained(out)
    assert type(pipe).__name__ == 'StableDiffusionXLPipeline'
    trained, _ = load_trained(sdxl_run)
    a, b = generate(trained, ['a photo of olis dog'], seeds=[0, 1], num_inference_steps=2)
    assert a.size == (64, 64) and a.tobytes() != b.tobytes()

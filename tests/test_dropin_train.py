"""`dreambooth-nb train` run with train_dreambooth.py's command line leaves output_dir as the script does: the pipeline or
pytorch_lora_weights.safetensors at the root, checkpoint-N folders, total limit, resume by name and 'latest'."""
import json
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

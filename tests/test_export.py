"`dreambooth-nb export`: what it writes loads in diffusers' own loaders and reproduces the trained model."
import pytest, torch
from diffusers import DiffusionPipeline, StableDiffusionPipeline
from tests.conftest import run_cli

@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    from dreambooth_nb.run import demo
    root = tmp_path_factory.mktemp('runs')
    kw = dict(max_train_steps=3, num_class_images=2, prior_num_inference_steps=2, validation_steps=100, num_validation_images=1,
              num_inference_steps=2, learning_rate=1e-2)
    demo(root / 'full', **kw); demo(root / 'lora', mode='lora', rank=4, **kw)
    return root

def _one_step(unet, text_encoder, tokenizer):
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(1, 4, 32, 32, generator=g), torch.tensor([500])
    ids = tokenizer(['a photo of olis dog'], padding='max_length', max_length=77, return_tensors='pt').input_ids
    with torch.no_grad(): return unet(x, t, encoder_hidden_states=text_encoder(ids)[0]).sample

def test_diffusers_folder_loads_with_diffusion_pipeline(runs, tmp_path):
    from dreambooth_nb.checkpoint import load_trained
    res = run_cli('export', '--run', runs / 'full', '--format', 'diffusers', '--out', tmp_path / 'sd')
    assert res.returncode == 0, res.stderr[-2000:]
    pipe = DiffusionPipeline.from_pretrained(tmp_path / 'sd')
    trained, _ = load_trained(runs / 'full')
    torch.testing.assert_close(_one_step(pipe.unet, pipe.text_encoder, pipe.tokenizer),
                               _one_step(trained.unet, trained.text_encoder, trained.tokenizer))
    assert pipe('a photo of olis dog', num_inference_steps=2, height=64, width=64).images[0].size == (64, 64)
    assert 'olis dog' in (tmp_path / 'sd' / 'README.md').read_text()

@pytest.mark.parametrize('lora_format,filename', [('diffusers', 'pytorch_lora_weights.safetensors'), ('kohya', 'lora.safetensors')])
def test_lora_file_loads_with_load_lora_weights(runs, tmp_path, lora_format, filename):
    from dreambooth_nb.checkpoint import load_trained
    from dreambooth_nb.backbones import load_backbone
    res = run_cli('export', '--run', runs / 'lora', '--format', 'lora', '--lora_format', lora_format, '--out', tmp_path / 'l')
    assert res.returncode == 0, res.stderr[-2000:]
    pipe = StableDiffusionPipeline.from_pretrained(runs / 'lora' / 'base-model')
    before = _one_step(pipe.unet, pipe.text_encoder, pipe.tokenizer)
    pipe.load_lora_weights(str(tmp_path / 'l' / filename))
    trained, _ = load_trained(runs / 'lora')
    after, expected = _one_step(pipe.unet, pipe.text_encoder, pipe.tokenizer), _one_step(trained.unet, trained.text_encoder, trained.tokenizer)
    torch.testing.assert_close(after, expected, atol=1e-4, rtol=1e-4)
    assert (after - before).abs().max() > 1e-3                                   # the LoRA changes the model

def test_lora_extracted_from_a_full_run(runs, tmp_path):
    res = run_cli('export', '--run', runs / 'full', '--format', 'lora', '--rank', '2', '--out', tmp_path / 'x')
    assert res.returncode == 0, res.stderr[-2000:]
    assert 'extracted' in (tmp_path / 'x' / 'README.md').read_text()

def test_export_of_a_missing_run_is_a_clean_error(tmp_path):
    res = run_cli('export', '--run', tmp_path / 'nope', '--format', 'diffusers')
    assert res.returncode == 2 and 'does not exist' in res.stderr and 'Traceback' not in res.stderr

def test_single_file_loads_with_from_single_file_and_as_a_base(runs, tmp_path):
    from dreambooth_nb.checkpoint import load_trained
    res = run_cli('export', '--run', runs / 'full', '--format', 'single-file', '--out', tmp_path / 'sf')
    assert res.returncode == 0, res.stderr[-2000:]
    pipe = StableDiffusionPipeline.from_single_file(str(tmp_path / 'sf' / 'model.safetensors'), config=str(runs / 'full' / 'base-model'))
    trained, _ = load_trained(runs / 'full')
    torch.testing.assert_close(_one_step(pipe.unet, pipe.text_encoder, pipe.tokenizer),
                               _one_step(trained.unet, trained.text_encoder, trained.tokenizer))
    # a new run can start from the single file
    res = run_cli('train', '--pretrained_model_name_or_path', tmp_path / 'sf' / 'model.safetensors', '--base_config',
                  runs / 'full' / 'base-model', '--resolution', '64', '--max_train_steps', '1', '--output_dir', tmp_path / 'r2',
                  '--validation_steps', '10', '--num_inference_steps', '1', '--num_validation_images', '1')
    assert res.returncode == 0, res.stderr[-2000:]

def test_pickled_base_model_is_refused_without_trust(tmp_path):
    (tmp_path / 'model.ckpt').write_bytes(b'\x80\x04 not unpickled')
    res = run_cli('train', '--pretrained_model_name_or_path', tmp_path / 'model.ckpt', '--output_dir', tmp_path / 'r')
    assert res.returncode == 2 and 'pickled checkpoint' in res.stderr and 'Traceback' not in res.stderr
    assert not (tmp_path / 'r').exists()

"`dreambooth-nb export`: what it writes loads in diffusers' own loaders and reproduces the trained model."
import os, stat
import pytest, torch
from diffusers import DiffusionPipeline, StableDiffusionPipeline
from tests.conftest import run_cli

@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    from dreambooth_nb.run import tiny_demo
    root = tmp_path_factory.mktemp('runs')
    kw = dict(max_train_steps=3, num_class_images=2, prior_num_inference_steps=2, validation_steps=100, num_validation_images=1,
              num_inference_steps=2, learning_rate=1e-2)
    tiny_demo(root / 'full', **kw); tiny_demo(root / 'lora', mode='lora', rank=4, **kw)
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
    from dreambooth_nb.load import load_backbone
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
    from dreambooth_nb.data import sample_subject_dir
    res = run_cli('train', '--instance_data_dir', sample_subject_dir(), '--pretrained_model_name_or_path', tmp_path / 'sf' / 'model.safetensors', '--base_config',
                  runs / 'full' / 'base-model', '--resolution', '64', '--max_train_steps', '1', '--output_dir', tmp_path / 'r2',
                  '--validation_steps', '10', '--num_inference_steps', '1', '--num_validation_images', '1')
    assert res.returncode == 0, res.stderr[-2000:]

def test_pickled_base_model_is_refused_without_trust(tmp_path):
    from dreambooth_nb.data import sample_subject_dir
    (tmp_path / 'model.ckpt').write_bytes(b'\x80\x04 not unpickled')
    res = run_cli('train', '--instance_data_dir', sample_subject_dir(), '--pretrained_model_name_or_path', tmp_path / 'model.ckpt', '--output_dir', tmp_path / 'r')
    assert res.returncode == 2 and 'pickled checkpoint' in res.stderr and 'Traceback' not in res.stderr
    assert not (tmp_path / 'r').exists()

# --- exports never delete or overwrite what they did not write (issue 11) ---

def _snapshot(root):
    return {p: p.read_bytes() for p in root.rglob('*') if p.is_file()}

def _unchanged(before):
    for p, data in before.items(): assert p.is_file() and p.read_bytes() == data, p

def _modes(root):
    return {stat.S_IMODE(os.stat(p).st_mode) for p in [root, *root.rglob('*')] if p.is_dir()}, \
           {stat.S_IMODE(os.stat(p).st_mode) for p in root.rglob('*') if p.is_file()}

def test_lora_into_a_folder_of_other_files_adds_beside_them(runs, tmp_path):
    from dreambooth_nb.export import export_lora
    from dreambooth_nb.outputs import OutputError
    lib = tmp_path / 'webui' / 'models' / 'Lora'; lib.mkdir(parents=True)
    (lib / 'other.safetensors').write_bytes(b'another tool'); (lib / 'notes.txt').write_text('mine')
    before = _snapshot(lib)
    out = export_lora(runs / 'lora', lib)
    assert out == lib / 'lora-step-3.safetensors' and out.is_file() and (lib / 'lora-step-3.md').is_file()
    _unchanged(before)
    with pytest.raises(OutputError, match='overwrite'): export_lora(runs / 'lora', lib)
    export_lora(runs / 'lora', lib, overwrite=True)                               # replaces only ours
    _unchanged(before)
    assert sorted(p.name for p in lib.iterdir()) == ['.dreambooth_nb-export.json', 'lora-step-3.md', 'lora-step-3.safetensors',
                                                      'notes.txt', 'other.safetensors']
    pipe = StableDiffusionPipeline.from_pretrained(runs / 'lora' / 'base-model')
    pipe.load_lora_weights(str(lib), weight_name='lora-step-3.safetensors')

def test_export_into_the_run_folder_leaves_the_run_intact(runs, tmp_path):
    from dreambooth_nb.export import export_lora, export_diffusers
    before = _snapshot(runs / 'lora')
    for overwrite in (False, True):                                               # `--out .` inside the run, twice
        lora = export_lora(runs / 'lora', runs / 'lora', overwrite=overwrite)
        folder = export_diffusers(runs / 'lora', runs / 'lora', overwrite=overwrite)
    _unchanged(before)
    assert lora.parent == (runs / 'lora').absolute() and lora.name == 'lora-step-3.safetensors'
    assert folder == (runs / 'lora' / 'lora-step-3').absolute() and (folder / 'model_index.json').is_file()
    res = run_cli('export', '--run', runs / 'lora', '--format', 'lora', '--out', runs / 'lora' / 'final-state')   # inside the run's state
    assert res.returncode == 0, res.stderr[-2000:]
    _unchanged(before)

def test_out_file_writes_exactly_that_file_and_its_card(runs, tmp_path):
    from dreambooth_nb.export import export_lora
    from dreambooth_nb.outputs import OutputError
    res = run_cli('export', '--run', runs / 'lora', '--format', 'lora', '--out', tmp_path / 'models' / 'olis.safetensors')
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / 'models').iterdir()) == ['.dreambooth_nb-export.json', 'olis.md', 'olis.safetensors']
    card = (tmp_path / 'models' / 'olis.md').read_text()
    assert 'olis dog' in card and 'max_train_steps' in card                      # the training config travels in the card
    (tmp_path / 'theirs.md').write_text('their card'); (tmp_path / 'taken.safetensors').write_bytes(b'theirs')
    out = export_lora(runs / 'lora', tmp_path / 'theirs.safetensors')
    assert out.card is None and (tmp_path / 'theirs.md').read_text() == 'their card' and 'No model card' in out.message
    with pytest.raises(OutputError, match='not written by dreambooth_nb'): export_lora(runs / 'lora', tmp_path / 'taken.safetensors')
    assert (tmp_path / 'taken.safetensors').read_bytes() == b'theirs'

def test_re_export_needs_overwrite_and_replaces_only_our_files(runs, tmp_path):
    from safetensors.torch import load_file
    from dreambooth_nb.single_file import export_single_file
    from dreambooth_nb.outputs import OutputError
    out = export_single_file(runs / 'full', tmp_path / 'sf')
    (out / 'notes.txt').write_text("the user's")
    with pytest.raises(OutputError, match='overwrite=True'): export_single_file(runs / 'full', tmp_path / 'sf')
    res = run_cli('export', '--run', runs / 'full', '--format', 'single-file', '--out', tmp_path / 'sf')
    assert res.returncode == 2 and '--overwrite' in res.stderr and 'Traceback' not in res.stderr
    export_single_file(runs / 'full', tmp_path / 'sf', overwrite=True, dtype='fp16')
    assert (out / 'notes.txt').read_text() == "the user's"
    assert {v.dtype for v in load_file(out / 'model.safetensors').values()} == {torch.float16}

def test_exports_are_readable_by_other_users(runs, tmp_path):
    from dreambooth_nb.export import export_diffusers, export_lora
    old = os.umask(0o077)                                                         # even under a strict umask
    try:
        folder = export_diffusers(runs / 'lora', tmp_path / 'new' / 'sd')
        lib = tmp_path / 'lib'; lib.mkdir(); (lib / 'x.txt').write_text('x')
        lora = export_lora(runs / 'lora', lib)
    finally: os.umask(old)
    assert _modes(folder) == ({0o755}, {0o644}) and stat.S_IMODE(os.stat(tmp_path / 'new').st_mode) == 0o755
    assert {stat.S_IMODE(os.stat(p).st_mode) for p in (lora, lora.card, lib / '.dreambooth_nb-export.json')} == {0o644}

def test_svd_extraction_reports_its_measured_approximation(runs, tmp_path):
    from dreambooth_nb.export import export_lora
    out = export_lora(runs / 'full', tmp_path / 'x', rank=2)
    card = (out / 'README.md').read_text()
    assert 0 < out.approximation_error < 1 and out.step_difference > 0
    for text in (card, out.message):
        assert 'approximation' in text and f'{out.approximation_error:.3f}' in text and f'{out.step_difference:.3g}' in text
    assert 'matches the trained model' not in out.message
    if out.step_difference > 1e-3 * 2: assert 'not a match' in out.message and 'so it matches' not in out.message

def test_extraction_rank_above_what_the_layers_hold_is_clamped(runs, tmp_path):
    "`export --rank 512` from a full run of a tiny model: one warning line and the (same) LoRA at the rank its layers hold, not a traceback."
    res = run_cli('export', '--run', runs / 'full', '--format', 'lora', '--rank', '512', '--out', tmp_path / 'big')
    assert res.returncode == 0 and 'Traceback' not in res.stderr, res.stderr[-2000:]
    warned = [l for l in res.stderr.splitlines() if l.startswith('warning:') and '--rank 512' in l]
    assert len(warned) == 1 and 'exporting rank' in warned[0], res.stderr[-2000:]
    pipe = StableDiffusionPipeline.from_pretrained(runs / 'full' / 'base-model')
    pipe.load_lora_weights(str(tmp_path / 'big'))
    assert any('lora' in n for n, _ in pipe.unet.named_parameters())

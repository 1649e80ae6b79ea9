"""Drop-in outputs: what `train()` leaves in `output_dir` loads the way diffusers' train_dreambooth*.py outputs do —
`DiffusionPipeline.from_pretrained(output_dir)` for a full fine-tune, `pipe.load_lora_weights(output_dir)` for LoRA — and
reproduces the trained model on a seeded denoising step."""
import json
import pytest, torch
from safetensors import safe_open
from diffusers import DiffusionPipeline

PROMPT = 'a photo of olis dog'

def _trained(family: str, mode: str, train_text_encoder: bool):
    "A tiny backbone after 2 real optimizer steps (denoising loss, AdamW) in `mode`."
    import dreambooth_nb.sdxl, dreambooth_nb.flux2                     # register the adapters
    from dreambooth_nb.load import tiny
    bb = tiny(family)
    mods = bb.trainable_modules(mode, train_text_encoder, rank=4, lora_alpha=8)
    opt = torch.optim.AdamW([p for m in mods.values() for p in m.parameters() if p.requires_grad], lr=1e-2)
    g, side = torch.Generator().manual_seed(0), bb.native_resolution
    for _ in range(2):
        noisy, t, target = bb.noise_and_target(torch.randn(1, *bb.latent_shape(side, side), generator=g), g)
        loss = torch.nn.functional.mse_loss(bb.predict(noisy, t, bb.encode_prompt([PROMPT])), target)
        loss.backward(); opt.step(); opt.zero_grad()
    for m in bb.modules().values(): m.requires_grad_(False).eval()
    return bb

def _run_folder(root):
    "A run folder's own files, which the final outputs must leave alone."
    run = root / 'run'
    for name, text in {'config.yaml': 'mode: x\n', 'metrics.jsonl': '{"loss": 1}\n', 'priors/0.png': 'png',
                       'checkpoint-2/manifest.json': '{}', 'samples/step-2.png': 'png'}.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True); (run / name).write_text(text)
    return run, {p: p.read_bytes() for p in run.rglob('*') if p.is_file()}

def _untouched(before):
    for p, data in before.items(): assert p.read_bytes() == data, p

def test_full_fine_tune_is_a_diffusers_pipeline_at_the_root(tmp_path):
    from dreambooth_nb.export import write_final_pipeline, check_step, FINAL_MARKER
    trained = _trained('sd15', 'full', True)
    run, before = _run_folder(tmp_path)
    assert write_final_pipeline(trained, run) == run.absolute()
    for f in ('model_index.json', 'unet/diffusion_pytorch_model.safetensors', 'text_encoder/model.safetensors', 'vae/config.json',
              'tokenizer/tokenizer_config.json', 'scheduler/scheduler_config.json'):
        assert (run / f).is_file(), f
    pipe = DiffusionPipeline.from_pretrained(run)
    assert type(pipe).__name__ == 'StableDiffusionPipeline'
    check_step(trained, pipe, PROMPT, tol=1e-5)
    _untouched(before)
    (run / 'unet' / 'notes.txt').write_text("the user's")
    write_final_pipeline(trained, run)                                         # a resumed run writes it again
    _untouched(before); assert (run / 'unet' / 'notes.txt').read_text() == "the user's"
    assert 'config.yaml' not in json.loads((run / FINAL_MARKER).read_text())['files']

def test_final_pipeline_refuses_a_file_it_did_not_write(tmp_path):
    from dreambooth_nb.export import write_final_pipeline
    from dreambooth_nb.outputs import OutputError
    run, _ = _run_folder(tmp_path)
    (run / 'model_index.json').write_text('{"someone": "else"}')
    with pytest.raises(OutputError, match='not written by dreambooth_nb'):
        write_final_pipeline(_trained('sd15', 'full', False), run, check=False)
    assert (run / 'model_index.json').read_text() == '{"someone": "else"}' and not (run / 'unet').exists()
    assert [p.name for p in run.iterdir() if 'staging' in p.name] == []

CASES = [('sd15', True, 'StableDiffusionPipeline', {'unet', 'text_encoder'}),
         ('sd15', False, 'StableDiffusionPipeline', {'unet'}),
         ('sdxl', True, 'StableDiffusionXLPipeline', {'unet', 'text_encoder', 'text_encoder_2'}),
         ('flux2-klein', False, 'Flux2KleinPipeline', {'transformer'})]

@pytest.mark.parametrize('family,text_encoder,pipeline,prefixes', CASES, ids=['sd-te', 'sd', 'sdxl-te', 'klein'])
def test_lora_file_loads_with_load_lora_weights(tmp_path, family, text_encoder, pipeline, prefixes):
    import diffusers
    from dreambooth_nb.load import tiny
    from dreambooth_nb.export import write_final_lora, check_step, step_difference
    trained = _trained(family, 'lora', text_encoder)
    run, before = _run_folder(tmp_path)
    path = write_final_lora(trained, run)
    assert path == run.absolute() / 'pytorch_lora_weights.safetensors'
    with safe_open(path, 'pt') as f: keys, meta = list(f.keys()), f.metadata()
    assert {k.split('.')[0] for k in keys} == prefixes
    adapter = json.loads(meta['lora_adapter_metadata'])
    assert meta['format'] == 'pt' and all((adapter[f'{p}.r'], adapter[f'{p}.lora_alpha']) == (4, 8) for p in prefixes)
    tiny(family).save_pretrained(tmp_path / 'base')
    pipe = getattr(diffusers, pipeline).from_pretrained(tmp_path / 'base')
    before_lora = step_difference(trained, pipe, PROMPT)[0]
    pipe.load_lora_weights(run)                                                # the run folder, as with diffusers' scripts
    assert before_lora > 1e-3                                                   # the LoRA is what makes the difference ...
    check_step(trained, pipe, PROMPT, tol=1e-5)                                 # ... and it is all of it
    _untouched(before)

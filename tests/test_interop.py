"""Files other tools load (issue 18): FLUX.2 klein LoRAs in ComfyUI/BFL and kohya keys that diffusers' own converters read back
and that reproduce the trained model, an SDXL single file, `--out X.safetensors`, and `export --inspect` on files laid out by
diffusers, kohya, ComfyUI and PEFT."""
import json
import pytest, torch
from safetensors import safe_open
from safetensors.torch import save_file
from tests.conftest import run_cli

@pytest.fixture(scope='module')
def klein_run(tmp_path_factory):
    from dreambooth_nb.config import preset
    from dreambooth_nb.data import sample_subject_dir
    from dreambooth_nb.run import train
    run = tmp_path_factory.mktemp('klein') / 'run'
    train(preset('tiny', pretrained_model_name_or_path='tiny:flux2-klein', instance_data_dir=str(sample_subject_dir()), output_dir=str(run),
                 mode='lora', rank=4, lora_alpha=8, train_text_encoder=False, with_prior_preservation=False, max_train_steps=2,
                 validation_steps=100, num_validation_images=1, num_inference_steps=1, learning_rate=1e-2))
    return run

def _keys(path):
    with safe_open(str(path), 'pt') as f: return set(f.keys()), f.metadata()

def _matches_trained(run, path):
    "Load `path` into the untouched base with diffusers' Flux2KleinPipeline.load_lora_weights; compare a step with the trained model."
    from dreambooth_nb.checkpoint import load_trained
    from dreambooth_nb.export import step_difference
    from dreambooth_nb.load import tiny
    trained, _ = load_trained(run)
    pipe = tiny('flux2-klein').pipeline()
    before, _ = step_difference(trained, pipe, 'a photo of olis dog')
    pipe.load_lora_weights(str(path))                     # diffusers picks its BFL or kohya converter from the key names
    after, scale = step_difference(trained, pipe, 'a photo of olis dog')
    assert before > 1e-3 and after <= 1e-4 * max(scale, 1.0), (before, after)

def test_klein_comfyui_and_kohya_loras_load_through_diffusers_converters(klein_run, tmp_path):
    from dreambooth_nb import __version__
    from dreambooth_nb.export import export_lora
    models = tmp_path / 'ComfyUI' / 'models' / 'loras'
    res = run_cli('export', '--run', klein_run, '--format', 'lora', '--lora_format', 'comfyui', '--out', models / 'olis.safetensors', cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in models.iterdir()) == ['.dreambooth_nb-export.json', 'olis.md', 'olis.safetensors']   # that file, its card
    keys, meta = _keys(models / 'olis.safetensors')
    assert 'diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight' in keys and 'diffusion_model.single_blocks.0.linear1.lora_B.weight' in keys
    assert meta['dreambooth_nb.version'] == __version__ and 'weights' in json.loads(meta['dreambooth_nb.base_model_identity'])
    assert meta['modelspec.architecture'] == 'flux-2-klein/lora' and meta['ss_network_dim'] == '4'
    _matches_trained(klein_run, models / 'olis.safetensors')
    kohya = export_lora(klein_run, tmp_path / 'olis-kohya.safetensors', fmt='kohya')
    keys, _ = _keys(kohya)
    assert {'lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight', 'lora_unet_double_blocks_0_img_attn_qkv.alpha'} <= keys
    _matches_trained(klein_run, kohya)

def test_out_onto_a_file_of_another_tool_is_refused(klein_run, tmp_path):
    theirs = tmp_path / 'their-lora.safetensors'
    theirs.write_bytes(b'another tool wrote this')
    res = run_cli('export', '--run', klein_run, '--format', 'lora', '--lora_format', 'kohya', '--out', theirs)
    assert res.returncode == 2 and 'not written by dreambooth_nb' in res.stderr and 'Traceback' not in res.stderr
    assert theirs.read_bytes() == b'another tool wrote this' and sorted(p.name for p in tmp_path.iterdir()) == ['their-lora.safetensors']

def test_sdxl_single_file_loads_with_from_single_file(tmp_path):
    from diffusers import StableDiffusionXLPipeline
    from dreambooth_nb.export import check_step
    from dreambooth_nb.load import tiny
    from dreambooth_nb.single_file import load_single_file_pipeline, single_file_state
    xl = tiny('sdxl'); xl.save_pretrained(tmp_path / 'base')
    with torch.no_grad():                                                  # the file, not the config folder, must carry the weights
        for m in xl.modules().values():
            for p in m.parameters(): p.add_(torch.randn_like(p) * 0.01)
    save_file(single_file_state(xl), tmp_path / 'xl.safetensors')
    keys, _ = _keys(tmp_path / 'xl.safetensors')
    assert {'model.diffusion_model.label_emb.0.0.weight', 'conditioner.embedders.0.transformer.text_model.final_layer_norm.weight',
            'conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight', 'first_stage_model.decoder.conv_out.weight'} <= keys
    pipe = load_single_file_pipeline(StableDiffusionXLPipeline, tmp_path / 'xl.safetensors', tmp_path / 'base')
    assert isinstance(pipe, StableDiffusionXLPipeline)
    check_step(xl, pipe, 'a photo of olis dog', tol=1e-6)

def _peft_file(folder):
    from peft import LoraConfig, get_peft_model
    from dreambooth_nb.load import tiny
    get_peft_model(tiny('sd15').unet, LoraConfig(r=4, lora_alpha=8, target_modules=['to_q', 'to_v'])).save_pretrained(folder)
    return folder / 'adapter_model.safetensors'

def _klein_lora():
    from peft.utils import get_peft_model_state_dict
    from dreambooth_nb.backbones import _add_lora
    from dreambooth_nb.load import tiny
    bb = tiny('flux2-klein'); _add_lora(bb.transformer, 2, 2, bb.lora_targets())
    return get_peft_model_state_dict(bb.transformer)

def test_inspect_recognises_diffusers_kohya_comfyui_and_peft_files(tmp_path):
    from diffusers import Flux2KleinPipeline
    from dreambooth_nb.lora_keys import comfyui_klein_keys, inspect_lora
    peft_file = _peft_file(tmp_path / 'peft')
    res = run_cli('export', '--inspect', peft_file, '--json')
    assert res.returncode == 0, res.stderr[-2000:]
    info = json.loads(res.stdout)
    assert (info['layout'], info['rank'], info['alpha'], info['family']) == ('peft', 4, 8.0, 'sd')
    lsd = _klein_lora()
    Flux2KleinPipeline.save_lora_weights(tmp_path / 'd', transformer_lora_layers=lsd)           # diffusers' own writer
    save_file(comfyui_klein_keys(lsd), tmp_path / 'comfy.safetensors')
    te = 'lora_te_text_model_encoder_layers_0_self_attn_q_proj'                                  # kohya's SD names, by hand
    unet = 'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k'
    save_file({f'{te}.lora_down.weight': torch.zeros(8, 768), f'{te}.lora_up.weight': torch.zeros(768, 8), f'{te}.alpha': torch.tensor(4.),
               f'{unet}.lora_down.weight': torch.zeros(8, 768), f'{unet}.lora_up.weight': torch.zeros(320, 8), f'{unet}.alpha': torch.tensor(4.)},
              tmp_path / 'kohya.safetensors')
    found = {name: inspect_lora(path) for name, path in [('diffusers', tmp_path / 'd' / 'pytorch_lora_weights.safetensors'),
                                                         ('comfyui', tmp_path / 'comfy.safetensors'), ('kohya', tmp_path / 'kohya.safetensors')]}
    assert {n: i['layout'] for n, i in found.items()} == {'diffusers': 'diffusers', 'comfyui': 'comfyui', 'kohya': 'kohya'}
    assert (found['diffusers']['family'], found['comfyui']['family'], found['kohya']['family']) == ('flux2', 'flux2', 'sd')
    assert (found['kohya']['rank'], found['kohya']['alpha'], found['kohya']['targets']) == (8, 4.0, {'self_attn_q_proj': 1, 'attn2_to_k': 1})
    assert found['comfyui']['targets']['img_attn.qkv'] == 1 and found['comfyui']['ranks'] == [2, 6]   # q/k/v fused: rank 3 x 2
    res = run_cli('export', '--inspect', tmp_path / 'nope.safetensors')
    assert res.returncode == 2 and 'not a file' in res.stderr and 'Traceback' not in res.stderr

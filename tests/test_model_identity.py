"""Model identity in the user's world: old configs hashed in new processes under other hash seeds, copied folders,
Hub-style and local paths, other weights."""
import json, os, shutil, subprocess, sys
from pathlib import Path
import pytest
from safetensors.torch import load_file, save_file
from dreambooth_nb.load import load_backbone, tiny

HASH = "import sys; from dreambooth_nb.load import load_backbone; print(load_backbone(sys.argv[1]).identity)"

def _identity_in_new_process(folder, seed: int) -> str:
    env = {**os.environ, 'PYTHONHASHSEED': str(seed)}
    return subprocess.run([sys.executable, '-c', HASH, str(folder)], env=env, capture_output=True, text=True, check=True).stdout

@pytest.fixture(scope='module')
def old_style_model(tmp_path_factory):
    "A tiny SD folder whose unet config lacks keys newer diffusers added, like the real stable-diffusion-v1-5 folder."
    folder = tmp_path_factory.mktemp('m') / 'sd15-old-config'
    tiny('sd15').save_pretrained(folder)
    cfg_path = folder / 'unet' / 'config.json'
    cfg = json.loads(cfg_path.read_text())
    for key in ('addition_embed_type', 'class_embed_type', 'upcast_attention', 'mid_block_type', 'time_embedding_type'): cfg.pop(key, None)
    cfg_path.write_text(json.dumps(cfg))
    return folder

def test_old_config_hashes_the_same_in_every_process(old_style_model):
    seen = {_identity_in_new_process(old_style_model, seed) for seed in (0, 1, 12345)}
    assert len(seen) == 1, seen

def test_copied_folder_is_the_same_model_and_other_weights_are_not(old_style_model, tmp_path):
    copy = tmp_path / 'copied' / 'model'; shutil.copytree(old_style_model, copy)
    assert load_backbone(str(copy)).identity == load_backbone(str(old_style_model)).identity
    unet_file = copy / 'unet' / 'diffusion_pytorch_model.safetensors'
    sd = load_file(unet_file)
    name = sorted(sd)[len(sd) // 2]
    sd[name] = sd[name] + 1e-3                                      # a fine-tune touches the weights, not the config
    save_file(sd, unet_file)
    other = load_backbone(str(copy)).identity
    mine = load_backbone(str(old_style_model)).identity
    assert other['architecture'] == mine['architecture'] and other['weights'] != mine['weights']

def test_identity_does_not_depend_on_the_working_directory(old_style_model, tmp_path):
    rel = os.path.relpath(old_style_model, tmp_path)
    out = subprocess.run([sys.executable, '-c', HASH, rel], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert out == _identity_in_new_process(old_style_model, 0)

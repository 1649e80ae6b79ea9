"The shipped micro model (issue 25) as a user meets it: by name from any working directory, in a new process, and as a plain diffusers folder."
import subprocess, sys
from pathlib import Path

LOAD = """
from dreambooth_nb.load import load_backbone
from dreambooth_nb.micro import MICRO_DIR
from diffusers import StableDiffusionPipeline
import torch
a, b = load_backbone('micro'), load_backbone('tiny:micro')
assert a.name == b.name == 'micro' and a.identity == b.identity
assert a.native_resolution == 64 and a.unet.dtype == torch.float32      # shipped in fp16, loaded in float32
pipe = StableDiffusionPipeline.from_pretrained(MICRO_DIR)
assert torch.equal(pipe.unet.conv_in.weight.float(), a.unet.conv_in.weight)
print('OK', a.identity['weights'])
"""

def test_micro_loads_by_name_in_a_new_process_from_another_directory(tmp_path):
    res = subprocess.run([sys.executable, '-c', LOAD], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.startswith('OK ')

def test_a_missing_micro_folder_is_one_clear_error(tmp_path, monkeypatch):
    import pytest
    import dreambooth_nb.micro as micro
    from dreambooth_nb.config import ModelError
    from dreambooth_nb.load import resolve_model_path
    monkeypatch.setattr(micro, 'MICRO_DIR', tmp_path / 'gone')
    with pytest.raises(ModelError, match='rebuild it with `python tools/build_micro.py`'): resolve_model_path('micro')

import os, subprocess, sys
from pathlib import Path
import pytest

os.environ.setdefault('HF_HUB_OFFLINE', '1')          # tests never reach a hub
os.environ.setdefault('TRANSFORMERS_VERBOSITY', 'error')

def run_cli(*args, cwd=None, timeout=600):
    "Run the installed `dreambooth-nb` console script; returns the CompletedProcess (text mode)."
    env = {**os.environ, 'PYTHONUNBUFFERED': '1'}
    return subprocess.run(['dreambooth-nb', *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)

@pytest.fixture
def cli(): return run_cli

def train_stopped_and_resumed(make_cfg, run, stop_at: int = 3):
    "Train `make_cfg(run)` until `stop_at` (a clean stop, as a panel's Stop), then resume it from 'latest' to the end."
    from dreambooth_nb.run import train
    from dreambooth_nb.training import Callback, CancelFitException
    class StopAt(Callback):
        order = 50
        def after_step(self):
            if self.trainer.step == stop_at: raise CancelFitException()
    train(make_cfg(run), callbacks=[StopAt()])
    return train(make_cfg(run, resume_from_checkpoint='latest'))

def mounted_tmpfs(tmp_path, size: str, covered_by: str):
    "Yield a tmpfs of `size` mounted under tmp_path (unmounted after), or skip where this process may not mount one."
    mnt = tmp_path / 'tmpfs'; mnt.mkdir()
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(mnt)], capture_output=True).returncode != 0:
        pytest.skip(f'cannot mount a tmpfs here (no privilege); {covered_by}')
    yield mnt
    subprocess.run(['umount', str(mnt)], capture_output=True)

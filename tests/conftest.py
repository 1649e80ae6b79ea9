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

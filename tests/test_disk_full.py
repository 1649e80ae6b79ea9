"""A disk that fills while a checkpoint is written: one `error:` line saying what to do (whichever library wrote the
file: safetensors, torch.save, our own JSON), no traceback, nothing half-written that looks valid, and the hidden
temporary folders gone; the same on the resume after, which continues once there is room. A run that cannot fit the
disk at all is refused before it starts."""
import subprocess, sys
from pathlib import Path
import pytest
from tests.conftest import mounted_tmpfs, run_cli

SPACE = 'no space left on device — free space or choose another folder'

def _args(model, out, steps, *extra):
    from dreambooth_nb.data import sample_subject_dir
    return ['train', '--pretrained_model_name_or_path', model, '--instance_data_dir', sample_subject_dir(), '--output_dir', out,
            '--instance_prompt', 'a photo of sks dog', '--resolution', '64', '--train_batch_size', '1', '--max_train_steps', str(steps),
            '--checkpointing_steps', '2', '--validation_steps', '100', '--train_text_encoder', *extra]

@pytest.fixture(scope='module')
def base(tmp_path_factory):
    from dreambooth_nb.load import tiny
    return tiny('sd15').save_pretrained(tmp_path_factory.mktemp('base') / 'tiny-sd15')

def _one_error_line(res) -> str:
    assert res.returncode == 1, (res.returncode, res.stdout[-1000:], res.stderr[-3000:])
    assert 'Traceback' not in res.stderr, res.stderr[-3000:]
    errors = [l for l in res.stderr.splitlines() if l.startswith('error: ')]
    assert len(errors) == 1, res.stderr[-3000:]
    return errors[0]

def _nothing_half_written(run: Path):
    assert not list(run.glob('.tmp-*')) and not list(run.glob('.*-staging-*')), sorted(p.name for p in run.iterdir())
    assert not list(run.glob('checkpoint-*')) and not (run / 'final-state').exists()

# safetensors' own exception, raised by the real writer after it left a half-written file, as a full disk does
INJECT = """
import sys, safetensors, dreambooth_nb.checkpoint as ck
from dreambooth_nb.cli import main
real = ck.save_file
def full(tensors, path, *a, **k):
    if str(path).endswith('model.safetensors'):
        open(path, 'wb').write(b'half')
        raise safetensors.SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })')
    return real(tensors, path, *a, **k)
ck.save_file = full
sys.exit(main(sys.argv[1:]))
"""

def test_safetensors_full_disk_is_one_line_and_the_resume_continues(base, tmp_path):
    run = tmp_path / 'run'
    res = subprocess.run([sys.executable, '-c', INJECT, *map(str, _args(base, run, 3))], capture_output=True, text=True, timeout=600)
    line = _one_error_line(res)
    assert line == f'error: {run / "checkpoint-2"}: {SPACE}', line
    _nothing_half_written(run)
    (run / '.tmp-checkpoint-4-killed').mkdir(); (run / f'.{run.name}-staging-killed').mkdir()    # as kill -9 leaves them
    res = run_cli(*_args(base, run, 3, '--resume_from_checkpoint', 'latest'))          # room again: it continues, and cleans up
    assert res.returncode == 0, res.stderr[-3000:]
    assert sorted(p.name for p in run.glob('checkpoint-*')) == ['checkpoint-2'] and (run / 'final-state').is_dir()
    assert not list(run.glob('.tmp-*')) and not list(run.glob('.*-staging-*'))

@pytest.fixture
def small_tmpfs(tmp_path):
    "A 5 MiB tmpfs (the run fits; a 9 MB checkpoint of the tiny model does not), when this process may mount one."
    yield from mounted_tmpfs(tmp_path, '5m', 'the injected-error test covers the same path')

def test_a_run_that_cannot_fit_a_real_small_disk_is_refused_before_it_writes(base, small_tmpfs):
    """On a real 5 MiB tmpfs the run's predicted writes (a 9 MB checkpoint) do not fit: the disk check before training
    (07a_plan's check_disk) refuses it with one line and nothing is written, so the run never reaches a full disk. A disk
    filled by something else during the run is the injected-error test's case above."""
    run = small_tmpfs / 'run'
    res = run_cli(*_args(base, run, 3))
    assert res.returncode == 2 and 'Traceback' not in res.stderr, (res.returncode, res.stderr[-2000:])
    errors = [l for l in res.stderr.splitlines() if l.startswith('error: ')]
    assert len(errors) == 1 and 'the run would write about' in errors[0] and 'checkpoints_total_limit' in errors[0], res.stderr[-2000:]
    assert not run.exists() or not any(run.iterdir()), sorted(p.name for p in run.iterdir())

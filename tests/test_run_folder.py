"""The run folder in the user's world: an old-style model config used from new processes under other hash seeds,
other working directories and a moved folder, two trainings started into one folder, refused starts that write
nothing, another run's checkpoint."""
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path
import pytest
from tests.conftest import run_cli

def _old_style_model(folder: Path) -> Path:
    "The tiny SD model saved with a unet config missing keys newer diffusers added (like the real SD 1.5 folder)."
    from dreambooth_nb.load import tiny
    tiny('sd15').save_pretrained(folder)
    cfg_path = folder / 'unet' / 'config.json'
    cfg = json.loads(cfg_path.read_text())
    for key in ('addition_embed_type', 'class_embed_type', 'upcast_attention'): cfg.pop(key)
    cfg_path.write_text(json.dumps(cfg))
    return folder

def _photos() -> str:
    from dreambooth_nb.data import sample_subject_dir
    return str(sample_subject_dir())

def _train_args(model, run, steps, *extra):
    return ['train', '--pretrained_model_name_or_path', model, '--instance_data_dir', _photos(), '--output_dir', run,
            '--resolution', '64', '--max_train_steps', str(steps), '--checkpointing_steps', '2', '--validation_steps', '100',
            '--with_prior_preservation', '--num_class_images', '2', '--prior_num_inference_steps', '2', *extra]

def _cli_with_seed(seed, *args, cwd=None):
    env = {**os.environ, 'PYTHONHASHSEED': str(seed), 'PYTHONUNBUFFERED': '1'}
    return subprocess.run(['dreambooth-nb', *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)

@pytest.fixture(scope='module')
def old_model(tmp_path_factory):
    return _old_style_model(tmp_path_factory.mktemp('model') / 'sd15-old')

def test_resume_and_sample_in_new_processes_with_an_old_model_config(old_model, tmp_path):
    run = tmp_path / 'run'
    first = _cli_with_seed(1, *_train_args(old_model, run, 2))
    assert first.returncode == 0, first.stderr[-2000:]
    bank = sorted((run / 'priors').iterdir()); stamps = [p.stat().st_mtime_ns for p in bank]
    second = _cli_with_seed(2, *_train_args(old_model, run, 4, '--resume_from_checkpoint', 'latest'))
    assert second.returncode == 0, second.stderr[-2000:]               # the run's own priors and checkpoint are accepted
    assert [p.stat().st_mtime_ns for p in sorted((run / 'priors').iterdir())] == stamps   # and the bank was reused, not redone
    assert [json.loads(l)['step'] for l in (run / 'metrics.jsonl').read_text().splitlines()] == [1, 2, 3, 4]
    sample = _cli_with_seed(3, 'sample', '--run', run, '--seeds', '0', '--num_inference_steps', '1', '--out', tmp_path / 's')
    assert sample.returncode == 0, sample.stderr[-2000:]

def test_a_run_is_used_from_another_directory_and_after_a_move(tmp_path):
    made_in = tmp_path / 'work'; made_in.mkdir()
    res = run_cli('demo', '--out', 'dreambooth-demo', '--max_train_steps', '2', cwd=made_in)
    assert res.returncode == 0, res.stderr[-2000:]
    run = made_in / 'dreambooth-demo'
    elsewhere = tmp_path / 'elsewhere'; elsewhere.mkdir()
    res = run_cli('sample', '--run', run.resolve(), '--seeds', '0', '--num_inference_steps', '1', '--out', tmp_path / 's1', cwd=elsewhere)
    assert res.returncode == 0, res.stderr[-2000:]
    moved = tmp_path / 'drive' / 'my-run'; moved.parent.mkdir(); shutil.move(str(run), str(moved))
    res = run_cli('sample', '--run', moved, '--seeds', '0', '--num_inference_steps', '1', '--out', tmp_path / 's2', cwd=elsewhere)
    assert res.returncode == 0, res.stderr[-2000:]

def test_two_trainings_into_one_folder(old_model, tmp_path):
    run = tmp_path / 'run'
    log = open(tmp_path / 'first.log', 'w+')                              # a file, not a pipe nobody reads (it would fill and block)
    first = subprocess.Popen(['dreambooth-nb', *map(str, _train_args(old_model, run, 2000, '--checkpointing_steps', '1000'))],
                             stdout=subprocess.DEVNULL, stderr=log, text=True)
    try:
        deadline = time.time() + 120
        while not (run / 'metrics.jsonl').exists():                      # the first one is training
            assert first.poll() is None and time.time() < deadline, (tmp_path / 'first.log').read_text()[-2000:]
            time.sleep(0.2)
        second = run_cli(*_train_args(old_model, run, 400, '--resume_from_checkpoint', 'latest'))
        assert second.returncode == 2, second.stderr[-2000:]
        assert 'is being written by another process' in second.stderr and f'pid {first.pid}' in second.stderr
        assert 'Traceback' not in second.stderr
    finally:
        first.send_signal(signal.SIGTERM); first.wait(timeout=120)
    steps = [json.loads(l)['step'] for l in (run / 'metrics.jsonl').read_text().splitlines()]
    assert steps == list(range(1, len(steps) + 1))                          # one writer: no duplicated steps

def test_refused_starts_change_nothing(old_model, tmp_path):
    run, other = tmp_path / 'run', tmp_path / 'other'
    assert run_cli(*_train_args(old_model, run, 2)).returncode == 0
    assert run_cli(*_train_args(old_model, other, 2)).returncode == 0
    before = {p: p.read_bytes() for p in run.rglob('*') if p.is_file()}
    restart = run_cli(*_train_args(old_model, run, 4, '--learning_rate', '1e-3'))            # no resume: refused
    assert restart.returncode == 2 and 'already holds checkpoints up to checkpoint-2' in restart.stderr
    missing = run_cli(*_train_args(old_model, run, 4, '--resume_from_checkpoint', 'checkpoint-9'))
    assert missing.returncode == 2 and 'it has checkpoint-2' in missing.stderr
    foreign = run_cli(*_train_args(old_model, run, 4, '--resume_from_checkpoint', other / 'checkpoint-2'))
    assert foreign.returncode == 2 and 'belongs to another run' in foreign.stderr
    after = {p: p.read_bytes() for p in run.rglob('*') if p.is_file() and p.name != '.lock'}
    assert after == {p: b for p, b in before.items() if p.name != '.lock'}
    resumed = run_cli(*_train_args(old_model, run, 4, '--resume_from_checkpoint', 'checkpoint-2'))   # diffusers' name works
    assert resumed.returncode == 0, resumed.stderr[-2000:]

def test_a_diverging_run_stops_with_one_error_line_and_finite_checkpoints(old_model, tmp_path):
    import torch
    from dreambooth_nb.checkpoint import checkpoint_weights
    run = tmp_path / 'run'
    res = run_cli(*_train_args(old_model, run, 6, '--learning_rate', '1e30', '--checkpointing_steps', '1'))
    assert res.returncode == 2, res.stderr[-2000:]
    errors = [l for l in res.stderr.splitlines() if l.startswith('error:')]
    assert len(errors) == 1 and 'Training diverged' in errors[0] and 'Lower the learning rate' in errors[0], res.stderr[-2000:]
    assert 'Traceback' not in res.stderr
    for ckpt in run.glob('checkpoint-*'):                                 # what was kept is a state worth resuming
        assert all(torch.isfinite(t).all() for t in checkpoint_weights(ckpt, ema=False)['unet'].values()), ckpt.name
    assert not (run / 'model_index.json').exists()                        # no final pipeline from a diverged run

def test_ctrl_c_during_class_priors(old_model, tmp_path):
    "Ctrl-C while the class images are made: one error line, exit 130, the lock released, a rerun finishes the bank."
    run = tmp_path / 'run'
    args = _train_args(old_model, run, 2, '--num_class_images', '40', '--sample_batch_size', '1')
    log = open(tmp_path / 'err.log', 'w+')
    p = subprocess.Popen(['dreambooth-nb', *map(str, args)], stdout=subprocess.DEVNULL, stderr=log, text=True)
    deadline = time.time() + 180
    while not list((run / 'priors').glob('class-*.png')):
        assert p.poll() is None and time.time() < deadline, (tmp_path / 'err.log').read_text()[-2000:]
        time.sleep(0.05)
    p.send_signal(signal.SIGINT); p.wait(timeout=120)
    err = (tmp_path / 'err.log').read_text()
    assert p.returncode == 130, err[-2000:]
    assert len([l for l in err.splitlines() if l.startswith('error:')]) == 1 and 'Traceback' not in err, err[-2000:]
    assert not (run / 'metrics.jsonl').exists()
    again = run_cli(*args)                                                  # the same command goes on: the lock is free
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(list((run / 'priors').glob('class-*.png'))) == 40
    assert sorted(p.name for p in (run / 'priors').iterdir()) == [f'class-{i:05d}.png' for i in range(40)]   # no temporaries left

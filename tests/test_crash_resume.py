"""Never lose a run: SIGKILL training at random moments (during saves too), resume each time from `latest`;
the finished run has the uninterrupted run's loss curve, bit for bit. SIGTERM stops cleanly with a checkpoint."""
import json, random, signal, subprocess, time
from pathlib import Path
import pytest

STEPS = 60

def _config(tmp_path, name, base):
    from dreambooth_nb.config import TrainConfig
    from dreambooth_nb.data import sample_subject_dir
    cfg = TrainConfig(pretrained_model_name_or_path=str(base), instance_data_dir=str(sample_subject_dir()),
                      output_dir=str(tmp_path / name), resolution=64, max_train_steps=STEPS, learning_rate=1e-4,
                      train_text_encoder=True, random_flip=True, with_prior_preservation=True, num_class_images=2,
                      prior_num_inference_steps=2, checkpointing_steps=3, checkpoints_total_limit=3, validation_steps=1000,
                      num_inference_steps=1, num_validation_images=1, resume_from_checkpoint='latest')
    cfg.to_yaml(tmp_path / f'{name}.yaml')
    return tmp_path / f'{name}.yaml', tmp_path / name

def _train_cmd(cfg_path): return ['dreambooth-nb', 'train', '--config', str(cfg_path)]

def _losses(run): return [json.loads(l)['loss'] for l in (Path(run) / 'metrics.jsonl').read_text().splitlines()]

@pytest.fixture(scope='module')
def base(tmp_path_factory):
    from dreambooth_nb.load import tiny
    return tiny('sd15').save_pretrained(tmp_path_factory.mktemp('base') / 'tiny')

def _kill_when(cmd, predicate, timeout=180):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while p.poll() is None and time.time() - t0 < timeout:
        if predicate(): p.kill(); p.wait(); return True
        time.sleep(0.002)
    p.wait(); return False

def test_sigkill_at_random_moments_then_resume_gives_the_same_curve(tmp_path, base):
    from dreambooth_nb.checkpoint import checkpoint_problem, latest_checkpoint
    ref_cfg, ref_run = _config(tmp_path, 'ref', base)
    assert subprocess.run(_train_cmd(ref_cfg), capture_output=True).returncode == 0
    expected = _losses(ref_run)
    assert len(expected) == STEPS

    cfg, run = _config(tmp_path, 'crashy', base)
    saving = lambda: any(run.glob('.tmp-checkpoint-*')) if run.exists() else False
    rng, kills = random.Random(1), 0
    for attempt in range(12):
        if attempt % 2 == 0: killed = _kill_when(_train_cmd(cfg), saving)              # while a checkpoint is being written
        else:
            delay, t0 = rng.uniform(3.0, 6.0), time.time()                               # at a random moment
            killed = _kill_when(_train_cmd(cfg), lambda: time.time() - t0 > delay)
        kills += killed
        ckpt = latest_checkpoint(run)                                                    # `latest` always loads
        assert ckpt is None or checkpoint_problem(ckpt) is None
    assert kills >= 10, kills

    res = subprocess.run(_train_cmd(cfg), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert _losses(run) == expected                                                      # bit-identical curve
    assert len(list(run.glob('checkpoint-*'))) <= 3                               # rotation kept its limit

def test_sigterm_saves_and_exits_with_its_status(tmp_path, base):
    from dreambooth_nb.checkpoint import latest_checkpoint
    cfg, run = _config(tmp_path, 'term', base)
    p = subprocess.Popen(_train_cmd(cfg), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not (run / 'metrics.jsonl').exists() and time.time() - t0 < 120: time.sleep(0.01)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert 'resume_from_checkpoint latest' in out
    steps = len(_losses(run))
    assert latest_checkpoint(run).name == f'checkpoint-{steps}'                           # saved at the step it stopped

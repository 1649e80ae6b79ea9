"SIGKILL a `dreambooth-nb priors` process at several moments; each rerun ends with exactly N valid, identical images (pixels and records)."
import json, os, random, signal, subprocess, time
from pathlib import Path
import pytest
from PIL import Image

N = 10

def _priors_cmd(model, bank):
    return ['dreambooth-nb', 'priors', '--pretrained_model_name_or_path', str(model), '--class_prompt', 'a photo of dog',
            '--class_data_dir', str(bank), '--num_class_images', str(N), '--resolution', '64', '--sample_batch_size', '3',
            '--num_inference_steps', '6', '--seed', '11']

def _images(bank): return sorted(Path(bank).glob('class-*.png'))

def _pixels(paths): return {p.name: Image.open(p).tobytes() for p in paths}

def _records(paths):
    "Each PNG's record (from its `dreambooth_nb` text chunk), without the time it was made."
    return {p.name: {k: v for k, v in json.loads(Image.open(p).text['dreambooth_nb']).items() if k != 'created'} for p in paths}

def _kill_when(cmd, predicate, timeout=120):
    "Start `cmd`, SIGKILL it as soon as `predicate()` holds (or it ends); True if it was killed."
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while p.poll() is None and time.time() - t0 < timeout:
        if predicate(): p.send_signal(signal.SIGKILL); p.wait(); return True
        time.sleep(0.01)
    p.wait(); return False

@pytest.fixture(scope='module')
def model(tmp_path_factory):
    from dreambooth_nb.load import tiny
    return tiny('sd15').save_pretrained(tmp_path_factory.mktemp('m') / 'tiny')

def test_sigkill_then_rerun_gives_exactly_n_identical_images(tmp_path, model):
    ref = tmp_path / 'ref'
    assert subprocess.run(_priors_cmd(model, ref), capture_output=True).returncode == 0
    expected = {p.name for p in _images(ref)}
    assert len(expected) == N

    bank, rng, kills = tmp_path / 'bank', random.Random(0), 0
    for target in (1, 4, 7):                                  # kill right after the k-th image lands, mid-batch or not
        kills += _kill_when(_priors_cmd(model, bank), lambda: len(_images(bank)) >= target)
    for _ in range(2):                                        # and at random moments (start-up, mid-write)
        delay = rng.uniform(0.5, 6.0); t0 = time.time()
        kills += _kill_when(_priors_cmd(model, bank), lambda: time.time() - t0 > delay)
    assert kills >= 3

    res = subprocess.run(_priors_cmd(model, bank), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    got = _images(bank)
    assert [p.name for p in got] == sorted(expected)
    assert _pixels(got) == _pixels(_images(ref))                          # bit-identical to the uninterrupted bank
    assert _records(got) == _records(_images(ref))                        # same seeds, batches, model (all but `created`)
    assert sorted(p.name for p in bank.iterdir()) == sorted(expected)     # images only: no manifest, no temporaries

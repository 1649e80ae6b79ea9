"""The class-image bank as other tools see it, across processes: `dreambooth-nb priors` leaves a folder of images only
(what diffusers' train_dreambooth.py needs: it opens every file of --class_data_dir), each PNG carrying its record; a
bank written by an earlier version (PNGs + manifest.jsonl) migrates and is reused without regenerating; a bank made by
another model is refused."""
import json, subprocess
from pathlib import Path
import pytest
from PIL import Image, ImageOps

N = 4

def _priors(model, bank, *extra, n=N):
    cmd = ['dreambooth-nb', 'priors', '--pretrained_model_name_or_path', str(model), '--class_prompt', 'a photo of dog',
           '--class_data_dir', str(bank), '--num_class_images', str(n), '--resolution', '64', '--sample_batch_size', '2',
           '--num_inference_steps', '3', '--seed', '5', *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)

def _open_like_diffusers(bank):
    "What diffusers' DreamBoothDataset does with a class folder: every entry of iterdir() opened as an image."
    for p in Path(bank).iterdir():
        with Image.open(p) as img: img.verify()
        img = ImageOps.exif_transpose(Image.open(p))
        if img.mode != 'RGB': img = img.convert('RGB')

def _record(p): return json.loads(Image.open(p).text['dreambooth_nb'])

def _mtimes(bank): return {p.name: p.stat().st_mtime_ns for p in Path(bank).iterdir()}

@pytest.fixture(scope='module')
def models(tmp_path_factory):
    from dreambooth_nb.load import tiny
    root = tmp_path_factory.mktemp('models')
    return tiny('sd15').save_pretrained(root / 'a'), tiny('sd15', seed=1).save_pretrained(root / 'b')

def test_bank_is_images_only_with_records(tmp_path, models):
    bank = tmp_path / 'bank'
    res = _priors(models[0], bank)
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in bank.iterdir()) == [f'class-{i:05d}.png' for i in range(N)]
    _open_like_diffusers(bank)
    for i, p in enumerate(sorted(bank.iterdir())):
        rec = _record(p)
        assert (rec['seed'], rec['prompt'], rec['resolution'], rec['steps'], rec['base_model']) == (5 + i, 'a photo of dog', 64, 3, str(models[0]))
        assert set(rec['base_model_identity']) == {'architecture', 'weights'} and rec['created']
        assert rec['batch'] == [i // 2 * 2, i // 2 * 2 + 1]

def _make_legacy(bank, model, torn=True):
    "A bank as version 0.x wrote it: PNGs without text chunks (other pixels than the model makes) + manifest.jsonl lines."
    bank.mkdir(parents=True)
    lines = []
    for i in range(N):
        Image.new('RGB', (64, 64), (40 * i, 100, 200)).save(bank / f'class-{i:05d}.png')
        lines.append(dict(file=f'class-{i:05d}.png', seed=5 + i, batch=[i // 2 * 2, i // 2 * 2 + 1], time='2024-05-01T10:00:00+00:00',
                          prompt='a photo of dog', negative_prompt=None, steps=3, guidance=7.5, scheduler='DPMSolverMultistepScheduler',
                          resolution=64, source='generated', base_model=str(model), base_model_hash='3f2a9c0d1b7e4a65'))
    Image.new('RGB', (64, 64), 'white').save(bank / 'my-dog.jpg')
    lines.append(dict(file='my-dog.jpg', source='user', time='2024-05-01T10:00:00+00:00'))
    text = ''.join(json.dumps(l) + '\n' for l in lines) + ('{"file": "class-00004.png", "se' if torn else '')
    (bank / 'manifest.jsonl').write_text(text)
    return {p.name: Image.open(p).tobytes() for p in bank.iterdir() if p.suffix != '.jsonl'}

def test_legacy_bank_migrates_and_is_reused(tmp_path, models):
    bank = tmp_path / 'old'
    pixels = _make_legacy(bank, models[0])
    res = _priors(models[0], bank, n=N + 1)                     # N of ours + the user's image: nothing to make
    assert res.returncode == 0, res.stderr[-2000:]
    assert 'class priors' not in res.stderr                     # no progress bar: the pipeline never ran
    assert 'earlier version of dreambooth_nb' in res.stderr     # said once ...
    assert sorted(p.name for p in bank.iterdir()) == sorted(pixels)               # manifest.jsonl gone: images only
    assert {p.name: Image.open(p).tobytes() for p in bank.iterdir()} == pixels    # same pixels: migrated, not regenerated
    _open_like_diffusers(bank)
    rec = _record(bank / 'class-00002.png')
    assert (rec['seed'], rec['batch'], rec['created'], rec['base_model']) == (7, [2, 3], '2024-05-01T10:00:00+00:00', str(models[0]))
    assert set(rec['base_model_identity']) == {'architecture', 'weights'} and 'base_model_hash' not in rec
    assert 'dreambooth_nb' not in Image.open(bank / 'my-dog.jpg').info                # the user's file is untouched

    before = _mtimes(bank)
    res = _priors(models[0], bank, n=N + 1)                     # a second run, in a new process
    assert res.returncode == 0, res.stderr[-2000:]
    assert _mtimes(bank) == before                              # nothing written, nothing regenerated
    assert 'earlier version' not in res.stderr and 'class priors' not in res.stderr

def test_bank_from_another_model_is_refused(tmp_path, models):
    bank = tmp_path / 'bank'
    assert _priors(models[0], bank).returncode == 0
    before = _mtimes(bank)
    res = _priors(models[1], bank)
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert f'generated by {models[0]}' in out and 'other weights' in out and '--accept_other_model' in out
    assert _mtimes(bank) == before
    res = _priors(models[1], bank, '--accept_other_model')
    assert res.returncode == 0, res.stderr[-2000:]
    assert _mtimes(bank) == before                              # accepted as they are

def test_legacy_bank_of_another_model_is_refused(tmp_path, models):
    bank = tmp_path / 'old'
    _make_legacy(bank, '/somewhere/else/model')
    res = _priors(models[0], bank, n=N + 1)
    assert res.returncode != 0
    assert 'by name only, by an earlier version' in res.stdout + res.stderr
    assert (bank / 'manifest.jsonl').exists()                   # refused before anything was written

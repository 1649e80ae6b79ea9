"""Bucketed class banks (issue 17): `dreambooth-nb priors` makes, through `class_banks`, the banks training uses (one per
concept, at the photos' bucket sizes), so training after it generates nothing; a bucketed bank interrupted mid-batch and
topped up is bit-identical to one made in one go; a bucketed bank with no photos to take sizes from is one error line."""
import json
from pathlib import Path
import pytest
import yaml
from PIL import Image
from tests.conftest import run_cli

def _cut(img, aspect):
    w, h = img.size
    cw, ch = (w, round(w / aspect)) if w / h < aspect else (round(h * aspect), h)
    return img.crop(((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch)).resize((round(96 * min(1, aspect)), round(96 * min(1, 1 / aspect))))

@pytest.fixture(scope='module')
def project(tmp_path_factory):
    "dog/: a portrait and a landscape photo; cat/: a portrait; concepts.yaml naming both (relative folders)."
    from dreambooth_nb.data import find_images, load_image, sample_subject_dir
    root, photos = tmp_path_factory.mktemp('project'), [load_image(p) for p in find_images(sample_subject_dir())]
    for name, cuts in (('dog', [(photos[0], 3 / 4), (photos[1], 4 / 3)]), ('cat', [(photos[2], 3 / 4)])):
        (root / name).mkdir()
        for i, (img, aspect) in enumerate(cuts): _cut(img, aspect).save(root / name / f'{i}.jpg')
    (root / 'concepts.yaml').write_text(yaml.safe_dump([
        dict(instance_prompt='a photo of olis dog', class_prompt='a photo of dog', instance_data_dir='dog'),
        dict(instance_prompt='a photo of qwx cat', class_prompt='a photo of cat', instance_data_dir='cat')]))
    return root

PRIORS = ['--pretrained_model_name_or_path', 'tiny:sd15', '--num_class_images', '3', '--resolution', '64', '--sample_batch_size', '2',
          '--num_inference_steps', '1', '--seed', '5']

def _records(folder):
    return {p.name: {k: v for k, v in json.loads(Image.open(p).text['dreambooth_nb']).items() if k != 'created'} for p in sorted(Path(folder).glob('class-*.png'))}

def test_priors_ahead_is_the_bank_training_uses(project, tmp_path, monkeypatch):
    bank = tmp_path / 'bank'
    res = run_cli('priors', *PRIORS, '--concepts_list', str(project / 'concepts.yaml'), '--aspect_buckets', '--class_data_dir', str(bank), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert '3 class images for olis' in res.stdout and '3 class images for qwx' in res.stdout
    sizes = {c: sorted((r['width'], r['height']) for r in _records(bank / c).values()) for c in ('olis', 'qwx')}
    assert sizes == {'olis': [(56, 72), (56, 72), (72, 56)], 'qwx': [(56, 72)] * 3}, sizes      # the photos' buckets, not squares
    before = {p: p.stat().st_mtime_ns for p in bank.rglob('*.png')}
    import dreambooth_nb.priors as pr
    from dreambooth_nb.config import TrainConfig
    from dreambooth_nb.run import train
    monkeypatch.setattr(pr, '_generate_batch', lambda *a, **k: pytest.fail('training generated a class image the priors command had made'))
    train(TrainConfig(pretrained_model_name_or_path='tiny:sd15', concepts_list=str(project / 'concepts.yaml'), aspect_buckets=True,
                      with_prior_preservation=True, class_data_dir=str(bank), output_dir=str(tmp_path / 'run'), resolution=64, num_class_images=3,
                      sample_batch_size=2, prior_num_inference_steps=1, seed=5, max_train_steps=1, mode='lora', rank=2,
                      validation_steps=100, num_validation_images=1, num_inference_steps=1))
    assert {p: p.stat().st_mtime_ns for p in bank.rglob('*.png')} == before
    used = [json.loads(l) for l in (tmp_path / 'run' / 'dataset.jsonl').read_text().splitlines() if '"class"' in l]
    assert sorted(Path(r['file']).name for r in used) == sorted(p.name for p in before)

def test_a_bucketed_bank_without_photos_is_one_error_line(tmp_path):
    res = run_cli('priors', *PRIORS, '--aspect_buckets', '--class_prompt', 'a photo of dog', '--class_data_dir', str(tmp_path / 'bank'), cwd=tmp_path)
    errors = [l for l in res.stderr.splitlines() if l.startswith('error:')]
    assert res.returncode == 2 and len(errors) == 1 and 'instance_data_dir' in errors[0], res.stderr[-2000:]
    assert 'Traceback' not in res.stderr and not (tmp_path / 'bank').exists()

def test_a_bucketed_top_up_after_a_crash_is_bit_identical(tmp_path):
    from dreambooth_nb.load import tiny
    from dreambooth_nb.priors import generate_priors
    bb, sizes = tiny('sd15'), {(56, 72): 2, (72, 56): 1}
    kw = dict(class_prompt='a photo of dog', num_class_images=6, resolution=64, sample_batch_size=3, num_inference_steps=1, seed=3,
              progress=False, sizes=sizes)
    generate_priors(bb, tmp_path / 'whole', **kw)
    whole = _records(tmp_path / 'whole')
    assert len(whole) == 6 and len({(r['width'], r['height']) for r in whole.values()}) == 2
    crashed, made = tmp_path / 'crashed', []
    generate_priors(bb, crashed, **kw, should_stop=lambda: made.append(1) or len(made) > 1)      # stopped after one batch
    (crashed / 'class-00001.png').unlink()                                                    # and a crash mid-batch
    assert len(list(crashed.glob('*.png'))) == 2                                              # of batch [0, 1, 2]; [3] and [4, 5] to make
    generate_priors(bb, crashed, **kw)
    assert _records(crashed) == whole                                                         # same seeds, sizes and batches
    pixels = lambda folder: {p.name: Image.open(p).tobytes() for p in sorted(Path(folder).glob('*.png'))}
    assert pixels(crashed) == pixels(tmp_path / 'whole')

"""DreamBooth personalizes, measured (issue 25, item 5): the bundled micro model fine-tuned on the bundled dog (held out of
its pretraining) with the demo's recipe, with and without prior preservation, sampled at 8 fixed seeds.

The measure needs no downloaded encoder: each image as a 16x16 thumbnail, mean-centred and normalised, so the dot product
of two is the correlation of their layouts (where the light, dark and coloured parts are).
- **subject fidelity** (`near_photo`): for each sample of 'a photo of olis dog', its best correlation with a real photo
  (or its mirror image), averaged. It rewards drawing the photos' layout; it is not identity and is never mixed with
  DINO or CLIP-I numbers;
- the same for 'a photo of dog' (a PRES-like drift score: high = the class prompt draws the subject);
- **kept** (`same_seed`): correlation between the class prompt's samples before and after fine-tuning, seed by seed.

Measured on 2 CPU cores (300 steps, lr 1e-4, 50 priors): base 0.322 / 0.345; with priors 0.533 / 0.357, class kept 0.758;
without priors 0.456 / 0.447, and 'a photo of dog' became 'a photo of olis dog' (same-seed correlation 0.985: the paper's
language drift). `bench/planted_bugs.py` shows the tests catch a dropped identifier and a wrong regression target."""
from pathlib import Path
import numpy as np
import pytest
from PIL import Image

SEEDS = tuple(range(8))
SAMPLE = dict(num_inference_steps=25, guidance_scale=4.0, height=64, width=64)
SUBJECT, CLASS = 'a photo of olis dog', 'a photo of dog'

def layout(im: Image.Image, n: int = 16) -> np.ndarray:
    "A centre-cropped n x n RGB thumbnail, mean-centred and unit length: dot products are layout correlations."
    w, h = im.size; s = min(w, h)
    im = im.convert('RGB').crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((n, n), Image.BILINEAR)
    v = np.asarray(im, dtype=np.float32).ravel(); v = v - v.mean()
    return v / (np.linalg.norm(v) + 1e-8)

def near_photo(samples, photos) -> float:
    "Mean over samples of the best layout correlation with a photo or its mirror image."
    refs = np.stack([layout(p) for p in photos] + [layout(p.transpose(Image.FLIP_LEFT_RIGHT)) for p in photos])
    return float(np.mean([np.max(refs @ layout(s)) for s in samples]))

def same_seed(a, b) -> float:
    "Mean layout correlation of two sample lists, image by image (same seeds)."
    return float(np.mean([layout(x) @ layout(y) for x, y in zip(a, b)]))

def _samples(backbone) -> dict:
    from dreambooth_nb.sampling import generate
    return {p: generate(backbone, [p], SEEDS, **SAMPLE) for p in (SUBJECT, CLASS)}

@pytest.fixture(scope='module')
def scores(tmp_path_factory):
    from dreambooth_nb.checkpoint import load_trained
    from dreambooth_nb.data import load_image, sample_subject_dir
    from dreambooth_nb.load import load_backbone
    from dreambooth_nb.run import demo_config, train
    root = tmp_path_factory.mktemp('personalize')
    photos = [load_image(p) for p in sorted(sample_subject_dir().glob('*.jpg'))]
    made = {'base': _samples(load_backbone('micro'))}
    for name, pp in (('prior', True), ('no-prior', False)):
        train(demo_config(root / name, class_data_dir=str(root / 'bank'), with_prior_preservation=pp, checkpointing_steps=300,
                          validation_steps=1000))
        made[name] = _samples(load_trained(root / name)[0])
    out = {k: dict(subject=near_photo(m[SUBJECT], photos), cls=near_photo(m[CLASS], photos),
                   kept=same_seed(m[CLASS], made['base'][CLASS]), drift=same_seed(m[CLASS], m[SUBJECT])) for k, m in made.items()}
    print({k: {m: round(v, 3) for m, v in s.items()} for k, s in out.items()})
    return out

def test_the_identifier_draws_the_subject_more_than_the_base(scores):
    assert scores['prior']['subject'] > scores['base']['subject'] + 0.1, scores          # measured 0.533 vs 0.322

def test_the_identifier_is_what_draws_it(scores):
    assert scores['prior']['subject'] > scores['prior']['cls'] + 0.1, scores             # measured 0.533 vs 0.357

def test_prior_preservation_keeps_the_class(scores):
    assert abs(scores['prior']['cls'] - scores['base']['cls']) < 0.05, scores            # measured 0.357 vs 0.345
    assert scores['prior']['kept'] > 0.6, scores                                          # measured 0.758

def test_without_priors_the_class_drifts_to_the_subject(scores):
    assert scores['no-prior']['cls'] > scores['base']['cls'] + 0.05, scores              # measured 0.447 vs 0.345
    assert scores['no-prior']['drift'] > scores['prior']['drift'] + 0.3, scores          # measured 0.985 vs 0.305

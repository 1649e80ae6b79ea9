"""Real photos keep their shape (issue 17): the shared DreamBooth photos cut to portrait and landscape, with a caption
and a mask, on the tiny 64 px model. Buckets keep the aspect, the caption reaches the text encoder, the masked loss is
the hand-computed value, two concepts train into one run (dataset.jsonl, metrics, grids), a bucketed run resumes bit
for bit, and bad input stops with one message and nothing written."""
import json
from pathlib import Path
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

SHARED = Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'dreambooth-dataset'

def _source(name: str, i: int) -> Image.Image:
    "Photo `i` of subject `name` from the shared dataset (the bundled dog when the shared folder is absent)."
    from dreambooth_nb.data import find_images, load_image, sample_subject_dir
    folder = SHARED / name if (SHARED / name).is_dir() else sample_subject_dir()
    img = load_image(find_images(folder)[i]); img.thumbnail((320, 320))
    return img

def _cut(img: Image.Image, aspect: float) -> Image.Image:
    "The largest centred crop of `img` with width/height = `aspect`."
    w, h = img.size
    cw, ch = (w, round(w / aspect)) if w / h < aspect else (round(h * aspect), h)
    cw, ch = min(cw, w), min(ch, h)
    return img.crop(((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch))

@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    "dog/: portrait (caption + mask) and landscape; cat/: portrait and square."
    root = tmp_path_factory.mktemp('photos')
    dog, cat = root / 'dog', root / 'cat'; dog.mkdir(); cat.mkdir()
    _cut(_source('dog', 0), 3 / 4).save(dog / 'portrait.jpg'); _cut(_source('dog', 1), 4 / 3).save(dog / 'landscape.jpg')
    (dog / 'portrait.txt').write_text('{identifier} {class_name} sitting on green grass', encoding='utf-8')
    w, h = Image.open(dog / 'portrait.jpg').size
    mask = Image.new('L', (w, h), 0); ImageDraw.Draw(mask).ellipse((w // 4, h // 4, 3 * w // 4, 3 * h // 4), fill=255)
    mask.save(dog / 'portrait_mask.png')
    _cut(_source('cat', 0), 3 / 4).save(cat / 'portrait.jpg'); _cut(_source('cat', 1), 1.0).save(cat / 'square.jpg')
    return root

@pytest.fixture(scope='module')
def base(tmp_path_factory):
    from dreambooth_nb.load import tiny
    return tiny('sd15').save_pretrained(tmp_path_factory.mktemp('base') / 'tiny')

def _cfg(photos, run, base, **kw):
    from dreambooth_nb.config import TrainConfig
    return TrainConfig(**dict(pretrained_model_name_or_path=str(base), instance_data_dir=str(photos / 'dog'), output_dir=str(run),
                              resolution=64, max_train_steps=4, learning_rate=1e-4, aspect_buckets=True, masked_loss=True,
                              with_prior_preservation=False, validation_steps=1000, num_inference_steps=1, num_validation_images=1,
                              checkpointing_steps=2, prior_num_inference_steps=1, num_class_images=2) | kw)

def test_buckets_keep_the_aspect(photos, base, tmp_path):
    from dreambooth_nb.data import subject_data
    data = subject_data(_cfg(photos, tmp_path, base), size_multiple=8)
    for img in data.instance:
        w, h = Image.open(img.file).size
        assert abs((img.size[0] / img.size[1]) / (w / h) - 1) < 0.10, (img.file, img.size, (w, h))
    assert {img.size[0] < img.size[1] for img in data.instance} == {True, False}           # one portrait, one landscape

def _trainer(cfg):
    from dreambooth_nb.data import subject_data
    from dreambooth_nb.load import load_base
    from dreambooth_nb.training import Trainer
    bb = load_base(cfg)
    t = Trainer(cfg, bb, subject_data(cfg, size_multiple=bb.size_multiple)); t.setup()
    return t

def test_the_caption_reaches_the_text_encoder(photos, base, tmp_path):
    cfg = _cfg(photos, tmp_path, base, train_text_encoder=True)          # ids encoded every step, inside the batch
    t, seen = _trainer(cfg), []
    t.backbone.text_encoder.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    caption = 'olis dog sitting on green grass'
    k = next(k for k in range(8) if caption in [t.data.instance[i].caption for i in __import__('dreambooth_nb.data', fromlist=['x']).batch_items(t.data, 1, k, cfg.seed)[1]])
    t.micro_batch(k)
    tok = t.backbone.tokenizer
    want = tok(caption, add_special_tokens=False).input_ids
    ids = seen[-1][0].tolist()
    assert sum(i in want for i in ids) == len(want) and tok.decode([i for i in ids if i in want]) == caption

def test_masked_loss_is_the_hand_computed_value(photos, base, tmp_path):
    cfg = _cfg(photos, tmp_path, base, mask_floor=0.25)
    t = _trainer(cfg)
    from dreambooth_nb.data import batch_items
    k = next(k for k in range(8) if t.data.instance[batch_items(t.data, 1, k, cfg.seed)[1][0]].mask is not None)
    loss, parts = t.compute_loss(k)
    mb, bb = t.micro_batch(k), t.backbone                                      # the same draws, by hand
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + k)
    noisy, ts, target = bb.noise_and_target(mb.latents, generator=g, offset_noise=cfg.offset_noise)
    with torch.no_grad(): pred = bb.predict(noisy, ts, mb.cond, modules=t.models)
    err = ((pred - target) ** 2).detach().numpy()[0]                          # (C, h, w)
    m = mb.masks[0, 0].numpy(); fy, fx = m.shape[0] // err.shape[1], m.shape[1] // err.shape[2]
    m = m.reshape(err.shape[1], fy, err.shape[2], fx).mean(axis=(1, 3))       # area average to the latent grid
    want = float((err * (0.25 + 0.75 * m)).mean())
    assert abs(float(parts['instance_loss']) - want) < 1e-5 * max(1.0, want)
    assert abs(float(err.mean()) - want) > 1e-4                                # the mask changed it

def test_two_concepts_train_into_one_run(photos, base, tmp_path):
    from dreambooth_nb.run import train
    concepts = [dict(instance_prompt='a photo of olis dog', class_prompt='a photo of dog', instance_data_dir=str(photos / 'dog')),
                dict(instance_prompt='a photo of qwx cat', class_prompt='a photo of cat', instance_data_dir='cat')]
    (photos / 'concepts.json').write_text(json.dumps(concepts))
    run = tmp_path / 'run'
    t = train(_cfg(photos, run, base, concepts_list=str(photos / 'concepts.json'), with_prior_preservation=True, max_train_steps=4))
    recs = [json.loads(l) for l in (run / 'dataset.jsonl').read_text().splitlines()]
    assert {(r['concept'], r['source']) for r in recs} == {(c, s) for c in ('olis', 'qwx') for s in ('instance', 'class')}
    assert all(r['file'].startswith('priors/') for r in recs if r['source'] == 'class')          # one bank per concept, in the run
    assert {r['file'].split('/')[1] for r in recs if r['source'] == 'class'} == {'olis', 'qwx'}
    assert {(r['width'], r['height']) for r in recs if r['concept'] == 'olis'} == {(56, 72), (72, 56)}
    metrics = [json.loads(l) for l in (run / 'metrics.jsonl').read_text().splitlines()]
    assert {'instance_loss_olis', 'instance_loss_qwx'} <= set().union(*metrics)
    grid = next(cb for cb in t.callbacks if type(cb).__name__ == 'SampleCallback')
    assert grid.prompts[:2] == ['a photo of olis dog', 'a photo of qwx cat'] and grid.written
    assert Image.open(grid.written[-1]).height >= 4 * 64                      # a row per prompt: both subjects and both classes
    from dreambooth_nb.sampling import default_prompts
    evals = default_prompts(t.cfg, eval=True)                                  # `sample --eval`: the paper's 25 for each subject
    assert len(evals) == 50 and evals[0] == 'a olis dog in the jungle' and evals[25] == 'a qwx cat in the jungle'

def test_a_bucketed_run_resumes_bit_for_bit(photos, base, tmp_path):
    from tests.conftest import train_stopped_and_resumed
    from dreambooth_nb.run import train
    make = lambda run, **kw: _cfg(photos, run, base, random_flip=True, **kw)
    whole = train(make(tmp_path / 'whole'))
    resumed = train_stopped_and_resumed(make, tmp_path / 'resumed', stop_at=2)
    losses = lambda run: [json.loads(l)['loss'] for l in (run / 'metrics.jsonl').read_text().splitlines()]
    assert losses(tmp_path / 'resumed') == losses(tmp_path / 'whole') and len(losses(tmp_path / 'whole')) == 4

def _bad_inputs(photos, tmp):
    "(what, instance folder or concepts file, expected words) for each kind of bad input."
    import shutil
    def folder(name, edit):
        d = tmp / name; shutil.copytree(photos / 'dog', d); edit(d); return d
    dup = tmp / 'dup.json'
    dup.write_text(json.dumps([dict(instance_prompt='a photo of olis dog', class_prompt='a photo of dog', instance_data_dir=str(photos / 'dog')),
                               dict(instance_prompt='a photo of olis cat', class_prompt='a photo of cat', instance_data_dir=str(photos / 'cat'))]))
    return [('caption', folder('latin1', lambda d: (d / 'portrait.txt').write_bytes('olis chien allongé'.encode('latin-1'))), 'not UTF-8'),
            ('mask', folder('black', lambda d: Image.new('L', Image.open(d / 'portrait.jpg').size, 0).save(d / 'portrait_mask.png')), 'all black'),
            ('empty', tmp / 'empty', 'holds no files'),
            ('duplicate', dup, 'share the identifier olis')]

def test_bad_input_one_message_nothing_written(photos, base, tmp_path, cli):
    from dreambooth_nb.config import DreamBoothError
    from dreambooth_nb.run import train
    (tmp_path / 'empty').mkdir()
    for what, where, words in _bad_inputs(photos, tmp_path):
        run = tmp_path / f'run-{what}'
        cfg = _cfg(photos, run, base, **({'concepts_list': str(where)} if what == 'duplicate' else {'instance_data_dir': str(where)}))
        with pytest.raises(DreamBoothError, match=words): train(cfg)
        assert not run.exists(), what
    res = cli('train', '--pretrained_model_name_or_path', base, '--instance_data_dir', tmp_path / 'latin1', '--output_dir', tmp_path / 'cli',
              '--resolution', '64', '--max_train_steps', '1')
    assert res.returncode != 0 and res.stderr.strip().splitlines()[-1].startswith('error:') and 'not UTF-8' in res.stderr
    assert not (tmp_path / 'cli').exists()

def test_a_mask_of_another_size_is_resized_with_a_warning(photos, tmp_path):
    import shutil
    from dreambooth_nb.config import TrainConfig
    from dreambooth_nb.concepts import scan_concepts
    d = tmp_path / 'dog'; shutil.copytree(photos / 'dog', d)
    Image.open(d / 'portrait_mask.png').resize((20, 30)).save(d / 'portrait_mask.png')
    with pytest.warns(UserWarning, match='resized to the photo'): scan_concepts(TrainConfig(instance_data_dir=str(d), masked_loss=True))

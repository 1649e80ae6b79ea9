"End to end: `dreambooth-nb demo` as a user runs it (the bundled micro model, 300 steps), and every file it writes."
import json, math
from pathlib import Path
import pytest, torch
from PIL import Image
from safetensors.torch import load_file
from tests.conftest import run_cli

@pytest.fixture(scope='module')
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp('demo') / 'run'
    res = run_cli('demo', '--out', out)
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res

def test_prints_what_it_wrote_where(demo_run):
    out, res = demo_run
    assert f'Run folder: {out}' in res.stdout
    for name in ('config.yaml', 'metrics.jsonl', 'loss.png', 'priors/', 'checkpoint-', 'samples/'): assert name in res.stdout
    assert 'Traceback' not in res.stderr

def test_config_reloads_and_names_the_bundled_model(demo_run):
    from dreambooth_nb.config import TrainConfig
    from dreambooth_nb.rundir import read_run_config
    out, _ = demo_run
    assert TrainConfig.from_yaml(out / 'config.yaml').pretrained_model_name_or_path == 'micro'   # by name: nothing copied into the run
    cfg = read_run_config(out)
    assert cfg.with_prior_preservation and cfg.train_text_encoder and cfg.pretrained_model_name_or_path == 'micro'
    assert not (out / 'base-model').exists()

def test_metrics_are_finite_and_the_loss_falls(demo_run):
    out, _ = demo_run
    recs = [json.loads(l) for l in (out / 'metrics.jsonl').read_text().splitlines()]
    assert [r['step'] for r in recs] == list(range(1, 301))
    for r in recs:
        for key in ('loss', 'instance_loss', 'prior_loss', 'lr', 'grad_norm', 'seconds'): assert math.isfinite(r[key]), (key, r)
    # a pretrained model starts near its floor: the subject's loss falls by about 40% (0.185 -> 0.113 over the first and last 50 steps)
    first, last = sum(r['instance_loss'] for r in recs[:50]) / 50, sum(r['instance_loss'] for r in recs[-50:]) / 50
    assert last < 0.8 * first, (first, last)

def test_priors_are_images_with_records(demo_run):
    out, _ = demo_run
    pngs = sorted((out / 'priors').glob('class-*.png'))
    assert len(pngs) == 50
    for p in pngs: assert Image.open(p).convert('RGB').size == (64, 64)
    assert sorted(p.name for p in (out / 'priors').iterdir()) == [p.name for p in pngs]   # images only
    records = [json.loads(Image.open(p).text['dreambooth_nb']) for p in pngs]
    assert {r['seed'] for r in records} == set(range(50))

def test_samples_and_loss_plot_decode(demo_run):
    out, _ = demo_run
    samples = sorted((out / 'samples').glob('*.png'))
    assert [p.name for p in samples] == ['base-vs-finetuned.png', 'step-000100.png', 'step-000200.png', 'step-000300.png']
    for p in samples + [out / 'loss.png']:
        img = Image.open(p); img.load(); assert img.size[0] > 100

def test_the_comparison_grid_shows_base_and_fine_tuned(demo_run):
    "Written after training and named in the summary: four rows (identifier and class prompt, base and fine-tuned) of four 64 px seeds."
    out, res = demo_run
    grid = Image.open(out / 'samples' / 'base-vs-finetuned.png')
    assert 'base-vs-finetuned.png' in res.stdout
    assert grid.width >= 4 * 64 and grid.height >= 4 * 64

def test_checkpoint_is_valid_rotated_and_loads_back(demo_run):
    from dreambooth_nb.checkpoint import checkpoint_problem, checkpoint_weights, list_checkpoints, load_trained
    from dreambooth_nb.load import load_backbone
    out, _ = demo_run
    ckpts = list_checkpoints(out)
    assert [c.name for c in ckpts] == ['checkpoint-200', 'checkpoint-300']          # checkpoints_total_limit=2
    assert all(checkpoint_problem(c) is None for c in ckpts)
    bb, manifest = load_trained(out)
    assert manifest['step'] == 300
    saved = checkpoint_weights(ckpts[-1], ema=False)['unet']         # checkpoint-300/unet/, diffusers' layout
    assert all(torch.equal(bb.unet.state_dict()[k], v) for k, v in saved.items())
    base = load_backbone('micro')
    assert not torch.equal(base.unet.conv_in.weight, bb.unet.conv_in.weight)   # training changed the weights
    te = checkpoint_weights(ckpts[-1], ema=False)['text_encoder']
    base_te = base.text_encoder.state_dict()
    assert set(te) == set(base_te)                                              # full mode: the whole text encoder
    assert any(not torch.equal(base_te[k], v) for k, v in te.items())           # ... and it was trained

def test_rerun_continues_the_run_folder(demo_run):
    out, _ = demo_run
    before = {p: p.stat().st_mtime_ns for p in out.glob('checkpoint-*/*') if p.is_file()}
    res = run_cli('demo', '--out', out)            # an existing, finished run: resumed, nothing redone or lost
    assert res.returncode == 0, res.stderr[-2000:]
    assert len((out / 'metrics.jsonl').read_text().splitlines()) == 300
    assert {p: p.stat().st_mtime_ns for p in out.glob('checkpoint-*/*') if p.is_file()} == before
    assert len(list((out / 'priors').glob('class-*.png'))) == 50

def test_train_into_a_finished_run_needs_resume_or_overwrite(demo_run):
    out, _ = demo_run
    res = run_cli('train', '--config', out / 'config.yaml', '--resume_from_checkpoint', 'none')
    assert res.returncode == 2 and 'resume_from_checkpoint latest' in res.stderr and 'Traceback' not in res.stderr

def test_refuses_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / 'holiday.jpg').write_bytes(b'precious')
    res = run_cli('demo', '--out', tmp_path)
    assert res.returncode == 2
    assert res.stderr.startswith('error: Output folder') and 'Traceback' not in res.stderr
    assert [p.name for p in tmp_path.iterdir()] == ['holiday.jpg'] and (tmp_path / 'holiday.jpg').read_bytes() == b'precious'

"Evaluation over a tiny 2-checkpoint run: files written, a best named, generations cached and reused."
import json, shutil, signal, subprocess, time
import pytest
from tests.conftest import run_cli

@pytest.fixture(scope='module')
def run2(tmp_path_factory):
    from dreambooth_nb.run import tiny_demo
    out = tmp_path_factory.mktemp('runs') / 'eval'
    tiny_demo(out, max_train_steps=4, checkpointing_steps=2, mode='lora', rank=2, num_class_images=2, validation_steps=100,
         num_validation_images=1, prior_num_inference_steps=2, num_inference_steps=2)
    return out

PROMPTS = ['a {identifier} {class_name} on the beach', 'a {identifier} {class_name} in the jungle']

def _evaluate(run, **kw):
    from dreambooth_nb.eval import evaluate_run
    return evaluate_run(run, **{**dict(prompts=PROMPTS, images_per_prompt=2, num_inference_steps=2, image_encoder='tiny', clip_model='tiny'), **kw})

def test_two_checkpoints_write_scores_plot_and_best(run2):
    res = _evaluate(run2)
    lines = [json.loads(l) for l in (run2 / 'eval' / 'scores.jsonl').read_text().splitlines()]
    assert [l['checkpoint'] for l in lines] == ['checkpoint-2', 'checkpoint-4']
    for l in lines:
        assert {'checkpoint', 'step', 'dino', 'clip_i', 'clip_t', 'pres', 'div', 'n_images', 'image_encoder', 'clip_model'} <= set(l)
        assert l['n_images'] == 4 and l['image_encoder'] == 'tiny-vit' and -1 <= l['dino'] <= 1
    assert (run2 / 'eval' / 'scores.png').read_bytes()[:4] == b'\x89PNG'
    assert res.best['checkpoint'] in {'checkpoint-2', 'checkpoint-4'}
    assert len(list((run2 / 'eval' / 'images' / 'checkpoint-4').glob('*.png'))) == 4 + 2   # 2 prompts x 2 seeds + class prompt x 2

def test_second_eval_reuses_generations(run2, monkeypatch):
    import dreambooth_nb.eval as ev
    _evaluate(run2, checkpoints='latest')
    calls = []
    real_generate = ev.generate
    monkeypatch.setattr(ev, 'generate', lambda *a, **k: calls.append(1) or real_generate(*a, **k))
    import dreambooth_nb.checkpoint as ck
    real_load = ck.load_trained
    hooked = []
    def load_and_hook(*a, **k):
        bb, m = real_load(*a, **k); bb.denoiser.register_forward_hook(lambda *_: hooked.append(1)); return bb, m
    monkeypatch.setattr(ck, 'load_trained', load_and_hook)
    res = _evaluate(run2, checkpoints='latest')
    assert calls == [] and hooked == []
    assert [r['checkpoint'] for r in res.records] == ['checkpoint-2', 'checkpoint-4']      # the other checkpoint's line kept
    _evaluate(run2, checkpoints='latest', images_per_prompt=3)                            # one new seed per prompt: generated
    assert len(calls) == 3 and hooked                                                    # 2 eval prompts + the class prompt

def test_cli_eval_prints_the_best_and_json(run2):
    args = ['eval', '--run', run2, '--checkpoints', 'checkpoint-2,checkpoint-4', '--prompts', *PROMPTS, '--images_per_prompt', '2',
            '--num_inference_steps', '2', '--image_encoder', 'tiny', '--clip_model', 'tiny']
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr[-2000:]
    assert 'best: checkpoint-' in res.stdout and 'checkpoint-4' in res.stdout
    assert 'evaluating' in res.stderr and '12/12' in res.stderr, res.stderr[-2000:]   # the progress bar: (2 prompts + class) x 2 seeds x 2
    res = run_cli(*args, '--json')
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert [r['checkpoint'] for r in out['records']] == ['checkpoint-2', 'checkpoint-4'] and out['best'] in {'checkpoint-2', 'checkpoint-4'}

@pytest.mark.parametrize('extra, needle', [
    (['--image_encoder', 'nobody-here/not-a-dino'], 'could not be loaded offline'),
    (['--checkpoints', 'checkpoint-99'], 'checkpoint-99'),
    (['--images_per_prompt', '0'], 'from 1 to 64')])
def test_cli_eval_errors_are_one_line(run2, extra, needle):
    res = run_cli('eval', '--run', run2, '--clip_model', 'tiny', '--prompts', PROMPTS[0], '--images_per_prompt', '1',
                  '--num_inference_steps', '1', *extra)
    assert res.returncode == 2 and needle in res.stderr, res.stderr[-2000:]
    assert 'Traceback' not in res.stderr

def test_eval_callback_appends_scores_while_training(tmp_path):
    from dreambooth_nb.eval import EvalCallback
    from dreambooth_nb.load import tiny
    from dreambooth_nb.run import tiny_config, train
    run = tmp_path / 'cb'
    tiny('sd15').save_pretrained(tmp_path / 'base')
    cb = EvalCallback(run, every=2, prompts=PROMPTS[:1], seeds=(0, 1), num_inference_steps=2, image_encoder='tiny', clip_model='tiny')
    train(tiny_config(run, pretrained_model_name_or_path=str(tmp_path / 'base'), max_train_steps=4, checkpointing_steps=100, mode='lora', rank=2, num_class_images=2, validation_steps=100,
                      num_validation_images=1, prior_num_inference_steps=2, num_inference_steps=2), callbacks=[cb])
    lines = [json.loads(l) for l in (run / 'eval' / 'scores.jsonl').read_text().splitlines()]
    assert [(l['step'], l['during'], l['n_images']) for l in lines] == [(2, 'training', 2), (4, 'training', 2)]

def _denoiser_calls(monkeypatch):
    "A list that grows by one per denoiser forward of every checkpoint evaluate_run loads."
    import dreambooth_nb.checkpoint as ck
    real_load, calls = ck.load_trained, []
    def load_and_hook(*a, **k):
        bb, m = real_load(*a, **k); bb.denoiser.register_forward_hook(lambda *_: calls.append(1)); return bb, m
    monkeypatch.setattr(ck, 'load_trained', load_and_hook)
    return calls

def test_stop_keeps_scored_checkpoints_and_a_rerun_renders_only_the_missing(run2, monkeypatch):
    shutil.rmtree(run2 / 'eval', ignore_errors=True)                  # this test's own start: nothing scored or cached
    calls, seen = _denoiser_calls(monkeypatch), []
    progress = lambda done, total, what: seen.append((done, total, what))
    # 6 images per checkpoint ((2 prompts + class prompt) x 2 seeds): stop once checkpoint-4 has its first prompt's 2
    res = _evaluate(run2, progress=progress, should_stop=lambda: any(d >= 8 for d, _, _ in seen))
    assert res.stopped and [r['checkpoint'] for r in res.records] == ['checkpoint-2'] and res.best['checkpoint'] == 'checkpoint-2'
    assert [json.loads(l)['checkpoint'] for l in (run2 / 'eval' / 'scores.jsonl').read_text().splitlines()] == ['checkpoint-2']
    assert {t for _, t, _ in seen} == {12} and (6, 12, 'checkpoint-2: scored') in seen and seen[-1][0] == 8
    kept = {p: p.stat().st_mtime_ns for p in (run2 / 'eval' / 'images' / 'checkpoint-4').glob('*.png')}
    assert len(kept) == 2
    first = len(calls); calls.clear()                                 # 4 prompt groups rendered: 3 of checkpoint-2, 1 of checkpoint-4
    res = _evaluate(run2)
    assert not res.stopped and [r['checkpoint'] for r in res.records] == ['checkpoint-2', 'checkpoint-4']
    assert len(calls) * 2 == first and calls, (first, len(calls))      # the 2 missing groups of checkpoint-4 only
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())     # the images kept at the stop were reused, not redrawn

def test_cli_ctrl_c_is_one_line_and_keeps_the_scored_checkpoint(run2, tmp_path):
    scores = run2 / 'eval' / 'scores.jsonl'
    shutil.rmtree(run2 / 'eval', ignore_errors=True)
    proc = subprocess.Popen(['dreambooth-nb', 'eval', '--run', str(run2), '--prompts', *PROMPTS, '--images_per_prompt', '2',
                             '--num_inference_steps', '6', '--image_encoder', 'tiny', '--clip_model', 'tiny'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 900                                       # a loaded CI machine is slow
    while not (scores.exists() and 'checkpoint-2' in scores.read_text()) and proc.poll() is None and time.time() < deadline: time.sleep(0.02)
    assert proc.poll() is None and scores.exists(), f'checkpoint-2 not scored in time, or the command ended first: {proc.poll()}'
    proc.send_signal(signal.SIGINT)                                    # while checkpoint-4 loads or renders
    out, err = proc.communicate(timeout=120)
    errors = [l for l in err.splitlines() if l.startswith('error:')]
    assert proc.returncode == 130 and len(errors) == 1 and 'interrupted' in errors[0], err[-2000:]
    assert 'Traceback' not in err and [json.loads(l)['checkpoint'] for l in scores.read_text().splitlines()] == ['checkpoint-2']

@pytest.fixture(scope='module')
def two_concepts(tmp_path_factory):
    "A project folder: concepts.yaml (relative folders), dog/ (2 photos), cat/ (1 photo), and run/ trained 2 steps on both concepts."
    import yaml
    from dreambooth_nb.config import TrainConfig
    from dreambooth_nb.data import find_images, load_image, sample_subject_dir
    from dreambooth_nb.run import train
    root, photos = tmp_path_factory.mktemp('project'), find_images(sample_subject_dir())
    for name, files in (('dog', photos[:2]), ('cat', photos[2:3])):
        (root / name).mkdir()
        for i, p in enumerate(files): load_image(p).resize((64, 64)).save(root / name / f'{i}.jpg')
    (root / 'concepts.yaml').write_text(yaml.safe_dump([
        dict(instance_prompt='a photo of olis dog', class_prompt='a photo of dog', instance_data_dir='dog'),
        dict(instance_prompt='a photo of qwx cat', class_prompt='a photo of cat', instance_data_dir='cat')]))
    from dreambooth_nb.eval import EvalCallback
    cb = EvalCallback(root / 'run', every=2, prompts=PROMPTS[:1], seeds=(0,), num_inference_steps=1, image_encoder='tiny', clip_model='tiny')
    train(TrainConfig(pretrained_model_name_or_path='tiny:sd15', concepts_list=str(root / 'concepts.yaml'), output_dir=str(root / 'run'),
                      resolution=64, max_train_steps=2, checkpointing_steps=1, with_prior_preservation=False, mode='lora', rank=2,
                      validation_steps=100, num_validation_images=1, num_inference_steps=1), callbacks=[cb])
    assert [(r['step'], r['concept'], r['during']) for r in cb.records] == [(2, 'olis', 'training'), (2, 'qwx', 'training')]   # scored while training, per concept
    return root

def test_every_concept_is_scored_against_its_own_photos(two_concepts, monkeypatch):
    import dreambooth_nb.eval as ev
    run, seen = two_concepts / 'run', []
    real_score = ev.score_checkpoint
    monkeypatch.setattr(ev, 'score_checkpoint', lambda images, prompts, cls, real, *a: seen.append((prompts[0], len(real))) or real_score(images, prompts, cls, real, *a))
    t0 = time.time(); res = _evaluate(run, prompts=PROMPTS[:1], images_per_prompt=1, num_inference_steps=1); took = time.time() - t0
    print(f'eval of 2 checkpoints x 2 concepts (1 prompt + class, 1 image each): {took:.1f} s')
    assert [(r['checkpoint'], r['concept']) for r in res.records] == [(f'checkpoint-{s}', c) for s in (1, 2) for c in ('olis', 'qwx')]
    assert seen[:2] == [('a olis dog on the beach', 2), ('a qwx cat on the beach', 1)]          # each concept: its prompts, its photos
    assert res.best['concept'] == 'mean' and res.best['concepts'] == ['olis', 'qwx']
    assert res.best['dino'] == pytest.approx(sum(r['dino'] for r in res.records if r['checkpoint'] == res.best['checkpoint']) / 2)
    for c in ('olis', 'qwx'): assert len(list((run / 'eval' / 'images' / 'checkpoint-2' / c).glob('*.png'))) == 2   # prompt + class prompt
    assert (run / 'eval' / 'scores.png').read_bytes()[:4] == b'\x89PNG'
    from dreambooth_nb.eval_cli import _summary                       # what `dreambooth-nb eval` prints (the command is tested above)
    rows = [l.split() for l in _summary(res).splitlines() if l.startswith('checkpoint-2')]
    assert [r[1] for r in rows] == ['olis', 'qwx', 'mean'] and 'mean over the concepts' in _summary(res)

def test_old_scores_without_a_concept_still_read(tmp_path):
    from dreambooth_nb.eval import best_checkpoint, plot_scores
    old = [dict(checkpoint=f'checkpoint-{n}', step=n, dino=d, clip_i=.5, clip_t=.3, pres=.4, div=.1) for n, d in ((2, .5), (4, .6))]
    assert best_checkpoint(old)['checkpoint'] == 'checkpoint-4' and len(plot_scores(old).axes) == 1

def test_a_moved_concepts_run_resumes_samples_and_evaluates(two_concepts, tmp_path, monkeypatch):
    "The whole project (concepts.yaml naming dog/ and cat/ relatively, and run/) moved: the run's absolute concepts_list is gone. Last in the file: it moves the module's project."
    moved = tmp_path / 'drive' / 'project'; moved.parent.mkdir(); shutil.move(str(two_concepts), str(moved))
    run, elsewhere = moved / 'run', tmp_path / 'elsewhere'; elsewhere.mkdir()
    res = run_cli('sample', '--run', run, '--seeds', '0', '--num_inference_steps', '1', '--out', tmp_path / 's', cwd=elsewhere)
    assert res.returncode == 0, res.stderr[-2000:]
    assert '\n4 images from' in res.stdout and res.stdout.count('the run was moved') == 1, res.stdout     # both concepts' prompts and both classes
    res = _evaluate(run, checkpoints='latest', prompts=PROMPTS[:1], images_per_prompt=1, num_inference_steps=1)
    assert {r['concept'] for r in res.records if r['checkpoint'] == 'checkpoint-2'} == {'olis', 'qwx'}
    from dreambooth_nb.rundir import read_run_config
    from dreambooth_nb.run import train
    monkeypatch.chdir(elsewhere)                                       # what `train --config RUN/config.yaml --resume_from_checkpoint latest` does
    train(read_run_config(run).replace(resume_from_checkpoint='latest', max_train_steps=3))
    assert [json.loads(l)['step'] for l in (run / 'metrics.jsonl').read_text().splitlines()] == [1, 2, 3]
    assert {json.loads(l)['concept'] for l in (run / 'dataset.jsonl').read_text().splitlines()} == {'olis', 'qwx'}

def test_cli_eval_steps_have_their_own_range(capsys):
    "--num_inference_steps 100 is a valid request; a bad one says 'denoising steps', not the images-per-prompt range."
    import argparse
    from dreambooth_nb.eval_cli import add_eval_parser
    p = argparse.ArgumentParser(); add_eval_parser(p.add_subparsers(dest='command'))
    assert p.parse_args(['eval', '--run', 'r', '--num_inference_steps', '100']).num_inference_steps == 100
    with pytest.raises(SystemExit): p.parse_args(['eval', '--run', 'r', '--num_inference_steps', '0'])
    err = capsys.readouterr().err
    assert 'denoising steps' in err and '1 to 1000' in err and '1 to 64' not in err, err

@pytest.mark.parametrize('nb', ['07b_eval', '08f_eval'])
def test_the_papers_pres_and_div_are_attributed_to_imagen(nb):
    "The paper's PRES/DIV (0.664 -> 0.493, 0.371 -> 0.391) are from its Table 3, on Imagen; every cell that quotes them says so."
    from pathlib import Path
    cells = json.loads((Path(__file__).parents[1] / 'nbs' / f'{nb}.ipynb').read_text())['cells']
    quoting = [''.join(c['source']) for c in cells if '0.664' in ''.join(c['source'])]
    assert quoting and all('Imagen' in s for s in quoting), nb
    assert not any('(SD, Table 1/3)' in s for s in quoting), nb

"Evaluation over a tiny 2-checkpoint run: files written, a best named, generations cached and reused."
import json
import pytest
from tests.conftest import run_cli

@pytest.fixture(scope='module')
def run2(tmp_path_factory):
    from dreambooth_nb.run import demo
    out = tmp_path_factory.mktemp('runs') / 'eval'
    demo(out, max_train_steps=4, checkpointing_steps=2, mode='lora', rank=2, num_class_images=2, validation_steps=100,
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
    from dreambooth_nb.run import demo_config, train
    run = tmp_path / 'cb'
    tiny('sd15').save_pretrained(tmp_path / 'base')
    cb = EvalCallback(run, every=2, prompts=PROMPTS[:1], seeds=(0, 1), num_inference_steps=2, image_encoder='tiny', clip_model='tiny')
    train(demo_config(run, pretrained_model_name_or_path=str(tmp_path / 'base'), max_train_steps=4, checkpointing_steps=100, mode='lora', rank=2, num_class_images=2, validation_steps=100,
                      num_validation_images=1, prior_num_inference_steps=2, num_inference_steps=2), callbacks=[cb])
    lines = [json.loads(l) for l in (run / 'eval' / 'scores.jsonl').read_text().splitlines()]
    assert [(l['step'], l['during'], l['n_images']) for l in lines] == [(2, 'training', 2), (4, 'training', 2)]

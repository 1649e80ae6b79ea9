"""The out-of-memory ladder at run time (04b_oom_fallback), tested on CPU by raising `torch.cuda.OutOfMemoryError`
from a callback, as a CUDA allocation would in the first steps of a run that does not fit."""
import json
import pytest, torch
import dreambooth_nb.run as run_module
from dreambooth_nb.config import preset
from dreambooth_nb.fallback import OOM_FALLBACK_STEPS
from dreambooth_nb.rundir import read_metrics, read_run_config
from dreambooth_nb.run import train
from dreambooth_nb.training import Callback

class OutOfMemoryAt(Callback):
    "Raise a CUDA out-of-memory error after `step` in each of the first `times` attempts (the attempts' configs are kept)."
    order = 5
    def __init__(self, step: int = 1, times: int = 1): self.step, self.times, self.configs = step, times, []
    def before_fit(self): self.configs.append(self.trainer.cfg)
    def after_step(self):
        if self.trainer.step == self.step and len(self.configs) <= self.times:
            raise torch.cuda.OutOfMemoryError('CUDA out of memory. Tried to allocate 20.00 MiB (injected by the test)')

def _cfg(run, **kw):
    return preset('tiny', **{**dict(output_dir=str(run), max_train_steps=4, checkpointing_steps=4, validation_steps=100,
                                    num_class_images=2, train_batch_size=2, learning_rate=5e-6), **kw})

@pytest.fixture
def bank_tops(monkeypatch):
    "How many times the run topped up its class-prior banks."
    calls = []
    real = run_module.class_banks
    monkeypatch.setattr(run_module, 'class_banks', lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls

def _losses(run): return [(r['step'], r['loss']) for r in read_metrics(run)]

def test_an_oom_in_the_first_steps_steps_down_once_keeps_the_priors_and_records_why(tmp_path, bank_tops):
    oom = OutOfMemoryAt(step=2)
    t = train(_cfg(tmp_path / 'run'), callbacks=[oom])
    run = tmp_path / 'run'
    assert t.step == 4 and [c.gradient_checkpointing for c in oom.configs] == [False, True]
    assert len(bank_tops) == 1                                     # priors made once, found full by the second attempt
    (rec,) = [json.loads(l) for l in (run / 'fallback.jsonl').read_text().splitlines()]
    assert (rec['step'], rec['rung'], rec['set']) == (2, 'gradient checkpointing', {'gradient_checkpointing': True})
    assert 'Tried to allocate 20.00 MiB' in rec['why']
    assert read_run_config(run).gradient_checkpointing             # config.yaml says what the run trains with
    metrics = read_metrics(run)
    assert [r['step'] for r in metrics] == [1, 2, 3, 4] and all(r['oom_fallbacks'] == 1 for r in metrics)
    # the attempt started again from step 0: its curve is the curve of a run configured that way from the start
    direct = tmp_path / 'direct'
    train(_cfg(direct, gradient_checkpointing=True))
    assert _losses(run) == _losses(direct)
    assert (run / 'model_index.json').exists()                     # finished: the final pipeline is there

def test_without_an_oom_nothing_changes(tmp_path):
    plain, watched = tmp_path / 'plain', tmp_path / 'watched'
    train(_cfg(plain)); train(_cfg(watched), callbacks=[OutOfMemoryAt(step=2, times=0)])
    assert _losses(plain) == _losses(watched) and not (watched / 'fallback.jsonl').exists()
    assert 'oom_fallbacks' not in read_metrics(watched)[0]

def test_the_ladder_walks_down_to_lora_then_gives_up_and_a_resume_keeps_the_rungs(tmp_path, capsys):
    run, oom = tmp_path / 'run', OutOfMemoryAt(step=1, times=99)
    with pytest.raises(torch.cuda.OutOfMemoryError): train(_cfg(run), callbacks=[oom])
    rungs = [json.loads(l)['rung'] for l in (run / 'fallback.jsonl').read_text().splitlines()]
    assert rungs == ['gradient checkpointing', 'smaller optimizer state', 'smaller batch with accumulation', 'LoRA']
    last = oom.configs[-1]
    assert (last.mode, last.rank, last.learning_rate, last.optimizer) == ('lora', 16, 1e-4, 'adafactor')
    assert (last.train_batch_size, last.gradient_accumulation_steps) == (1, 2)
    assert 'every rung of the out-of-memory ladder taken' in capsys.readouterr().out
    # the same command again, resuming: the recorded rungs apply before anything loads
    oom2 = OutOfMemoryAt(times=0)
    t = train(_cfg(run, resume_from_checkpoint='latest'), callbacks=[oom2])
    assert t.step == 4 and t.cfg.mode == 'lora' and oom2.configs[0].gradient_checkpointing
    assert (run / 'pytorch_lora_weights.safetensors').exists()

@pytest.mark.parametrize('case', ['late', 'after a checkpoint', 'turned off'])
def test_an_oom_that_is_not_the_recipes_peak_stops_the_run(tmp_path, case):
    step = dict(late=OOM_FALLBACK_STEPS + 1).get(case, 3)
    kw = {'late': dict(max_train_steps=OOM_FALLBACK_STEPS + 2, checkpointing_steps=100),
          'after a checkpoint': dict(checkpointing_steps=2), 'turned off': dict(oom_fallback=False)}[case]
    run = tmp_path / 'run'
    with pytest.raises(torch.cuda.OutOfMemoryError): train(_cfg(run, **kw), callbacks=[OutOfMemoryAt(step=step)])
    assert not (run / 'fallback.jsonl').exists() and not read_run_config(run).gradient_checkpointing

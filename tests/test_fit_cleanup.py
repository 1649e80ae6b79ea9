"""However `train` ends, it cleans up as miniai's Learner does (`cleanup_fit` in a `finally`): after an error or an
interrupt the SIGINT/SIGTERM handlers are the caller's again (a notebook's Ctrl-C then works at the first press), the
progress bar is closed, nothing is saved as a checkpoint, and no callback keeps the trainer (and its model) alive."""
import gc, signal, weakref
import pytest
from dreambooth_nb.config import preset
from dreambooth_nb.run import train
from dreambooth_nb.rundir import read_metrics
from dreambooth_nb.training import Callback, ProgressCallback
from dreambooth_nb.checkpoint import StopOnSignal, list_checkpoints

SIGNALS = (signal.SIGINT, signal.SIGTERM)

class FailAt(Callback):
    "Raise `error` after step `step`, having recorded what the fit looked like from inside."
    order = 25                  # after metrics and progress, before the checkpoint callback
    def __init__(self, step, error): self.step, self.error = step, error
    def after_step(self):
        t = self.trainer
        self.handlers = {s: signal.getsignal(s) for s in SIGNALS}
        self.stopper = next(cb for cb in t.callbacks if isinstance(cb, StopOnSignal))
        self.bar = next(cb for cb in t.callbacks if isinstance(cb, ProgressCallback)).bar
        self.callbacks, self.trainer_ref = list(t.callbacks), weakref.ref(t)
        if t.step == self.step: raise self.error

def _cfg(run, **kw):
    return preset('tiny', **{**dict(output_dir=str(run), max_train_steps=4, checkpointing_steps=1, validation_steps=100,
                                    with_prior_preservation=False, train_text_encoder=False), **kw})

@pytest.mark.parametrize('error', [RuntimeError('boom'), KeyboardInterrupt()], ids=['error', 'second-ctrl-c'])
def test_an_error_in_fit_restores_signals_closes_the_bar_and_lets_the_trainer_go(tmp_path, error):
    before = {s: signal.getsignal(s) for s in SIGNALS}
    fail = FailAt(2, error)
    with pytest.raises(type(error)): train(_cfg(tmp_path / 'run'), callbacks=[fail])
    assert all(fail.handlers[s] == fail.stopper._handle for s in SIGNALS)     # StopOnSignal's handlers were in place
    assert {s: signal.getsignal(s) for s in SIGNALS} == before                # and are the caller's again
    assert fail.bar.disable, 'the tqdm bar was left open'
    assert [c.name for c in list_checkpoints(tmp_path / 'run')] == ['checkpoint-1']   # step 2 failed: not saved
    assert [r['step'] for r in read_metrics(tmp_path / 'run')] == [1, 2]
    assert all(cb.trainer is None for cb in fail.callbacks)
    error.__traceback__ = None                    # the caller's own hold on the failed frames (IPython keeps one too)
    gc.collect()
    assert fail.trainer_ref() is None, gc.get_referrers(fail.trainer_ref())

def test_a_finished_fit_lets_the_trainer_go(tmp_path):
    class Keep(Callback):
        def after_step(self): self.ref = weakref.ref(self.trainer)
    keep = Keep()
    trainer = train(_cfg(tmp_path / 'run', max_train_steps=2), callbacks=[keep])
    assert keep.trainer is None and keep.ref() is trainer
    del trainer; gc.collect()
    assert keep.ref() is None, 'a callback kept after the fit still keeps the trainer alive'

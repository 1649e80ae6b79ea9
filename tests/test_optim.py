"""Each optimizer, fused_backward, EMA and bf16 master weights: a run stopped and resumed from its checkpoint ends
bit-identical to one that never stopped (weights, optimizer state, EMA, rounding generator); fused_backward and
master_weights refuse what they cannot do with one clear error line."""
import importlib.util, tempfile
import pytest
import torch

def _optional(name, package):
    return pytest.param(name, marks=pytest.mark.skipif(importlib.util.find_spec(package) is None, reason=f'{package} not installed'))

CASES = [dict(optimizer='adafactor'), dict(optimizer='adamw', fused_backward=True),
         dict(optimizer='adafactor', fused_backward=True, use_ema=True, ema_on_cpu=True),
         dict(optimizer='adamw', use_ema=True, mode='lora', rank=2, use_dora=True),     # plain AdamW: 05_checkpoint's own check
         dict(optimizer='adamw', master_weights='bf16'),
         dict(optimizer='adafactor', master_weights='bf16', fused_backward=True, use_ema=True)]

def _run(run_dir, steps, stop_at=None, **kw):
    from dreambooth_nb.config import preset
    from dreambooth_nb.data import subject_data
    from dreambooth_nb.load import tiny
    from dreambooth_nb.training import Trainer, CancelFitException
    from dreambooth_nb.checkpoint import CheckpointCallback, resume, resolve_checkpoint, latest_checkpoint
    cfg = preset('tiny', **{**dict(max_train_steps=steps, with_prior_preservation=False, train_text_encoder=True, random_flip=True,
                                   learning_rate=1e-3, ema_decay=0.5), **kw})
    class Stop:
        order = 50
        def after_step(self):
            if stop_at and self.trainer.step == stop_at: raise CancelFitException()
    t = Trainer(cfg, tiny(), subject_data(cfg), [CheckpointCallback(run_dir, every=100), Stop()])
    if latest_checkpoint(run_dir): resume(t, resolve_checkpoint(run_dir, 'latest'))
    return t.fit()

def _weights(t): return {f'{n}.{k}': p for n, m in t.models.items() for k, p in m.named_parameters() if p.requires_grad}

def _same_state(a, b):
    for k, v in a.items():
        if torch.is_tensor(v): assert torch.equal(v, b[k]), k
        elif isinstance(v, dict): _same_state(v, b[k])
        else: assert v == b[k], k

def _check_resume(tmp_path, **kw):
    full = _run(tmp_path / 'full', 3, **kw)
    _run(tmp_path / 'stopped', 3, stop_at=2, **kw)
    resumed = _run(tmp_path / 'stopped', 3, **kw)
    for (k, a), b in zip(_weights(full).items(), _weights(resumed).values()): assert torch.equal(a, b), k
    _same_state(full.opt.state_dict()['state'], resumed.opt.state_dict()['state'])
    if full.ema is not None:
        for k, v in full.ema.shadow.items(): assert torch.equal(v, resumed.ema.shadow[k]), k
    if kw.get('master_weights') == 'bf16': _check_bf16(tmp_path / 'stopped', full, resumed)

def _check_bf16(run_dir, full, resumed):
    "bf16 master weights: the parameters and the saved weights are bf16, the moments fp32, the rounding generator saved."
    from dreambooth_nb.checkpoint import checkpoint_weights
    assert {p.dtype for p in _weights(resumed).values()} == {torch.bfloat16}
    assert {v.dtype for v in checkpoint_weights(run_dir / 'checkpoint-2', ema=False)['unet'].values()} == {torch.bfloat16}
    state = torch.load(run_dir / 'checkpoint-2' / 'training_state.pt', weights_only=True)['optimizer']
    assert {v.dtype for s in state['state'].values() for k, v in s.items() if torch.is_tensor(v) and k != 'step'} == {torch.float32}
    assert torch.equal(full.opt.state_dict()['stochastic_rounding']['generators']['cpu'],
                       resumed.opt.state_dict()['stochastic_rounding']['generators']['cpu'])

@pytest.mark.parametrize('kw', CASES, ids=lambda kw: '-'.join(f'{k}={v}' for k, v in kw.items()))
def test_resume_is_bit_identical(tmp_path, kw): _check_resume(tmp_path, **kw)

@pytest.mark.parametrize('name', [_optional('prodigy', 'prodigyopt'), _optional('adamw8bit', 'bitsandbytes')])
def test_optional_optimizers_resume_bit_identical(tmp_path, name):
    _check_resume(tmp_path, optimizer=name, **({'learning_rate': 1.0} if name == 'prodigy' else {}))

def test_fused_backward_with_accumulation_is_one_clear_error(tmp_path):
    from dreambooth_nb.data import sample_subject_dir
    from tests.conftest import run_cli
    res = run_cli('train', '--pretrained_model_name_or_path', 'tiny:sd15', '--instance_data_dir', sample_subject_dir(),
                  '--output_dir', tmp_path / 'r', '--resolution', '64', '--max_train_steps', '2', '--optimizer', 'AdamW',
                  '--fused_backward', '--gradient_accumulation_steps', '2', '--with_prior_preservation', '--num_class_images', '2')
    assert res.returncode == 2 and 'Traceback' not in res.stderr, res.stderr[-2000:]
    line = [l for l in res.stderr.splitlines() if l.startswith('error: ')]
    assert line and 'fused_backward' in line[0] and 'gradient_accumulation_steps=2' in line[0], res.stderr[-2000:]
    assert not (tmp_path / 'r').exists()                  # refused before the run folder or any class image is written

def test_master_weights_refusal_is_one_clear_error(tmp_path):
    from dreambooth_nb.data import sample_subject_dir
    from tests.conftest import run_cli
    res = run_cli('train', '--pretrained_model_name_or_path', 'tiny:sd15', '--instance_data_dir', sample_subject_dir(),
                  '--output_dir', tmp_path / 'r', '--resolution', '64', '--max_train_steps', '2', '--master_weights', 'bf16',
                  '--optimizer', 'prodigy')
    assert res.returncode == 2 and 'Traceback' not in res.stderr, res.stderr[-2000:]
    line = [l for l in res.stderr.splitlines() if l.startswith('error: ')]
    assert line and 'master_weights=bf16' in line[0] and 'prodigy' in line[0], res.stderr[-2000:]
    assert not (tmp_path / 'r').exists()

"""GPU-only checks (skipped without CUDA): mixed-precision training offloads what no step needs and still samples."""
import json, math
import pytest, torch

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')

def _cfg(out, **kw):
    from dreambooth_nb.run import tiny_config
    return tiny_config(out, **{'pretrained_model_name_or_path': 'tiny:sd15', 'max_train_steps': 6, 'validation_steps': 3,
                               'checkpointing_steps': 3, 'num_class_images': 2, 'prior_num_inference_steps': 2,
                               'num_inference_steps': 2, 'num_validation_images': 1, **kw})

@gpu
@pytest.mark.parametrize('family,kw', [('tiny:sd15', dict(mixed_precision='fp16', train_text_encoder=False)),
                                       ('tiny:sdxl', dict(mixed_precision='fp16', mode='lora', train_text_encoder=False)),
                                       ('tiny:flux2-klein', dict(mixed_precision='bf16', mode='lora', train_text_encoder=False))])
def test_frozen_modules_leave_the_gpu_and_sampling_still_works(tmp_path, family, kw):
    from dreambooth_nb.run import train
    t = train(_cfg(tmp_path / 'run', pretrained_model_name_or_path=family, **kw))
    assert 'vae' in t.offloaded and any(n.startswith('text_encoder') for n in t.offloaded), t.offloaded
    for n in t.offloaded: assert next(t.backbone.modules()[n].parameters()).device.type == 'cpu'
    assert sorted(p.name for p in (tmp_path / 'run' / 'samples').iterdir()) == ['step-000003.png', 'step-000006.png']
    losses = [json.loads(l)['loss'] for l in (tmp_path / 'run' / 'metrics.jsonl').read_text().splitlines()]
    assert len(losses) == 6 and all(math.isfinite(x) for x in losses)

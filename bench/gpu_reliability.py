"""GPU checks for the reliability work: fp16 training through the loss scaler is not mistaken for divergence, a real
divergence stops cleanly, and the final pipeline is written from a run whose frozen modules were offloaded.

    python bench/gpu_reliability.py      # needs a CUDA GPU; 'small' SD (36 M UNet) at 256 px, 40 steps, fp16
"""
import json, math, tempfile, time
from pathlib import Path
import torch

def run(out, **kw):
    from dreambooth_nb.run import tiny_config, train
    from dreambooth_nb.load import tiny
    base = Path(out).parent / 'small-base'
    if not base.exists(): tiny('sd15', size='small').save_pretrained(base)
    cfg = tiny_config(out, **{'pretrained_model_name_or_path': str(base), 'resolution': 256, 'max_train_steps': 40,
                              'mixed_precision': 'fp16', 'validation_steps': 1000, 'checkpointing_steps': 20,
                              'with_prior_preservation': True, 'num_class_images': 4, 'prior_num_inference_steps': 4,
                              'num_inference_steps': 4, 'num_validation_images': 1, **kw})
    t0 = time.time(); trainer = train(cfg); return trainer, time.time() - t0

def main():
    from dreambooth_nb.training import TrainingDiverged
    root = Path(tempfile.mkdtemp())
    for name, kw in [('full+te', dict(train_text_encoder=True, learning_rate=5e-6)), ('lora', dict(mode='lora', rank=8, learning_rate=1e-4))]:
        torch.cuda.reset_peak_memory_stats()
        t, s = run(root / name, **kw)
        losses = [json.loads(l)['loss'] for l in (root / name / 'metrics.jsonl').read_text().splitlines()]
        final = sorted(p.name for p in (root / name).iterdir() if p.name in ('model_index.json', 'pytorch_lora_weights.safetensors'))
        print(f"{name}: fp16 {len(losses)} steps in {s:.1f} s, loss {losses[0]:.4f} -> {losses[-1]:.4f}, all finite "
              f"{all(map(math.isfinite, losses))}, "
              f"loss-scaler scale {t.accelerator.scaler.get_scale():.0f} (starts at 65536; halves at each overflowing step), peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB, final {final}")
    try:
        run(root / 'diverge', learning_rate=1e30, max_train_steps=60)
        print('diverge: NOT detected')
    except TrainingDiverged as e:
        ckpts = sorted(p.name for p in (root / 'diverge').glob('checkpoint-*'))
        print(f"diverge: stopped: {str(e)[:110]}... checkpoints {ckpts}")

if __name__ == '__main__': main()

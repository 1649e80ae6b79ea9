"""Sampling speed: images/s of `dreambooth_nb.sampling.generate` at its defaults (DPM-Solver++, 25 steps, CFG 7.5,
cond + uncond in one batched UNet call, batch 4).

    python bench/sample_speed.py                 # tiny (64 px) and small (~36 M UNet, 256 px) on the CPU
    python bench/sample_speed.py --gpu           # adds SD 1.5's architecture at 512 px, fp16 autocast (random weights)
"""
import argparse, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--images', type=int, default=8); p.add_argument('--steps', type=int, default=25)
    p.add_argument('--gpu', action='store_true')
    a = p.parse_args()
    import torch
    from dreambooth_nb.load import tiny
    from dreambooth_nb.sampling import generate
    from _models import sd15_architecture
    device = 'cuda' if a.gpu else 'cpu'
    models = [('tiny', 64, lambda: tiny()), ('small', 256, lambda: tiny(size='small'))]
    if a.gpu: models.append(('sd15', 512, sd15_architecture))
    print(f"{'model':6} {'px':>4} {'steps':>5} {'images/s':>9}")
    for name, size, build in models:
        bb = build().to(device)
        generate(bb, ['a photo of olis dog'], [0], num_inference_steps=2)          # warm-up
        if a.gpu: torch.cuda.synchronize()
        t0 = time.perf_counter()
        generate(bb, ['a photo of olis dog'], list(range(a.images)), num_inference_steps=a.steps, batch_size=4)
        if a.gpu: torch.cuda.synchronize()
        print(f"{name:6} {size:>4} {a.steps:>5} {a.images / (time.perf_counter() - t0):9.2f}", flush=True)

if __name__ == '__main__': main()

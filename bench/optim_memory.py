"""Peak memory of a full DreamBooth step per optimizer recipe (04a_optim's table, measured): CPU peak RSS, or GPU peak
allocated with --gpu. Each recipe runs in its own process, so each peak is its own.

    python bench/optim_memory.py                       # small UNet (~36 M) + text encoder, 256 px, 3 steps, CPU
    python bench/optim_memory.py --size tiny --steps 2
"""
import argparse, json, os, resource, subprocess, sys, time

RECIPES = {'adamw': {}, 'adafactor': dict(optimizer='adafactor'), 'adamw+fused': dict(fused_backward=True),
           'adafactor+fused': dict(optimizer='adafactor', fused_backward=True), 'adamw+ema': dict(use_ema=True),
           'adamw+bf16': dict(master_weights='bf16'), 'adafactor+bf16': dict(optimizer='adafactor', master_weights='bf16'),
           'adafactor+fused+bf16': dict(optimizer='adafactor', fused_backward=True, master_weights='bf16')}

def one(size: str, recipe: str, steps: int, gpu: bool) -> dict:
    import torch
    from dreambooth_nb.load import tiny
    from dreambooth_nb.config import preset
    from dreambooth_nb.data import subject_data
    from dreambooth_nb.training import Trainer
    res = {'tiny': 64, 'small': 256}[size]
    cfg = preset('tiny', resolution=res, max_train_steps=steps, with_prior_preservation=False, train_text_encoder=True,
                 mixed_precision='bf16' if gpu else 'no', **RECIPES[recipe])
    t = Trainer(cfg, tiny(size=size), subject_data(cfg)); t.setup()
    if gpu: torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps): t.one_step()
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if gpu else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(recipe=recipe, size=size, peak_mb=round(peak), seconds_per_step=round(seconds / steps, 2),
                trainable_m=round(sum(p.numel() for p in t.params) / 1e6, 2), device='cuda' if gpu else 'cpu')

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--size', default='small'); p.add_argument('--steps', type=int, default=3); p.add_argument('--gpu', action='store_true')
    p.add_argument('--recipes', default=','.join(RECIPES)); p.add_argument('--one', default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one: print(json.dumps(one(a.size, a.one, a.steps, a.gpu))); return
    print(f"{'recipe':16} {'peak MB':>8} {'s/step':>7} {'trainable M':>11}")
    for recipe in a.recipes.split(','):
        cmd = [sys.executable, __file__, '--one', recipe, '--size', a.size, '--steps', str(a.steps)] + (['--gpu'] if a.gpu else [])
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, 'TRANSFORMERS_VERBOSITY': 'error'})
        if out.returncode: print(out.stderr[-2000:]); sys.exit(out.returncode)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['recipe']:16} {r['peak_mb']:8} {r['seconds_per_step']:7} {r['trainable_m']:11}", flush=True)

if __name__ == '__main__': main()

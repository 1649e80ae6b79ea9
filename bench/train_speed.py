"""Training speed and peak memory per DreamBooth step: ours vs a train_dreambooth.py-style step.

    python bench/train_speed.py                      # tiny (64 px) and small (~36 M UNet, 256 px), full and LoRA, CPU
    python bench/train_speed.py --sizes small --steps 10
    python bench/train_speed.py --gpu                # adds SD 1.5's real UNet/VAE/CLIP configs at 512 px, fp16 (random weights)
    python bench/train_speed.py --buckets            # ours with square crops vs ours with aspect buckets (3:4 and 4:3 photos)
    python bench/train_speed.py --gpu --matrix --memory_gib 15.5 --steps 5
                                                     # issue 15's table: SD 1.5 full UNet + text encoder + PP at 512 for each
                                                     # optimizer x fused_backward x gradient checkpointing x master_weights,
                                                     # capped to a T4's 15.5 GiB (a recipe that does not fit reads OOM)

Every configuration trains with prior preservation (1 instance + 1 class image per step) and the text encoder
(in LoRA mode: LoRA on UNet and text encoder), and runs in its own process so the peak memory is its own:
peak RSS on the CPU, torch.cuda.max_memory_allocated on a GPU.

`ours` is dreambooth_nb's trainer as users run it: latents cached once (VAE off the step), AdamW, set_to_none.
`reference` is the same trainer with the caches off, which is the work diffusers' train_dreambooth.py does per step with
these flags: VAE-encode the instance and class images, text-encode both prompts, UNet forward/backward, AdamW.
"""
import argparse, json, os, resource, subprocess, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))

from _models import sd15_architecture

def bucket_data(res: int, multiple: int):
    "The bundled photos cut to 3:4 and 4:3 (alternately), each at its nearest bucket, with class images likewise."
    from dreambooth_nb.data import (SubjectData, TrainImage, bucket_sizes, cover_crop, find_images, load_image, nearest_bucket,
                                    sample_subject_dir, to_tensor)
    buckets, imgs = bucket_sizes(res, multiple), []
    for i, p in enumerate(find_images(sample_subject_dir())):
        w, h = (3, 4) if i % 2 == 0 else (4, 3)
        size = nearest_bucket((w, h), buckets)
        imgs.append(to_tensor(cover_crop(load_image(p), *size)))
    return SubjectData([TrainImage(px, 'a photo of olis dog') for px in imgs],
                       [TrainImage(px.flip(-1), 'a photo of dog', source='class') for px in imgs])

MATRIX_AXES = dict(optimizer=('adamw', 'adamw8bit', 'adafactor'), fused_backward=(False, True),
                   gradient_checkpointing=(True, False), master_weights=('fp32', 'bf16'))

def matrix_recipes(optimizers=None) -> dict[str, dict]:
    "Name -> TrainConfig overrides for every combination of MATRIX_AXES, all under bf16 autocast (fused_backward refuses fp16's scaler)."
    import itertools
    out = {}
    for opt, fused, gc, master in itertools.product(optimizers or MATRIX_AXES['optimizer'], *list(MATRIX_AXES.values())[1:]):
        if master == 'bf16' and opt == 'adamw8bit': continue          # refused by validate: not built for 8-bit state
        name = '+'.join([opt] + ['fused'] * fused + ['gc'] * gc + ['bf16master'] * (master == 'bf16'))
        out[name] = dict(optimizer=opt, fused_backward=fused, gradient_checkpointing=gc, master_weights=master,
                         mixed_precision='bf16')
    return out

def cap_gpu_memory(memory_fraction: float | None, memory_gib: float | None) -> float | None:
    "Cap this process's CUDA memory (set_per_process_memory_fraction) to a fraction of the card or to `memory_gib`; returns the fraction."
    import torch
    if memory_gib: memory_fraction = memory_gib * 2**30 / torch.cuda.get_device_properties(0).total_memory
    if memory_fraction: torch.cuda.set_per_process_memory_fraction(min(memory_fraction, 1.0))
    return memory_fraction

def one(size: str, mode: str, impl: str, steps: int, gpu: bool, overrides: dict | None = None) -> dict:
    "Time `steps` training steps (after 2 warm-up steps) of one configuration in this process."
    import torch
    from dreambooth_nb.load import tiny
    from dreambooth_nb.config import preset
    from dreambooth_nb.data import find_images, load_pixels, sample_subject_dir, SubjectData
    from dreambooth_nb.training import Trainer
    res = {'tiny': 64, 'small': 256, 'sd15': 512}[size]
    bb = sd15_architecture() if size == 'sd15' else tiny(size=size)
    cfg = preset('tiny', **{**dict(resolution=res, mode=mode, rank=4, max_train_steps=steps + 2, learning_rate=1e-5,
                                   mixed_precision='fp16' if gpu else 'no', gradient_checkpointing=size == 'sd15', use_8bit_adam=False,
                                   cache_latents=impl != 'reference', pre_compute_text_embeddings=impl != 'reference'), **(overrides or {})})
    px = load_pixels(find_images(sample_subject_dir()), res)
    data = SubjectData.from_tensors(px, 'a photo of olis dog', px.flip(-1), 'a photo of dog')   # any images time the same
    if impl == 'buckets': data = bucket_data(res, bb.size_multiple)
    t = Trainer(cfg, bb, data)
    t.setup()
    if gpu: torch.cuda.synchronize()
    for _ in range(2): t.one_step()
    if gpu: torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps): t.one_step()
    if gpu: torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if gpu else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if gpu: peak_reserved = torch.cuda.max_memory_reserved() / 2**20
    return dict(size=size, resolution=res, mode=mode, impl=impl, steps_per_s=steps / seconds, peak_mb=peak,
                **(dict(peak_reserved_mb=peak_reserved) if gpu else {}), **(dict(recipe=overrides) if overrides else {}),
                trainable_m=sum(p.numel() for p in t.params) / 1e6, device='cuda' if gpu else 'cpu',
                torch_threads=torch.get_num_threads())

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--sizes', default='tiny,small'); p.add_argument('--modes', default='full,lora')
    p.add_argument('--steps', type=int, default=20); p.add_argument('--gpu', action='store_true')
    p.add_argument('--buckets', action='store_true', help='compare square crops (ours) with aspect buckets instead of reference vs ours')
    p.add_argument('--matrix', action='store_true', help="with --gpu: SD 1.5 full + TE + PP at 512 for each memory recipe (issue 15's table)")
    p.add_argument('--optimizers', default=None, help='with --matrix: a comma-separated subset of adamw,adamw8bit,adafactor')
    p.add_argument('--memory_fraction', type=float, default=None, help='cap each process to this fraction of the GPU')
    p.add_argument('--memory_gib', type=float, default=None, help="cap each process to this many GiB (15.5: a T4's usable memory)")
    p.add_argument('--one', nargs=3, metavar=('SIZE', 'MODE', 'IMPL'), help=argparse.SUPPRESS)
    p.add_argument('--overrides', default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        if a.gpu: cap_gpu_memory(a.memory_fraction, a.memory_gib)
        print(json.dumps(one(*a.one, steps=a.steps, gpu=a.gpu, overrides=json.loads(a.overrides) if a.overrides else None))); return
    if a.matrix: return run_matrix(a)
    sizes = a.sizes.split(',') + (['sd15'] if a.gpu and 'sd15' not in a.sizes else [])
    print(f"{'size':6} {'px':>4} {'mode':5} {'impl':10} {'steps/s':>8} {'peak MB':>8} {'trainable M':>11}")
    for size in sizes:
        for mode in a.modes.split(','):
            rows = []
            for impl in (('ours', 'buckets') if a.buckets else ('reference', 'ours')):
                cmd = [sys.executable, __file__, '--one', size, mode, impl, '--steps', str(a.steps)] + (['--gpu'] if a.gpu else [])
                out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, 'TRANSFORMERS_VERBOSITY': 'error'})
                if out.returncode: print(out.stderr[-2000:]); sys.exit(out.returncode)
                r = json.loads(out.stdout.strip().splitlines()[-1]); rows.append(r)
                print(f"{r['size']:6} {r['resolution']:>4} {r['mode']:5} {r['impl']:10} {r['steps_per_s']:8.2f} {r['peak_mb']:8.0f} {r['trainable_m']:11.2f}", flush=True)
            print(f"{'':6} {'':>4} {'':5} {'speed-up':10} {rows[1]['steps_per_s'] / rows[0]['steps_per_s']:8.2f}x")

def run_matrix(a):
    "One process per recipe of `matrix_recipes` on SD 1.5's architecture; a recipe that runs out of the capped memory reads OOM."
    import importlib.util
    if not a.gpu: sys.exit('--matrix measures GPU memory: add --gpu (on a machine with CUDA).')
    cap = ['--memory_fraction', str(a.memory_fraction)] if a.memory_fraction else []
    cap += ['--memory_gib', str(a.memory_gib)] if a.memory_gib else []
    print(f"{'recipe':34} {'it/s':>6} {'peak GiB':>8} {'reserved':>8}   (cap: {a.memory_gib or a.memory_fraction or 'none'})")
    for name, over in matrix_recipes(a.optimizers.split(',') if a.optimizers else None).items():
        if over['optimizer'] == 'adamw8bit' and importlib.util.find_spec('bitsandbytes') is None:
            print(f"{name:34} skipped: bitsandbytes is not installed", flush=True); continue
        cmd = [sys.executable, __file__, '--one', 'sd15', 'full', 'ours', '--steps', str(a.steps), '--gpu', '--overrides', json.dumps(over)] + cap
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, 'TRANSFORMERS_VERBOSITY': 'error'})
        if out.returncode:
            why = 'OOM' if 'OutOfMemoryError' in out.stderr else 'failed: ' + out.stderr.strip().splitlines()[-1][:120]
            print(f"{name:34} {why}", flush=True); continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{name:34} {r['steps_per_s']:6.2f} {r['peak_mb'] / 1024:8.2f} {r['peak_reserved_mb'] / 1024:8.2f}", flush=True)

if __name__ == '__main__': main()

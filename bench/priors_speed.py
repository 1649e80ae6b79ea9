"""Class-prior generation speed: dreambooth_nb's defaults vs diffusers' train_dreambooth.py class generation defaults.

    python bench/priors_speed.py                 # tiny (64 px) and small (~36 M UNet, 256 px) on the CPU
    python bench/priors_speed.py --gpu           # adds SD 1.5's architecture at 512 px in fp16 (random weights)

`ours`: generate_priors as training calls it: DPM-Solver++ (multistep), 25 steps, guidance 7.5, batch 4, PNG + manifest.
`reference`: what train_dreambooth.py does at its defaults, re-implemented here (its script is not a package):
the model's own scheduler (PNDM for SD 1.5), 50 steps, guidance 7.5, batch 4 (sample_batch_size), saved as JPEG.
Both write the same number of images at the same size; images/s counts the whole call, file writes included.
"""
import argparse, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))

def reference(backbone, folder: Path, n: int, size: int, batch: int):
    "train_dreambooth.py's class-image loop at its defaults (PNDM, 50 steps, guidance 7.5)."
    import torch
    from diffusers import PNDMScheduler
    pipe = backbone.pipeline('ddpm')
    pipe.scheduler = PNDMScheduler.from_config(backbone.noise_scheduler.config)
    folder.mkdir(parents=True, exist_ok=True)
    on_gpu = backbone.device.type == 'cuda'
    for start in range(0, n, batch):
        with torch.no_grad(), torch.autocast('cuda', dtype=torch.float16, enabled=on_gpu):
            images = pipe(['a photo of dog'] * min(batch, n - start), height=size, width=size).images
        for i, img in enumerate(images): img.save(folder / f'{start + i}.jpg')

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--images', type=int, default=8); p.add_argument('--gpu', action='store_true')
    a = p.parse_args()
    import torch
    from dreambooth_nb.load import tiny
    from dreambooth_nb.priors import generate_priors
    from _models import sd15_architecture
    device = 'cuda' if a.gpu else 'cpu'
    models = [('tiny', 64, lambda: tiny()), ('small', 256, lambda: tiny(size='small'))]
    if a.gpu: models.append(('sd15', 512, sd15_architecture))
    print(f"{'model':6} {'px':>4} {'impl':10} {'images/s':>9}")
    for name, size, build in models:
        bb = build().to(device)
        rates = {}
        for impl in ('reference', 'ours'):
            with tempfile.TemporaryDirectory() as d:
                if a.gpu: torch.cuda.synchronize()
                t0 = time.perf_counter()
                if impl == 'ours':
                    generate_priors(bb, Path(d) / 'bank', 'a photo of dog', a.images, size, sample_batch_size=4, progress=False)
                else: reference(bb, Path(d) / 'bank', a.images, size, batch=4)
                if a.gpu: torch.cuda.synchronize()
                rates[impl] = a.images / (time.perf_counter() - t0)
            print(f"{name:6} {size:>4} {impl:10} {rates[impl]:9.2f}", flush=True)
        print(f"{'':6} {'':>4} {'speed-up':10} {rates['ours'] / rates['reference']:8.2f}x")

if __name__ == '__main__': main()

"""Rebuild the `micro` base model from a seed: pretrain the micro SD 1.x architecture (nbs/01d_micro) on the photos of
the DreamBooth dataset's pretraining subjects (every subject but `HELD_OUT`), with class captions, and write it as a
diffusers folder (half-precision safetensors) to dreambooth_nb/assets/micro.

    python tools/build_micro.py [--seed 0] [--vae_steps 1500] [--unet_steps 3000] [--out dreambooth_nb/assets/micro]

Two phases: the VAE learns to reconstruct 64 px crops from its posterior mean (L1 + MSE, a small KL term); then, on latents of augmented views
cached once, the UNet and the text encoder learn to denoise from scratch (epsilon target, 10% empty captions for
classifier-free guidance) with an EMA of the weights, which is what ships. The same seed and thread count rebuild the
same weights. It prints the time of each phase and writes build.json with the recipe and timings.
"""
import argparse, json, math, random, shutil, sys, time
from pathlib import Path
import numpy as np
import torch, torch.nn.functional as F
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from dreambooth_nb.micro import (MICRO_RESOLUTION, MICRO_DIR, class_captions, dataset_dir, pretraining_subjects,
                                 subject_photos, untrained_micro)

def load_photos(size: int) -> list[tuple[torch.Tensor, str]]:
    "Every pretraining photo as a (3, size, size) tensor in [-1, 1] (centre-cropped square), with its class."
    out = []
    for subject, cls in sorted(pretraining_subjects().items()):
        for p in subject_photos(subject):
            im = ImageOps.exif_transpose(Image.open(p)).convert('RGB')
            im = ImageOps.fit(im, (size, size), Image.LANCZOS)
            out.append((torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float() / 127.5 - 1, cls))
    return out

def augment(x: torch.Tensor, g: torch.Generator, res: int = MICRO_RESOLUTION) -> torch.Tensor:
    "A random crop of 80–100% of the side, resized to `res`, flipped half the time."
    side = x.shape[-1]
    crop = int(side * (0.8 + 0.2 * torch.rand(1, generator=g).item()))
    i, j = (int(torch.randint(0, side - crop + 1, (1,), generator=g)) for _ in range(2))
    y = F.interpolate(x[None, :, i:i + crop, j:j + crop], size=(res, res), mode='bilinear', antialias=True, align_corners=False)[0]
    return y.flip(-1) if torch.rand(1, generator=g).item() < 0.5 else y

def train_vae(vae, photos, steps: int, g, batch: int = 8, lr: float = 1e-3):
    vae.train().requires_grad_(True)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    for step in range(steps):
        x = torch.stack([augment(photos[int(torch.randint(0, len(photos), (1,), generator=g))][0], g) for _ in range(batch)])
        for pg in opt.param_groups: pg['lr'] = lr * min(1, (step + 1) / 50) * (0.5 * (1 + math.cos(math.pi * step / steps)))
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.mean).sample              # the posterior mean is what training encodes, so decode it
        loss = (rec - x).abs().mean() + F.mse_loss(rec, x) + 1e-6 * post.kl().mean()
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        if step % 100 == 0 or step == steps - 1: print(f'  vae step {step:5d}  loss {loss.item():.4f}', flush=True)
    vae.eval().requires_grad_(False)

@torch.no_grad()
def cache_latents(vae, photos, views: int, g) -> tuple[torch.Tensor, list[str]]:
    "Posterior means of `views` augmented views of every photo (unscaled), and each view's class."
    lat, classes = [], []
    for x, cls in photos:
        v = torch.stack([augment(x, g) for _ in range(views)])
        lat.append(vae.encode(v).latent_dist.mean); classes += [cls] * views
    return torch.cat(lat), classes

def write_model(bb, out: Path):
    "Save `bb` in half precision to `out` (float32 kept in memory)."
    bb.to(dtype=torch.float16).save_pretrained(out); bb.to(dtype=torch.float32)
    attribution(out)

def snapshot(bb, params, ema, out: Path):
    "The EMA weights so far, written to `out` for a look while the build goes on (training weights restored after)."
    live = [p.detach().clone() for p in params]
    with torch.no_grad():
        for e, p in zip(ema, params): p.copy_(e)
    write_model(bb, out)
    with torch.no_grad():
        for l, p in zip(live, params): p.copy_(l)

def train_denoiser(bb, latents, classes, steps: int, g, batch: int = 32, lr: float = 4e-4, ema_decay: float = 0.999,
                   snapshot_every: int = 0, snapshot_dir: Path | None = None):
    unet, te = bb.unet.train(), bb.text_encoder.train()
    params = list(unet.parameters()) + list(te.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    ema = [p.detach().clone() for p in params]
    sched, n = bb.noise_scheduler, len(latents)
    for step in range(steps):
        idx = torch.randint(0, n, (batch,), generator=g)
        x0 = latents[idx]
        caps = ['' if torch.rand(1, generator=g).item() < 0.1 else
                random.Random(int(torch.randint(0, 2**31, (1,), generator=g))).choice(class_captions(classes[i])) for i in idx]
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, sched.config.num_train_timesteps, (batch,), generator=g)
        noisy = sched.add_noise(x0, noise, t)
        cond = te(bb.tokenize(caps))[0]
        loss = F.mse_loss(unet(noisy, t, cond).sample, noise)
        for pg in opt.param_groups: pg['lr'] = lr * min(1, (step + 1) / 200) * (0.55 + 0.45 * math.cos(math.pi * step / steps))
        opt.zero_grad(set_to_none=True); loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step()
        d = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema, params): e.lerp_(p.detach(), 1 - d)
        if step % 200 == 0 or step == steps - 1: print(f'  denoiser step {step:5d}  loss {loss.item():.4f}', flush=True)
        if snapshot_every and step and step % snapshot_every == 0:
            snapshot(bb, params, ema, snapshot_dir); bb.unet.train(); bb.text_encoder.train()
            print(f'  snapshot at step {step} in {snapshot_dir}', flush=True)
    with torch.no_grad():
        for e, p in zip(ema, params): p.copy_(e)
    unet.eval(); te.eval()

def attribution(out: Path):
    data = dataset_dir()
    text = (f"# The micro model\n\nA small Stable Diffusion 1.x model (64 px) pretrained by dreambooth_nb's `tools/build_micro.py`\n"
            f"on the photos of these subjects of the DreamBooth dataset: {', '.join(sorted(pretraining_subjects()))}.\n"
            f"Held out (never seen): the subjects the demo and the quality tests fine-tune on.\n\n"
            f"The photos are from the dataset published with Nataniel Ruiz, Yuanzhen Li, Varun Jampani, Yael Pritch, Michael\n"
            f"Rubinstein and Kfir Aberman, \"DreamBooth: Fine Tuning Text-to-Image Diffusion Models for Subject-Driven\n"
            f"Generation\", CVPR 2023 (https://github.com/google/dreambooth), licensed CC-BY-4.0\n"
            f"(https://creativecommons.org/licenses/by/4.0/); some photos are from Unsplash under the Unsplash license.\n"
            f"Changes: resized to 64-80 px, cropped and flipped for training. These weights are a derivative work and carry\n"
            f"the same attribution.\n\n## references_and_licenses.txt of the dataset\n\n")
    (out / 'ATTRIBUTION.md').write_text(text + (data / 'references_and_licenses.txt').read_text())

def write_grids(model_dir: Path, images_dir: Path, seeds=range(6)):
    "The grids the notebook shows: every class prompt, and the identifier prompts before any fine-tuning."
    from dreambooth_nb.load import load_backbone
    from dreambooth_nb.sampling import generate, image_grid
    from dreambooth_nb.micro import subject_classes, HELD_OUT
    bb, seeds = load_backbone(str(model_dir)), list(seeds)
    classes = sorted(set(pretraining_subjects().values()))
    rows = [f'a photo of a {c}' for c in classes]
    ims = generate(bb, rows, seeds, num_inference_steps=25, guidance_scale=4.0)
    image_grid(ims, len(rows), len(seeds), rows, [f'seed {s}' for s in seeds]).save(images_dir / 'micro-classes.png')
    held = [f'a photo of olis {subject_classes()[s]}' for s in HELD_OUT]
    ims = generate(bb, held, seeds, num_inference_steps=25, guidance_scale=4.0)
    image_grid(ims, len(held), len(seeds), held, [f'seed {s}' for s in seeds]).save(images_dir / 'micro-identifier-before.png')

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--vae_steps', type=int, default=1500)
    ap.add_argument('--unet_steps', type=int, default=3000)
    ap.add_argument('--views', type=int, default=16, help='augmented views cached per photo for the denoiser')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--out', default=str(MICRO_DIR))
    ap.add_argument('--snapshot_every', type=int, default=0, help='write the EMA weights so far to OUT.snapshot every N steps')
    a = ap.parse_args()
    torch.set_num_threads(a.threads); torch.manual_seed(a.seed); random.seed(a.seed)
    g = torch.Generator().manual_seed(a.seed)
    t0 = time.time(); times = {}
    bb = untrained_micro(a.seed)
    photos = load_photos(80)
    print(f'{len(photos)} photos of {len(pretraining_subjects())} subjects ({len(set(c for _, c in photos))} classes)', flush=True)
    train_vae(bb.vae, photos, a.vae_steps, g); times['vae_s'] = round(time.time() - t0, 1)
    latents, classes = cache_latents(bb.vae, photos, a.views, g)
    scale = float(1 / latents.std())
    bb.vae.register_to_config(scaling_factor=scale)
    print(f'VAE {times["vae_s"]} s; {len(latents)} latents cached, scaling_factor {scale:.4f}', flush=True)
    t1 = time.time()
    out = Path(a.out)
    train_denoiser(bb, latents * scale, classes, a.unet_steps, g, snapshot_every=a.snapshot_every,
                   snapshot_dir=out.with_name(out.name + '.snapshot')); times['denoiser_s'] = round(time.time() - t1, 1)
    staging = out.with_name(out.name + '.building')
    shutil.rmtree(staging, ignore_errors=True)
    write_model(bb, staging)
    times['total_s'] = round(time.time() - t0, 1)
    (staging / 'build.json').write_text(json.dumps(dict(vars(a), out=None, **times, photos=len(photos),
                                                        subjects=sorted(pretraining_subjects()), scaling_factor=scale,
                                                        torch=torch.__version__), indent=1))
    if out.exists(): shutil.rmtree(out)
    staging.rename(out)
    (ROOT / 'nbs' / 'images').mkdir(exist_ok=True)
    write_grids(out, ROOT / 'nbs' / 'images')
    print(f'micro model written to {out} in {times["total_s"]} s (VAE {times["vae_s"]} s, denoiser {times["denoiser_s"]} s)')

if __name__ == '__main__':
    main()

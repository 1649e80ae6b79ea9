"""Peak RSS of `dreambooth-nb train` against diffusers' examples/dreambooth/train_dreambooth.py on the same flags (CPU).

    python bench/rss_vs_diffusers.py --diffusers_script /path/to/train_dreambooth.py
    python bench/rss_vs_diffusers.py --size tiny --resolution 64 --num_class_images 16 --steps 3

Both train the same random SD 1.5-shaped model (default `small`: 36 M UNet, 13 M text encoder, 8x VAE; saved as a
diffusers folder, so both load it from disk) with prior preservation and the text encoder, batch 1 + 1, from the same instance photos and the same class-image folder (filled beforehand,
so neither generates). Each run is its own process; its peak RSS is read by a small parent with getrusage(CHILDREN).
Three runs: ours as it is (pixels released once latents are cached), ours keeping the pixels (what it did before), and
diffusers' script. diffusers' script needs torchvision for its transforms; where it is missing (this project avoids it) a stand-in module
with the four transforms it uses (Resize, CenterCrop/RandomCrop, ToTensor, Normalize; PIL + torch) is registered after
diffusers and transformers are imported, which makes the reference a little smaller than with the real torchvision
(conservative for us). Its --report_to tensorboard default only warns when tensorboard is not installed.
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, textwrap
from pathlib import Path

TORCHVISION_STAND_IN = '''
import random, numpy as np, torch
from PIL import Image
class InterpolationMode: BILINEAR = Image.BILINEAR
class Compose:
    def __init__(self, ts): self.ts = ts
    def __call__(self, x):
        for t in self.ts: x = t(x)
        return x
class Resize:
    def __init__(self, size, interpolation=Image.BILINEAR): self.size, self.interpolation = size, interpolation
    def __call__(self, img):
        w, h = img.size; s = self.size / min(w, h)
        return img.resize((max(self.size, round(w * s)), max(self.size, round(h * s))), self.interpolation)
class CenterCrop:
    def __init__(self, size): self.size = size
    def __call__(self, img):
        w, h = img.size; l, t = (w - self.size) // 2, (h - self.size) // 2
        return img.crop((l, t, l + self.size, t + self.size))
class RandomCrop(CenterCrop):
    def __call__(self, img):
        w, h = img.size; l, t = random.randint(0, w - self.size), random.randint(0, h - self.size)
        return img.crop((l, t, l + self.size, t + self.size))
class ToTensor:
    def __call__(self, img): return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
class Normalize:
    def __init__(self, mean, std): self.mean, self.std = mean[0], std[0]
    def __call__(self, x): return (x - self.mean) / self.std
'''

PEAK = "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); print('PEAK_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)"
DIFFUSERS_RUNNER = """
import importlib.machinery, importlib.util, runpy, sys, types
import diffusers, transformers                              # their torchvision checks run first, without the stand-in
if importlib.util.find_spec('torchvision') is None:
    tv, tr = types.ModuleType('torchvision'), types.ModuleType('torchvision.transforms')
    tr.__spec__ = importlib.machinery.ModuleSpec('torchvision.transforms', None)
    exec(sys.argv.pop(1), tr.__dict__); tv.transforms = tr
    sys.modules.update({'torchvision': tv, 'torchvision.transforms': tr})
else: sys.argv.pop(1)
script = sys.argv.pop(1); sys.argv[0] = script
runpy.run_path(script, run_name='__main__')
"""
KEEP_PIXELS = "import sys, dreambooth_nb.training as t; t.release_pixels = lambda data: 0; from dreambooth_nb.cli import main; sys.argv[0] = 'dreambooth-nb'; sys.exit(main())"

def prepare(work: Path, n_class: int, size: str) -> dict:
    "A tiny (or small) SD 1.5 diffusers folder, the bundled instance photos and a class folder of `n_class` images (copies of the photos, mirrored)."
    from PIL import ImageOps
    from dreambooth_nb.data import find_images, load_image, sample_subject_dir
    from dreambooth_nb.load import tiny
    base = work / 'base'; tiny('sd15', size=size).save_pretrained(base)
    cls = work / 'class'; cls.mkdir()
    photos = find_images(sample_subject_dir())
    for i in range(n_class): ImageOps.mirror(load_image(photos[i % len(photos)])).save(cls / f'{i:04d}.png')
    return dict(base=base, instance=sample_subject_dir(), cls=cls)

def flags(paths: dict, out: Path, a, ours: bool) -> list[str]:
    "The shared command line; ours also renders its end-of-run sample grid as small as it goes (the script renders none without --validation_prompt)."
    return ['--pretrained_model_name_or_path', str(paths['base']), '--instance_data_dir', str(paths['instance']),
            '--instance_prompt', 'a photo of sks dog', '--class_data_dir', str(paths['cls']), '--class_prompt', 'a photo of dog',
            '--with_prior_preservation', '--num_class_images', str(a.num_class_images), '--train_text_encoder',
            '--resolution', str(a.resolution), '--train_batch_size', '1', '--max_train_steps', str(a.steps), '--learning_rate', '5e-6',
            '--checkpointing_steps', '1000', '--output_dir', str(out)] + (['--num_validation_images', '1', '--num_inference_steps', '2'] if ours else [])

def peak_mb(cmd: list[str], env: dict) -> float:
    out = subprocess.run([sys.executable, '-c', PEAK] + cmd, capture_output=True, text=True, env=env)
    line = [l for l in out.stdout.splitlines() if l.startswith('PEAK_KB')]
    if not line or line[0].split()[2] != '0': sys.exit(f"failed: {' '.join(cmd[:3])}\n{out.stderr[-3000:]}")
    return int(line[0].split()[1]) / 1024

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--diffusers_script', default='/tmp/df/train_dreambooth.py', help="diffusers' examples/dreambooth/train_dreambooth.py")
    p.add_argument('--size', default='small', help='tiny or small'); p.add_argument('--resolution', type=int, default=256); p.add_argument('--num_class_images', type=int, default=200)
    p.add_argument('--steps', type=int, default=5); p.add_argument('--runs', default='ours,ours-keep-pixels,diffusers')
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix='rss-'))
    try:
        paths = prepare(work, a.num_class_images, a.size)
        env = {**os.environ, 'TRANSFORMERS_VERBOSITY': 'error', 'TOKENIZERS_PARALLELISM': 'false'}
        commands = {'ours': ['-m', 'dreambooth_nb', 'train'], 'ours-keep-pixels': ['-c', KEEP_PIXELS, 'train'],
                    'diffusers': ['-c', DIFFUSERS_RUNNER, TORCHVISION_STAND_IN, a.diffusers_script]}
        results = {}
        for name in a.runs.split(','):
            results[name] = peak_mb([sys.executable] + commands[name] + flags(paths, work / f'out-{name}', a, name != 'diffusers'), env)
            print(f"{name:18} peak RSS {results[name]:7.0f} MB", flush=True)
        if 'diffusers' in results:
            for name in [n for n in results if n != 'diffusers']: print(f"{name} / diffusers = {results[name] / results['diffusers']:.2f}")
        print(json.dumps(dict(size=a.size, resolution=a.resolution, num_class_images=a.num_class_images, steps=a.steps, peak_mb=results)))
    finally:
        shutil.rmtree(work, ignore_errors=True)

if __name__ == '__main__': main()

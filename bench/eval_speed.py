"""Evaluation speed: one checkpoint of one subject at the DreamBooth paper's protocol (25 prompts x 4 images, plus
4 class-prompt images for PRES), tiny backbone and tiny encoders on the CPU.

    python bench/eval_speed.py                   # 25 prompts x 4 images, 25 denoising steps
    python bench/eval_speed.py --steps 10        # fewer steps (say so when you quote the number)

Prints: generation (first eval, nothing cached), scoring only (second eval, every image read from RUN/eval/images),
and per-image times.
"""
import argparse, os, sys, tempfile, time, warnings
from pathlib import Path
os.environ.setdefault('HF_HUB_OFFLINE', '1'); os.environ.setdefault('TRANSFORMERS_VERBOSITY', 'error')

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--steps', type=int, default=25); p.add_argument('--images_per_prompt', type=int, default=4)
    a = p.parse_args()
    from dreambooth_nb.run import demo
    from dreambooth_nb.eval import evaluate_run
    warnings.simplefilter('ignore')
    run = Path(tempfile.mkdtemp()) / 'run'
    demo(run, max_train_steps=2, checkpointing_steps=2, mode='lora', rank=2, num_class_images=2, validation_steps=100,
         num_validation_images=1, prior_num_inference_steps=2, num_inference_steps=2)
    kw = dict(checkpoints='latest', images_per_prompt=a.images_per_prompt, num_inference_steps=a.steps, image_encoder='tiny', clip_model='tiny')
    t0 = time.perf_counter(); res = evaluate_run(run, **kw); first = time.perf_counter() - t0
    t0 = time.perf_counter(); evaluate_run(run, **kw); cached = time.perf_counter() - t0
    n = res.records[-1]['n_images'] + a.images_per_prompt
    print(f"tiny sd15 (64 px), {res.records[-1]['prompts']} prompts x {a.images_per_prompt} images + {a.images_per_prompt} class images = {n} images, {a.steps} steps, CPU")
    print(f"first eval (generate + score): {first:7.1f} s  ({first / n * 1000:6.1f} ms/image)")
    print(f"second eval (cached, score):   {cached:7.1f} s  ({cached / n * 1000:6.1f} ms/image)")
    print(f"generation only (difference):  {first - cached:7.1f} s  ({(first - cached) / n / a.steps * 1000:6.2f} ms/image/step)")

if __name__ == '__main__': main()

"""Evaluation speed: one checkpoint of one subject at the DreamBooth paper's protocol (25 prompts x 4 images, plus
4 class-prompt images for PRES), tiny backbone and tiny encoders on the CPU.

    python bench/eval_speed.py                   # 25 prompts x 4 images, 25 denoising steps
    python bench/eval_speed.py --steps 10        # fewer steps (say so when you quote the number)
    python bench/eval_speed.py --images_per_prompt 1 --stop_test   # 26 images; also a stop half-way and the eval that finishes it

Prints, per checkpoint: the first eval (nothing cached) split by `evaluate_run`'s progress reports into loading the
checkpoint, generating and scoring; the second eval (every image read from RUN/eval/images, only scoring runs); and
per-image times, in wall-clock seconds and in CPU seconds of the process (all its threads): on a shared machine the
wall clock grows with the load, the CPU seconds much less. With --stop_test it also times a stop half-way and the
evaluation that finishes it (the cache makes the two together cost about one evaluation).
"""
import argparse, os, shutil, sys, tempfile, time, warnings
from pathlib import Path
os.environ.setdefault('HF_HUB_OFFLINE', '1'); os.environ.setdefault('TRANSFORMERS_VERBOSITY', 'error')

class Clock:
    "A `progress(done, total, what)` that notes when loading ends, when scoring starts and how many images are done."
    def __init__(self, stop_at=None): self.t0, self.c0, self.marks, self.done, self.stop_at = time.perf_counter(), time.process_time(), {}, 0, stop_at
    def __call__(self, done, total, what):
        now = (time.perf_counter() - self.t0, time.process_time() - self.c0); self.done = done
        if 'loading the model' not in what: self.marks.setdefault('loaded', now)
        if what.endswith('scoring'): self.marks['scoring'] = now
    def should_stop(self): return self.stop_at is not None and self.done >= self.stop_at

def evaluate(run, kw, clock):
    from dreambooth_nb.eval import evaluate_run
    res = evaluate_run(run, **kw, progress=clock, should_stop=clock.should_stop)
    return res, (time.perf_counter() - clock.t0, time.process_time() - clock.c0)

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--steps', type=int, default=25); p.add_argument('--images_per_prompt', type=int, default=4)
    p.add_argument('--stop_test', action='store_true', help='also stop half-way and finish (doubles the run time)')
    a = p.parse_args()
    from dreambooth_nb.run import tiny_demo
    warnings.simplefilter('ignore')
    run = Path(tempfile.mkdtemp()) / 'run'
    tiny_demo(run, max_train_steps=2, checkpointing_steps=2, mode='lora', rank=2, num_class_images=2, validation_steps=100,
         num_validation_images=1, prior_num_inference_steps=2, num_inference_steps=2)
    kw = dict(checkpoints='latest', images_per_prompt=a.images_per_prompt, num_inference_steps=a.steps, image_encoder='tiny', clip_model='tiny')
    evaluate(run, {**kw, 'num_inference_steps': 1, 'images_per_prompt': 1, 'prompts': ['a {identifier} {class_name}']}, Clock())  # warm-up: encoders, imports
    first_clock = Clock(); res, first = evaluate(run, kw, first_clock)
    _, cached = evaluate(run, kw, Clock())
    n = res.records[-1]['n_images'] + a.images_per_prompt
    print(f"tiny sd15 (64 px), {res.records[-1]['prompts']} prompts x {a.images_per_prompt} images + {a.images_per_prompt} class images = {n} images, "
          f"{a.steps} steps, CPU ({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end)")
    m = first_clock.marks
    for k, unit in ((0, 'wall s'), (1, 'CPU s')):
        load, gen, score = m['loaded'][k], m['scoring'][k] - m['loaded'][k], first[k] - m['scoring'][k]
        print(f"first eval, one checkpoint: {first[k]:7.1f} {unit} = load {load:.1f} + generate {gen:.1f} ({gen / n:.2f}/image, "
              f"{gen / n / a.steps * 1000:.0f} ms/image/step) + score {score:.1f}; at 104 images: ~{load + score + gen / n * 104:.0f} {unit}")
        print(f"second eval (all cached):   {cached[k]:7.1f} {unit}")
    if a.stop_test:
        shutil.rmtree(run / 'eval')
        half = Clock(stop_at=n // 2); r1, t_stop = evaluate(run, kw, half)
        _, t_finish = evaluate(run, kw, Clock())
        print(f"stopped at {half.done}/{n} images: {t_stop[0]:.1f} s (stopped={r1.stopped}); the eval that finishes it: {t_finish[0]:.1f} s; "
              f"together {t_stop[0] + t_finish[0]:.1f} s vs {first[0]:.1f} s uninterrupted (wall)")

if __name__ == '__main__': main()

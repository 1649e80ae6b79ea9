"""Loss-curve drift of bf16 master weights against fp32 ones (04a_optim), on the CPU with the tiny model.

    python bench/master_weights_drift.py                    # AdamW at 1e-4 and 5e-6, Adafactor at 1e-4; 100 steps each
    python bench/master_weights_drift.py --steps 50 --recipes adamw@1e-4

Every run trains the tiny SD 1.5-shaped model (UNet + text encoder, 64 px, the bundled dog) from the same weights on the
same batches, noise and timesteps (all drawn from seeded generators), so the only difference between two runs of one
recipe is how the weights are stored and rounded:
  fp32       fp32 master weights (today's default)
  bf16-sr    master_weights=bf16: bf16 weights and gradients, fp32 update, stochastic rounding
  bf16-near  the same, rounded to the nearest bf16 (what plain bf16 training does; not an option users get)
Reported per run: the mean of the last 20 losses, the mean |loss - fp32 loss| per step, and how the trained weights moved
compared with fp32's movement (length ratio and cosine, over all trained parameters), plus s/step and the bytes the
trained weights and gradients take.
"""
import argparse, json, math, sys, time
import torch

def one_run(optimizer: str, lr: float, variant: str, steps: int) -> dict:
    from dreambooth_nb.config import preset
    from dreambooth_nb.data import subject_data
    from dreambooth_nb.load import tiny
    from dreambooth_nb.training import MetricsCallback, Trainer
    cfg = preset('tiny', max_train_steps=steps, with_prior_preservation=False, train_text_encoder=True, learning_rate=lr,
                 optimizer=optimizer, master_weights='fp32' if variant == 'fp32' else 'bf16', random_flip=True)
    t = Trainer(cfg, tiny(), subject_data(cfg), [MetricsCallback()]); t.setup()
    if variant == 'bf16-near': t.opt.optimizer.stochastic = False
    start = {n: p.detach().float().clone() for n, p in _named(t).items()}
    t0 = time.perf_counter(); t.fit(); seconds = (time.perf_counter() - t0) / steps
    moved = {n: p.detach().float() - start[n] for n, p in _named(t).items()}
    n_params = sum(p.numel() for p in t.params)
    return dict(optimizer=optimizer, lr=lr, variant=variant, losses=[r['loss'] for r in t.history], moved=moved,
                seconds_per_step=seconds, trainable=n_params, weight_grad_bytes=n_params * (8 if variant == 'fp32' else 4))

def _named(t): return {f'{m}.{k}': p for m, mod in t.models.items() for k, p in mod.named_parameters() if p.requires_grad}

def compare(run: dict, ref: dict) -> dict:
    "Drift of `run` against the fp32 run `ref` of the same recipe."
    a = torch.cat([v.flatten() for v in run['moved'].values()]); b = torch.cat([v.flatten() for v in ref['moved'].values()])
    diffs = [abs(x - y) for x, y in zip(run['losses'], ref['losses'])]
    return dict(last20=sum(run['losses'][-20:]) / len(run['losses'][-20:]), mean_abs_diff=sum(diffs) / len(diffs),
                move_ratio=float(a.norm() / b.norm()), move_cosine=float(torch.nn.functional.cosine_similarity(a, b, 0)))

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--steps', type=int, default=100)
    p.add_argument('--recipes', default='adamw@1e-4,adamw@5e-6,adafactor@1e-4', help='optimizer@learning_rate, comma-separated')
    p.add_argument('--json', default=None, help='also write the rows to this file')
    a = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    print(f"{'optimizer':9} {'lr':>7} {'weights':9} {'last-20 loss':>12} {'|dloss|/step':>12} {'move ratio':>10} {'move cos':>8} {'s/step':>7} {'w+g MB':>7}")
    for recipe in a.recipes.split(','):
        optimizer, lr = recipe.split('@'); lr = float(lr)
        ref = one_run(optimizer, lr, 'fp32', a.steps)
        for variant in ('fp32', 'bf16-sr', 'bf16-near'):
            if variant == 'bf16-near' and optimizer != 'adamw': continue
            run = ref if variant == 'fp32' else one_run(optimizer, lr, variant, a.steps)
            row = dict(optimizer=optimizer, lr=lr, variant=variant, steps=a.steps, **compare(run, ref),
                       seconds_per_step=run['seconds_per_step'], trainable=run['trainable'], weight_grad_bytes=run['weight_grad_bytes'])
            rows.append(row)
            print(f"{optimizer:9} {lr:7.0e} {variant:9} {row['last20']:12.4f} {row['mean_abs_diff']:12.4f} {row['move_ratio']:10.3f} "
                  f"{row['move_cosine']:8.3f} {row['seconds_per_step']:7.3f} {row['weight_grad_bytes'] / 2**20:7.1f}", flush=True)
    if a.json: open(a.json, 'w').write(json.dumps(rows, indent=1))

if __name__ == '__main__': main()

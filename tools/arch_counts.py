"""Count what the planner needs from each shipped architecture, by building its modules on the `meta` device.

    python tools/arch_counts.py            # rewrite dreambooth_nb/arch/counts.json
    python tools/arch_counts.py --check    # rebuild and compare with counts.json (exit 1 when they differ)

For every family under dreambooth_nb/arch/<family>/<module>.json (configs only, no weights) this builds each module with
its diffusers/transformers class on the meta device (no memory, no download) and records:
- `params`: sum(p.numel()) of the module (tied weights counted once, as torch does);
- `lora_per_rank`: LoRA parameters per unit of rank on the adapter's default targets (UNet/transformer and text encoders),
  from peft's own injection at rank 1 (a targeted Linear adds in + out features per rank);
- `forward_gflops`: a forward pass's FLOPs (torch's FlopCounterMode: matmuls, convolutions, attention as matmuls) for one
  sample, at 256/512/1024 px for the denoiser and 512/1024 px for the VAE's encoder and decoder, one prompt for a text encoder;
- `forward_ops` (and `forward_ops_lora`): how many aten operators one forward runs, i.e. kernel launches (the per-step
  overhead on a GPU that is not busy, which dominates small models at batch 1-2).
The test tests/test_plan_counts.py runs `--check`, so counts.json cannot drift from the configs or the adapters.
"""
from __future__ import annotations
import argparse, json, sys
from pathlib import Path

ARCH = Path(__file__).resolve().parents[1] / 'dreambooth_nb' / 'arch'
DENOISER_PX, VAE_PX = (256, 512, 1024), (512, 1024)

def module_config(family: str, module: str) -> dict: return json.loads((ARCH / family / f'{module}.json').read_text())

def build(family: str, module: str):
    "The module of `family` built from its shipped config on the meta device."
    import torch, diffusers, transformers
    cfg = module_config(family, module)
    with torch.device('meta'):
        if '_class_name' in cfg: return getattr(diffusers, cfg['_class_name']).from_config(cfg).eval()
        config = transformers.AutoConfig.for_model(cfg['model_type'], **{k: v for k, v in cfg.items() if k != 'model_type'})
        return getattr(transformers, cfg['architectures'][0])(config).eval()

def lora_targets(family: str, model) -> list[str]:
    "The adapter's default LoRA target names for this module (01_backbones, 01b_flux2)."
    from types import SimpleNamespace
    from dreambooth_nb.backbones import TEXT_LORA_TARGETS, UNET_LORA_TARGETS
    from dreambooth_nb.flux2 import Flux2KleinBackbone
    if 'Flux2Transformer' in type(model).__name__: return Flux2KleinBackbone.lora_targets(SimpleNamespace(transformer=model))
    return UNET_LORA_TARGETS if 'UNet' in type(model).__name__ else TEXT_LORA_TARGETS

def denoiser_inputs(model, px: int) -> dict:
    "One sample's inputs at `px` pixels: latents, a timestep and text conditioning as the adapters pass them."
    import torch
    meta, c = torch.device('meta'), model.config
    if 'Flux2Transformer' in type(model).__name__:
        from diffusers import Flux2KleinPipeline
        side, text = px // 16, torch.zeros(1, 512, c.joint_attention_dim, device=meta)
        latents = torch.zeros(1, c.in_channels, side, side, device=meta)
        return dict(hidden_states=Flux2KleinPipeline._pack_latents(latents), encoder_hidden_states=text,
                    timestep=torch.zeros(1, device=meta), img_ids=Flux2KleinPipeline._prepare_latent_ids(latents).to(meta),
                    txt_ids=Flux2KleinPipeline._prepare_text_ids(text).to(meta), guidance=None)
    args = dict(sample=torch.zeros(1, c.in_channels, px // 8, px // 8, device=meta), timestep=torch.zeros(1, device=meta),
                encoder_hidden_states=torch.zeros(1, 77, c.cross_attention_dim, device=meta))
    if c.addition_embed_type == 'text_time':    # SDXL: pooled text embedding + (original size, crop, target size)
        pooled = c.projection_class_embeddings_input_dim - 6 * c.addition_time_embed_dim
        args['added_cond_kwargs'] = dict(text_embeds=torch.zeros(1, pooled, device=meta), time_ids=torch.zeros(1, 6, device=meta))
    return args

def measure(fn) -> tuple[float, int]:
    "(GFLOPs, aten operator calls) of running `fn()` on meta tensors."
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from torch.utils._python_dispatch import TorchDispatchMode
    class Ops(TorchDispatchMode):
        n = 0
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Ops.n += 1; return func(*args, **(kwargs or {}))
    with torch.no_grad(), FlopCounterMode(display=False) as flops, Ops():
        fn()
    return round(flops.get_total_flops() / 1e9, 3), Ops.n

def add_lora(model, targets) -> int:
    "Inject rank-1 LoRA on `targets` (peft, as the adapters do); returns the LoRA parameters added (= per unit of rank)."
    import torch
    from peft import LoraConfig, inject_adapter_in_model
    with torch.device('meta'): inject_adapter_in_model(LoraConfig(r=1, lora_alpha=1, target_modules=targets), model)
    return sum(p.numel() for n, p in model.named_parameters() if 'lora_' in n)

def count_denoiser(family, name, flops=True) -> dict:
    model = build(family, name)
    out = dict(params=sum(p.numel() for p in model.parameters()))
    if flops:
        out['forward_gflops'] = {}
        for px in DENOISER_PX:
            out['forward_gflops'][str(px)], ops = measure(lambda: model(**denoiser_inputs(model, px), return_dict=False))
            if px == 512: out['forward_ops'] = ops
    out['lora_per_rank'] = add_lora(model, lora_targets(family, model))
    if flops: out['forward_ops_lora'] = measure(lambda: model(**denoiser_inputs(model, 512), return_dict=False))[1]
    return out

def count_text_encoder(family, name, flops=True) -> dict:
    "A text encoder with one prompt: CLIP's 77 tokens, Qwen3's 512 (klein's max_sequence_length)."
    import torch
    model = build(family, name)
    tokens = torch.zeros(1, model.config.max_position_embeddings if 'CLIP' in type(model).__name__ else 512, dtype=torch.long, device='meta')
    out = dict(params=sum(p.numel() for p in model.parameters()))
    if flops: out['forward_gflops'], out['forward_ops'] = measure(lambda: model(input_ids=tokens, output_hidden_states=True))
    out['lora_per_rank'] = add_lora(model, lora_targets(family, model))
    if flops: out['forward_ops_lora'] = measure(lambda: model(input_ids=tokens, output_hidden_states=True))[1]
    return out

def count_vae(family, name, flops=True) -> dict:
    import torch
    model, meta = build(family, name), torch.device('meta')
    out = dict(params=sum(p.numel() for p in model.parameters()))
    if not flops: return out
    out.update(encode_gflops={}, decode_gflops={})
    for px in VAE_PX:
        out['encode_gflops'][str(px)] = measure(lambda: model.encode(torch.zeros(1, 3, px, px, device=meta)))[0]
        z = torch.zeros(1, model.config.latent_channels, px // 8, px // 8, device=meta)
        out['decode_gflops'][str(px)] = measure(lambda: model.decode(z))[0]
    return out

def count_family(family: str, flops: bool = True) -> dict:
    "Every module of `family` counted (see the module docstring); `flops=False`: parameters only (seconds, not a minute)."
    from diffusers.utils import logging
    logging.set_verbosity_error()           # klein's Hub VAE config carries force_upcast, which AutoencoderKLFlux2 ignores
    names = sorted(p.stem for p in (ARCH / family).glob('*.json'))
    denoiser = 'transformer' if 'transformer' in names else 'unet'
    modules = {n: (count_denoiser if n == denoiser else count_vae if n == 'vae' else count_text_encoder)(family, n, flops) for n in names}
    return dict(denoiser=denoiser, modules=modules)

def count_all() -> dict:
    return {f.name: count_family(f.name) for f in sorted(ARCH.iterdir()) if f.is_dir()}

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--check', action='store_true', help='compare a rebuild with counts.json instead of writing it')
    args = ap.parse_args(argv)
    counts, path = count_all(), ARCH / 'counts.json'
    if args.check:
        same = json.loads(path.read_text()) == counts
        print('counts.json matches the rebuild' if same else 'counts.json differs from the rebuild: run python tools/arch_counts.py')
        return 0 if same else 1
    path.write_text(json.dumps(counts, indent=1, sort_keys=True) + '\n'); print(f'wrote {path}')
    return 0

if __name__ == '__main__': sys.exit(main())

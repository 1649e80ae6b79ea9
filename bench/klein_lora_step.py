"""One FLUX.2 [klein] 4B LoRA DreamBooth training step on a GPU: peak VRAM and it/s at 512 and 1024 px, bf16.

    python bench/klein_lora_step.py [--rank 16] [--steps 5]

klein-4B's real transformer config (random weights, built on the GPU, no download): num_layers=5,
num_single_layers=20, num_attention_heads=24, attention_head_dim=128, joint_attention_dim=7680, in_channels=128.
As dreambooth_nb trains klein: latents and prompt embeddings are cached (the VAE and the Qwen3 text encoder are not on
the GPU during the step), LoRA on the klein script's targets, batch = 1 instance + 1 class image (prior preservation),
512 text tokens, bf16 weights with fp32 adapters under bf16 autocast, AdamW. Runs with and without gradient checkpointing.
"""
import argparse, time
import torch
import torch.nn.functional as F

KLEIN_4B = dict(num_layers=5, num_single_layers=20, num_attention_heads=24, attention_head_dim=128, joint_attention_dim=7680,
                in_channels=128)

def build(rank: int, checkpointing: bool):
    from diffusers import Flux2Transformer2DModel
    from peft import LoraConfig, inject_adapter_in_model
    with torch.device('cuda'): model = Flux2Transformer2DModel(**KLEIN_4B).to(torch.bfloat16)
    model.requires_grad_(False)
    targets = ['to_k', 'to_q', 'to_v', 'to_out.0', 'to_qkv_mlp_proj'] + [f'single_transformer_blocks.{i}.attn.to_out' for i in range(20)]
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights='gaussian', target_modules=targets), model)
    params = [p for n, p in model.named_parameters() if 'lora_' in n]
    for p in params: p.data = p.data.float(); p.requires_grad_(True)
    if checkpointing: model.enable_gradient_checkpointing()
    model.train()
    return model, params

def step_inputs(px: int, batch: int = 2):
    from diffusers import Flux2KleinPipeline
    side = px // 16                                                    # VAE /8, then 2x2 patches
    noisy = torch.randn(batch, 128, side, side, device='cuda', dtype=torch.bfloat16)
    cond = torch.randn(batch, 512, 7680, device='cuda', dtype=torch.bfloat16)
    img_ids = Flux2KleinPipeline._prepare_latent_ids(noisy).to('cuda')
    txt_ids = Flux2KleinPipeline._prepare_text_ids(cond).to('cuda')
    tokens = Flux2KleinPipeline._pack_latents(noisy)
    return tokens, cond, img_ids, txt_ids, torch.rand(batch, device='cuda', dtype=torch.bfloat16)

def measure(px: int, rank: int, steps: int, checkpointing: bool) -> tuple[float, float]:
    torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
    model, params = build(rank, checkpointing)
    opt = torch.optim.AdamW(params, lr=1e-4)
    tokens, cond, img_ids, txt_ids, t = step_inputs(px)
    target = torch.randn_like(tokens)
    def one():
        with torch.autocast('cuda', dtype=torch.bfloat16):
            out = model(hidden_states=tokens, encoder_hidden_states=cond, timestep=t, img_ids=img_ids, txt_ids=txt_ids,
                        guidance=None, return_dict=False)[0][:, :tokens.shape[1]]
        F.mse_loss(out.float(), target.float()).backward()
        opt.step(); opt.zero_grad(set_to_none=True)
    for _ in range(2): one()
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); t0 = time.perf_counter()
    for _ in range(steps): one()
    torch.cuda.synchronize()
    rate, peak = steps / (time.perf_counter() - t0), torch.cuda.max_memory_allocated() / 2**30
    del model, params, opt; torch.cuda.empty_cache()
    return rate, peak

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--rank', type=int, default=16); p.add_argument('--steps', type=int, default=5)
    a = p.parse_args()
    print(f"{torch.cuda.get_device_name()} | klein-4B transformer, LoRA rank {a.rank}, batch 1+1, bf16")
    print(f"{'px':>5} {'grad ckpt':>9} {'it/s':>6} {'peak GiB':>9}")
    for px in (512, 1024):
        for ckpt in (True, False):
            rate, peak = measure(px, a.rank, a.steps, ckpt)
            print(f"{px:>5} {str(ckpt):>9} {rate:6.2f} {peak:9.2f}", flush=True)

if __name__ == '__main__': main()

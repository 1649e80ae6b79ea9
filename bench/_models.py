"""Models the benchmarks share."""

SD15 = dict(unet=dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, sample_size=64, cross_attention_dim=768,
                      attention_head_dim=8, norm_num_groups=32),
            vae=dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, norm_num_groups=32,
                     down_block_types=('DownEncoderBlock2D',) * 4, up_block_types=('UpDecoderBlock2D',) * 4, sample_size=512),
            text=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                      max_position_embeddings=77, projection_dim=768, hidden_act='quick_gelu'))

def sd15_architecture():
    "Stable Diffusion 1.5's UNet, VAE and CLIP-L text encoder built from their configs (random weights, no download)."
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    from dreambooth_nb.backbones import SDBackbone, SD_SCHEDULER
    from dreambooth_nb.tokenizer import tiny_clip_tokenizer
    tok = tiny_clip_tokenizer()
    eos = tok.convert_tokens_to_ids('<|endoftext|>')
    text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, bos_token_id=tok.convert_tokens_to_ids('<|startoftext|>'), eos_token_id=eos,
                                        pad_token_id=eos, **SD15['text']))
    return SDBackbone(UNet2DConditionModel(**SD15['unet']), AutoencoderKL(**SD15['vae']), text, tok,
                      DDPMScheduler(**SD_SCHEDULER), name='sd15-architecture')

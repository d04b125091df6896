"""Random-weight models of the same classes as the real ones, for tests of plumbing.

They are saved in diffusers layout with safetensors and loaded by exactly the code path that
loads a hub model. Sizes are chosen so that a 16-frame edit at 512x512 runs in seconds on a
CPU: attention only at the 1/16 and 1/32 resolutions, where full cross-frame attention is cheap.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import UserError
from .tokenizer import write_clip_tokenizer

# A small English vocabulary, so that prompts of tests and examples are whole tokens.
WORDS = """a an the of on in and with to into at by is are it its his her their this that
cat dog fox wolf husky tiger car truck porsche man woman person robot astronaut walking running
red green blue yellow purple orange white black pink brown gold silver grey gray
circle square triangle star shape object background grass sand sky night brick meadow snow water
spiderman polar bear shirt hat painting watercolor watercolour style photo video of van gogh
make turn change replace put it look like bright dark cartoon anime""".split()

KINDS = ("sd15", "ip2p", "i2vgen-xl")


def tiny_unet_config(in_channels: int = 4) -> dict:
    """SD-1.5-shaped UNet (4 levels, cross-attention, 4 latent channels), a few hundred k parameters."""
    return dict(
        sample_size=64, in_channels=in_channels, out_channels=4, layers_per_block=1,
        block_out_channels=(16, 16, 32, 32),
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        mid_block_type="UNetMidBlock2DCrossAttn", cross_attention_dim=32, attention_head_dim=8,
        norm_num_groups=8,
    )


def _build(kind: str, seed: int, with_controlnet: bool):
    from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**tiny_unet_config(8 if kind == "ip2p" else 4))
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
                        block_out_channels=(8, 8, 16, 16), norm_num_groups=8, sample_size=64,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    # A trained eps-model is a smooth function of its input; a random one with a full-size output
    # head is not, and makes the DDIM ODE so stiff that inversion cannot be checked. A small head
    # keeps the random model's eps gentle, as a trained model's is.
    with torch.no_grad():
        unet.conv_out.weight.mul_(0.1)
        unet.conv_out.bias.mul_(0.1)
    # As Stable Diffusion does, scale latents to unit standard deviation (measured on random images).
    with torch.no_grad():
        probe = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1
        vae.register_to_config(scaling_factor=float(1.0 / vae.encode(probe).latent_dist.mean.std()))
    controlnet = None
    if with_controlnet and kind == "sd15":
        controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 16, 16))
        # A fresh ControlNet's output convolutions are zero ("zero convolutions"), so it would do
        # nothing; small random ones let tests see the conditioning arrive in the UNet.
        with torch.no_grad():
            for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
                conv.weight.normal_(0.0, 0.02)
    return unet, vae, scheduler, controlnet, CLIPTextModel, CLIPTextConfig


def write_tiny_model(kind: str, out_dir: str | Path, seed: int = 0, with_controlnet: bool = False,
                     overwrite: bool = False) -> Path:
    """Write a random-weight model of ``kind`` ("sd15", "ip2p" or "i2vgen-xl") in diffusers layout to ``out_dir``."""
    from diffusers import StableDiffusionInstructPix2PixPipeline, StableDiffusionPipeline
    from transformers import CLIPTokenizer

    if kind == "i2vgen-xl":
        if with_controlnet:
            raise UserError("--with-controlnet is only for sd15 tiny models")
        return write_tiny_i2v(out_dir, seed, overwrite)
    if kind not in KINDS:
        raise UserError(f"unknown tiny model kind {kind!r}: use one of {', '.join(KINDS)}")
    if with_controlnet and kind != "sd15":
        raise UserError("--with-controlnet is only for sd15 tiny models")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out} exists and is not empty; pass --overwrite to replace its files")
    unet, vae, scheduler, controlnet, text_model_cls, text_config_cls = _build(kind, seed, with_controlnet)
    tok_dir = write_clip_tokenizer(WORDS, out / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    text_encoder = text_model_cls(text_config_cls(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=32,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    pipe_cls = StableDiffusionInstructPix2PixPipeline if kind == "ip2p" else StableDiffusionPipeline
    pipe = pipe_cls(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                    safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(out, safe_serialization=True)
    if controlnet is not None:
        controlnet.save_pretrained(out / "controlnet", safe_serialization=True)
    return out


# --- tiny I2VGen-XL (method i2v) -------------------------------------------------------------------

# The scheduler of ali-vilab/i2vgen-xl: DDIM with v-prediction and betas rescaled to zero terminal SNR.
I2V_SCHEDULER = dict(beta_start=0.0001, beta_end=0.02, beta_schedule="squaredcos_cap_v2", clip_sample=False,
                     prediction_type="v_prediction", rescale_betas_zero_snr=True, set_alpha_to_one=True,
                     steps_offset=1, timestep_spacing="leading")


def tiny_i2v_unet_config() -> dict:
    """I2VGen-XL-shaped 3D UNet: 4 levels, 2 layers per block (so up_blocks[1..3] hold the three
    attentions that method i2v injects into), cross-attention width 32."""
    return dict(sample_size=32, in_channels=4, out_channels=4, layers_per_block=2,
                block_out_channels=(16, 16, 32, 32), norm_num_groups=8, cross_attention_dim=32,
                attention_head_dim=2)


def write_tiny_i2v(out_dir: str | Path, seed: int = 0, overwrite: bool = False) -> Path:
    """A random-weight I2VGen-XL of the real classes (I2VGenXLUNet, AutoencoderKL, CLIP text and
    vision encoders, CLIPImageProcessor, DDIM), saved in diffusers layout with ``model_index.json``."""
    from diffusers import DDIMScheduler, I2VGenXLUNet

    from .i2v import save_i2v

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out} exists and is not empty; pass --overwrite to replace its files")
    _, vae, _, _, _, _ = _build("sd15", seed, False)  # the tiny VAE, with unit-variance latents
    torch.manual_seed(seed)
    unet = I2VGenXLUNet(**tiny_i2v_unet_config())
    with torch.no_grad():  # a gentle output head, as for the tiny SD UNet (see _build)
        unet.conv_out.weight.mul_(0.1)
        unet.conv_out.bias.mul_(0.1)
    dim = unet.config.cross_attention_dim
    tokenizer, text_encoder, image_encoder, processor = tiny_encoders(out, dim)
    save_i2v(out, unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, image_encoder=image_encoder,
             processor=processor, scheduler=DDIMScheduler(**I2V_SCHEDULER))
    return out


def tiny_encoders(out: Path, dim: int):
    """(tokenizer written to ``out/tokenizer``, CLIP text encoder, CLIP vision encoder with projection, image
    processor) of width ``dim``, for the tiny video models."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, CLIPVisionConfig, CLIPVisionModelWithProjection

    from .metrics import image_processor_class

    tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(WORDS, out / "tokenizer"))
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=dim, intermediate_size=2 * dim, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=dim,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=dim, intermediate_size=2 * dim, num_hidden_layers=2, num_attention_heads=4, image_size=32,
        patch_size=8, projection_dim=dim))
    processor = image_processor_class()(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return tokenizer, text_encoder, image_encoder, processor

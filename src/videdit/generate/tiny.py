"""A random-weight text-to-video model of the real classes (UNet3DConditionModel, AutoencoderKL, CLIP
text encoder, DDIM), with an image encoder and tiny CAM and APM, for tests of plumbing."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import UserError

# ModelScope T2V's scheduler (damo-vilab/text-to-video-ms-1.7b, scheduler_config.json).
T2V_SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                     set_alpha_to_one=False, steps_offset=1, num_train_timesteps=1000)


def tiny_unet3d_config() -> dict:
    """ms-t2v-shaped UNet3D (3 cross-attention down blocks and a plain one), widths 32 ... 64."""
    return dict(sample_size=32, in_channels=4, out_channels=4, layers_per_block=1,
                block_out_channels=(32, 32, 64, 64), norm_num_groups=8, cross_attention_dim=32,
                attention_head_dim=8)


def write_tiny_t2v(out_dir: str | Path, seed: int = 0, overwrite: bool = False, modules: bool = True) -> Path:
    """Write a tiny text-to-video model in diffusers layout (``model_index.json`` of TextToVideoSDPipeline),
    plus ``image_encoder/``, ``feature_extractor/`` and ``streaming/`` (CAM and APM) when ``modules``."""
    import diffusers
    from diffusers import DDIMScheduler, UNet3DConditionModel

    from ..tiny import _build, tiny_encoders
    from .modules import APM, CAM, save_modules

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out} exists and is not empty; pass --overwrite to replace its files")
    _, vae, _, _, _, _ = _build("sd15", seed, False)
    torch.manual_seed(seed)
    unet = UNet3DConditionModel(**tiny_unet3d_config())
    with torch.no_grad():  # a gentle output head, as for the other tiny UNets (see videdit.tiny._build)
        unet.conv_out.weight.mul_(0.1)
        unet.conv_out.bias.mul_(0.1)
    dim = unet.config.cross_attention_dim
    tokenizer, text_encoder, image_encoder, processor = tiny_encoders(out, dim)
    unet.save_pretrained(out / "unet", safe_serialization=True)
    vae.save_pretrained(out / "vae", safe_serialization=True)
    text_encoder.save_pretrained(out / "text_encoder", safe_serialization=True)
    DDIMScheduler(**T2V_SCHEDULER).save_pretrained(out / "scheduler")
    index = {"_class_name": "TextToVideoSDPipeline", "_diffusers_version": diffusers.__version__,
             "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet3DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"]}
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    if modules:
        image_encoder.save_pretrained(out / "image_encoder", safe_serialization=True)
        processor.save_pretrained(out / "feature_extractor")
        cam = CAM(unet, frame_channels=(8, 8, 16, 16))
        apm = APM(unet, image_dim=dim, hidden=40, text_tokens=tokenizer.model_max_length)
        # Zero-initialised outputs would make fresh modules do nothing; small random ones let tests see
        # the conditioning arrive (as the tiny ControlNet's zero convolutions, videdit.tiny._build).
        with torch.no_grad():
            for p in [cam.frame_embedding.conv_out.weight, *(m.proj_out.weight for m in cam.mergers)]:
                p.normal_(0.0, 0.05)
            for mixer in apm.mixers.values():
                mixer.alpha.fill_(1.0)
        save_modules(out / "streaming", cam, apm)
    return out

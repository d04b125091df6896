"""Text-to-video models of the ModelScope family: a `UNet3DConditionModel` that denoises the latents
of a whole clip, (B, C, F, h, w), conditioned on CLIP text embeddings; an image VAE applied frame by
frame; DDIM.

`unet_forward` states the UNet's forward pass in the project, with two places where a streaming
module may act: on each skip connection (the encoder's features that the decoder reads) and on the
mid block's output. With neither, it computes exactly what ``unet(x, t, text)`` computes (tested).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch

from ..errors import UserError
from ..models import DiffusionModel, check_component, pick_device, pick_dtype, resolve

T2V_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
# merge(index, features, num_frames) -> features: index 0 ... n-1 are the skip connections in the
# order the encoder makes them, index n is the mid block's output.
Merge = Callable[[int, torch.Tensor, int], torch.Tensor]


def load_t2v(name: str, device: str | None = None, dtype: str | None = None, allow_pickle: bool = False) -> DiffusionModel:
    """The UNet3D, VAE, CLIP text encoder, tokenizer and scheduler config of a text-to-video model."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    root = resolve(name, allow_pickle=allow_pickle)
    config = root / "unet" / "config.json"
    if config.is_file():
        unet_class = json.loads(config.read_text(encoding="utf-8")).get("_class_name")
        if unet_class != "UNet3DConditionModel":
            raise UserError(f"model {name!r} is not a text-to-video model (its UNet is {unet_class}; generate and "
                            "refine need a UNet3DConditionModel): use --model ms-t2v or zeroscope")
    for sub in T2V_COMPONENTS:
        check_component(root, sub, allow_pickle)
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    safe = (not allow_pickle) or None
    try:
        unet = UNet3DConditionModel.from_pretrained(root, subfolder="unet", torch_dtype=dt, use_safetensors=safe)
        vae = AutoencoderKL.from_pretrained(root, subfolder="vae", torch_dtype=dt, use_safetensors=safe)
        text_encoder = CLIPTextModel.from_pretrained(root / "text_encoder", torch_dtype=dt, use_safetensors=safe)
        tokenizer = CLIPTokenizer.from_pretrained(root / "tokenizer")
        scheduler_config = dict(DDIMScheduler.load_config(root, subfolder="scheduler"))
    except (OSError, ValueError, KeyError, EnvironmentError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot load text-to-video model from {root}: {first[:200]}") from None
    for module in (unet, vae, text_encoder):
        module.requires_grad_(False).eval().to(dev)
    return DiffusionModel(name=name, path=root, unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                          scheduler_config=scheduler_config, device=dev, dtype=dt, extras=dict(kind="t2v"))


def native_size(model: DiffusionModel) -> int:
    """The side the UNet was trained at, in pixels (ms-t2v: 32 latents x 8 = 256)."""
    return int(model.unet.config.sample_size) * model.vae_scale


def unet_forward(unet, x: torch.Tensor, t, text: torch.Tensor, merge: Merge | None = None,
                 cross_attention_kwargs: dict | None = None) -> torch.Tensor:
    """eps(x, t, text) of a UNet3DConditionModel for x (B, C, F, h, w) and text (B, L, D).

    The UNet works on (B F) frames: its spatial layers see each frame alone, its temporal layers
    (``transformer_in`` and each block's ``temp_attentions``) see each pixel's F frames.
    """
    b, f = x.shape[0], x.shape[2]
    skips, h, emb, context = _down(unet, x, t, text, None, cross_attention_kwargs)
    if merge is not None:
        skips = [merge(i, s, f) for i, s in enumerate(skips)]
    h = unet.mid_block(h, emb, encoder_hidden_states=context, num_frames=f, cross_attention_kwargs=cross_attention_kwargs)
    if merge is not None:
        h = merge(len(skips), h, f)
    for block in unet.up_blocks:
        res, skips = tuple(skips[-len(block.resnets):]), skips[:-len(block.resnets)]
        size = skips[-1].shape[2:] if skips else None
        if getattr(block, "has_cross_attention", False):
            h = block(hidden_states=h, temb=emb, res_hidden_states_tuple=res, encoder_hidden_states=context,
                      upsample_size=size, num_frames=f, cross_attention_kwargs=cross_attention_kwargs)
        else:
            h = block(hidden_states=h, temb=emb, res_hidden_states_tuple=res, upsample_size=size, num_frames=f)
    if unet.conv_norm_out is not None:
        h = unet.conv_act(unet.conv_norm_out(h))
    h = unet.conv_out(h)
    return h.reshape(b, f, *h.shape[1:]).permute(0, 2, 1, 3, 4)


def unet_encoder(unet, x: torch.Tensor, t, text: torch.Tensor, added: torch.Tensor | None = None) -> list[torch.Tensor]:
    """The encoder half of `unet_forward`: its skip connections, then the mid block's output.
    ``added`` (B F, C0, h, w) is added after ``transformer_in`` (how the CAM branch takes its frames)."""
    skips, h, emb, context = _down(unet, x, t, text, added, None)
    return skips + [unet.mid_block(h, emb, encoder_hidden_states=context, num_frames=x.shape[2])]


def _down(unet, x, t, text, added, cross_attention_kwargs):
    """Time embedding, conv_in, transformer_in (+ ``added``) and the down blocks: (skips, h, emb, context)."""
    b, f = x.shape[0], x.shape[2]
    timesteps = torch.as_tensor(t, device=x.device).reshape(-1).expand(b)
    emb = unet.time_embedding(unet.time_proj(timesteps).to(unet.dtype)).repeat_interleave(f, dim=0)
    context = text.repeat_interleave(f, dim=0)
    # contiguous: a channels-last input (latents of permuted images) crashed the conv backward of torch 2.13
    h = unet.conv_in(x.permute(0, 2, 1, 3, 4).reshape(b * f, x.shape[1], *x.shape[3:]).contiguous())
    h = unet.transformer_in(h, num_frames=f, cross_attention_kwargs=cross_attention_kwargs, return_dict=False)[0]
    if added is not None:
        h = h + added
    skips = [h]
    for block in unet.down_blocks:
        if getattr(block, "has_cross_attention", False):
            h, res = block(hidden_states=h, temb=emb, encoder_hidden_states=context, num_frames=f,
                           cross_attention_kwargs=cross_attention_kwargs)
        else:
            h, res = block(hidden_states=h, temb=emb, num_frames=f)
        skips.extend(res)
    return skips, h, emb, context

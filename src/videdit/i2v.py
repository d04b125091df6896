"""I2VGen-XL, the image-to-video model behind method ``i2v``: loading, conditioning, one guided call.

I2VGen-XL (arXiv 2311.04145) is a 3D UNet (`diffusers.I2VGenXLUNet`) that denoises the latents of a
whole clip, (B, C, F, h, w), conditioned on
- a prompt: CLIP text embeddings of the penultimate layer, after the final layer norm (the
  ``clip_skip=1`` the model was used with);
- the first frame's CLIP image embedding (``CLIPVisionModelWithProjection`` of a centre square);
  its classifier-free "unconditional" twin is all zeros;
- the first frame's VAE latent, placed at frame 0 of ``image_latents``; frames 1 ... F-1 of that
  tensor carry their position f / (F - 1) as a constant map, which is how the model learns where
  in the clip a frame is;
- the frame rate, a micro-condition embedded like the timestep (default 8).
The scheduler is the repository's DDIM config (v-prediction, betas rescaled to zero terminal SNR).

This module replaces the deprecated ``I2VGenXLPipeline``: the same conditioning, written as small
functions so that a method can batch its own branches (see `videdit.methods.i2v`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
import numpy as np
import torch

from .errors import UserError
from .models import DiffusionModel, check_component, pick_device, pick_dtype, resolve

I2V_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "image_encoder", "feature_extractor", "scheduler")


def load_i2v(name: str, device: str | None = None, dtype: str | None = None, allow_pickle: bool = False,
             cpu_offload: bool = False, vae_tiling: bool = False) -> DiffusionModel:
    """Load the components of an I2VGen-XL-class model from a preset, repository or folder.

    The result is a `DiffusionModel` (so the shared VAE, text and scheduler helpers work on it) whose
    ``extras`` hold the ``image_encoder``, the ``image_mean``/``image_std``/``image_size`` of its
    image processor and ``kind = "i2v"``.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, I2VGenXLUNet
    from transformers import CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection

    root = resolve(name, allow_pickle=allow_pickle)
    index = root / "model_index.json"
    if index.is_file():
        unet_class = json.loads(index.read_text(encoding="utf-8")).get("unet", [None, None])[1]
        if unet_class != "I2VGenXLUNet":
            raise UserError(f"model {name!r} is not an image-to-video model (its UNet is {unet_class}, "
                            "method i2v needs I2VGenXLUNet): use --model i2vgen-xl")
    for sub in I2V_COMPONENTS:
        check_component(root, sub, allow_pickle)
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    safe = (not allow_pickle) or None
    try:
        unet = I2VGenXLUNet.from_pretrained(root, subfolder="unet", torch_dtype=dt, use_safetensors=safe)
        vae = AutoencoderKL.from_pretrained(root, subfolder="vae", torch_dtype=dt, use_safetensors=safe)
        text_encoder = CLIPTextModel.from_pretrained(root / "text_encoder", torch_dtype=dt, use_safetensors=safe)
        image_encoder = CLIPVisionModelWithProjection.from_pretrained(root / "image_encoder", torch_dtype=dt,
                                                                      use_safetensors=safe)
        tokenizer = CLIPTokenizer.from_pretrained(root / "tokenizer")
        processor = json.loads((root / "feature_extractor" / "preprocessor_config.json").read_text(encoding="utf-8"))
        scheduler_config = dict(DDIMScheduler.load_config(root, subfolder="scheduler"))
    except (OSError, ValueError, KeyError, EnvironmentError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot load image-to-video model from {root}: {first[:200]}") from None
    crop = processor.get("crop_size", 224)
    image_size = (crop["height"], crop["width"]) if isinstance(crop, dict) else (int(crop), int(crop))
    model = DiffusionModel(name=name, path=root, unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                           scheduler_config=scheduler_config, device=dev, dtype=dt,
                           extras=dict(kind="i2v", image_encoder=image_encoder, image_size=image_size,
                                       image_mean=processor.get("image_mean", [0.48145466, 0.4578275, 0.40821073]),
                                       image_std=processor.get("image_std", [0.26862954, 0.26130258, 0.27577711])))
    for module in (unet, vae, text_encoder, image_encoder):
        module.requires_grad_(False).eval()
    if vae_tiling:
        vae.enable_tiling()
    if cpu_offload and dev.type != "cpu":
        from accelerate import cpu_offload as offload

        for module in (unet, vae, text_encoder, image_encoder):
            offload(module, execution_device=dev)
    else:
        for module in (unet, vae, text_encoder, image_encoder):
            module.to(dev)
    return model


def save_i2v(out, *, unet, vae, text_encoder, tokenizer, image_encoder, processor, scheduler,
             dtype: torch.dtype | None = None) -> None:
    """Write an I2VGen-XL-class model in the hub's diffusers layout (one folder per component and a
    ``model_index.json``), safetensors only; ``dtype`` casts the weights (e.g. fp16 for shipping)."""
    from pathlib import Path

    import diffusers

    out = Path(out)
    for sub, module in (("unet", unet), ("vae", vae), ("text_encoder", text_encoder), ("image_encoder", image_encoder)):
        if dtype is not None:
            module = module.to(dtype)
        module.save_pretrained(out / sub, safe_serialization=True)
        if dtype is not None:
            module.to(torch.float32)
    tokenizer.save_pretrained(out / "tokenizer")
    processor.save_pretrained(out / "feature_extractor")
    scheduler.save_pretrained(out / "scheduler")
    index = {"_class_name": "I2VGenXLPipeline", "_diffusers_version": diffusers.__version__,
             "feature_extractor": ["transformers", type(processor).__name__.replace("Pil", "")],
             "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
             "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "I2VGenXLUNet"],
             "vae": ["diffusers", "AutoencoderKL"]}
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


def is_i2v(model) -> bool:
    return isinstance(model, DiffusionModel) and model.extras.get("kind") == "i2v"


@torch.no_grad()
def encode_prompt(model: DiffusionModel, prompts: list[str]) -> torch.Tensor:
    """Text embeddings (len(prompts), 77, D): penultimate CLIP layer + final layer norm (clip_skip = 1)."""
    tok = model.tokenizer(prompts, padding="max_length", max_length=model.tokenizer.model_max_length,
                          truncation=True, return_tensors="pt")
    enc = model.text_encoder
    device = next(enc.parameters()).device
    hidden = enc(tok.input_ids.to(device), output_hidden_states=True).hidden_states[-2]
    final_norm = getattr(enc, "text_model", enc).final_layer_norm  # transformers 4 nests it, 5 does not
    return final_norm(hidden).to(model.device, model.dtype)


@torch.no_grad()
def encode_image(model: DiffusionModel, image: np.ndarray) -> torch.Tensor:
    """CLIP image embedding (1, 1, D) of the centre square of ``image`` (H, W, 3) uint8."""
    from PIL import Image

    enc = model.extras["image_encoder"]
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = Image.fromarray(image[top:top + side, left:left + side])
    th, tw = model.extras["image_size"]
    pixels = np.asarray(square.resize((tw, th), Image.BILINEAR), dtype=np.float32) / 255.0
    mean = np.asarray(model.extras["image_mean"], dtype=np.float32)
    std = np.asarray(model.extras["image_std"], dtype=np.float32)
    x = torch.from_numpy((pixels - mean) / std).permute(2, 0, 1)[None]
    device = next(enc.parameters()).device
    return enc(x.to(device, enc.dtype)).image_embeds[:, None].to(model.device, model.dtype)


@torch.no_grad()
def image_latents(model: DiffusionModel, image: np.ndarray, num_frames: int) -> torch.Tensor:
    """(1, C, F, h, w): the first frame's VAE latent (posterior mean, for determinism) at frame 0, and at
    frame f >= 1 the constant f / (F - 1) that tells the model the frame's position."""
    from .diffusion import vae_encode

    z = vae_encode(model, image[None]).permute(1, 0, 2, 3)[None]  # (1, C, 1, h, w)
    positions = [torch.full_like(z, f / (num_frames - 1)) for f in range(1, num_frames)]
    return torch.cat([z, *positions], dim=2)


@dataclass
class Condition:
    """Everything but the noisy latent that one batch of the UNet sees, one row per branch."""

    text: torch.Tensor           # (B, 77, D)
    image_embedding: torch.Tensor  # (B, 1, D)
    image_latents: torch.Tensor  # (B, C, F, h, w)
    fps: torch.Tensor            # (B,)

    @staticmethod
    def cat(conditions: list["Condition"]) -> "Condition":
        return Condition(*(torch.cat([getattr(c, f) for c in conditions])
                           for f in ("text", "image_embedding", "image_latents", "fps")))


def condition(model: DiffusionModel, prompt: str, image: np.ndarray, num_frames: int, fps: int) -> Condition:
    """One branch's condition: ``prompt`` and first frame ``image`` (H, W, 3) uint8 at the working size.

    The unconditional branch of classifier-free guidance replaces the image embedding by zeros and
    keeps the first frame's VAE latent, as in I2VGen-XL's own guidance.
    """
    return Condition(text=encode_prompt(model, [prompt]),
                     image_embedding=encode_image(model, image),
                     image_latents=image_latents(model, image, num_frames),
                     fps=torch.tensor([fps], device=model.device))


def to_video(x: torch.Tensor) -> torch.Tensor:
    """(B, F, C, h, w) -> (B, C, F, h, w), the UNet's layout."""
    return x.permute(0, 2, 1, 3, 4)


def from_video(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 1, 3, 4)


def predict(model: DiffusionModel, x: torch.Tensor, t: torch.Tensor, cond: Condition) -> torch.Tensor:
    """The UNet's prediction (v for I2VGen-XL) for latents x (B, F, C, h, w), one row per branch of ``cond``.

    Inside the UNet the batch is (B x F) frames, branch-major with each branch's frames contiguous;
    temporal layers see (B x h x w) sequences, again branch-major.
    """
    out = model.unet(to_video(x).to(model.dtype), t, fps=cond.fps, image_latents=cond.image_latents,
                     image_embeddings=cond.image_embedding, encoder_hidden_states=cond.text, return_dict=False)[0]
    return from_video(out)


def timestep_index(timesteps: torch.Tensor, t: int) -> int:
    """Position of the timestep nearest to ``t`` in ``timesteps``."""
    return int(torch.argmin((timesteps.to(torch.float64).cpu() - float(t)).abs()))

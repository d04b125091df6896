"""The building blocks every method shares: text and VAE encoding, one guided noise prediction,
and the DDIM loop. Method-specific parts (attention state, injection, blending) come in as
arguments or callbacks; they are not written into the loop.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .models import DiffusionModel

NoiseFn = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


@torch.no_grad()
def encode_text(model: DiffusionModel, prompts: list[str]) -> torch.Tensor:
    """Text embeddings (len(prompts), max_length, dim), padded as Stable Diffusion pads: to the tokenizer's
    length (CLIP: 77), at most the encoder's positions (a BERT tokenizer may state no length of its own)."""
    positions = getattr(model.text_encoder.config, "max_position_embeddings", None) or model.tokenizer.model_max_length
    tok = model.tokenizer(prompts, padding="max_length", max_length=min(model.tokenizer.model_max_length, positions),
                          truncation=True, return_tensors="pt")
    device = next(model.text_encoder.parameters()).device
    return model.text_encoder(tok.input_ids.to(device))[0].to(model.device, model.dtype)


def frames_to_tensor(frames: np.ndarray, device, dtype) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, H, W) in [-1, 1]."""
    x = torch.as_tensor(np.array(frames, copy=True)).permute(0, 3, 1, 2)  # copy: inputs may be read-only views
    return (x.to(device=device, dtype=torch.float32) / 127.5 - 1.0).to(dtype)


def tensor_to_frames(x: torch.Tensor) -> np.ndarray:
    """(T, 3, H, W) in [-1, 1] -> (T, H, W, 3) uint8 (rounded, clipped)."""
    x = ((x.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def vae_encode(model: DiffusionModel, frames: np.ndarray, chunk: int = 8) -> torch.Tensor:
    """Latents z0 = scaling_factor * mean of q(z | frame), computed ``chunk`` frames at a time.

    The posterior mean (not a sample) keeps encoding deterministic.
    """
    vae = model.vae
    out = []
    for i in range(0, len(frames), chunk):
        x = frames_to_tensor(frames[i:i + chunk], model.device, vae.dtype)
        out.append(vae.encode(x).latent_dist.mean * vae.config.scaling_factor)
    return torch.cat(out).to(model.dtype).contiguous()  # standard layout: see inversion.invert


@torch.no_grad()
def vae_decode(model: DiffusionModel, latents: torch.Tensor, chunk: int = 8) -> np.ndarray:
    """Frames from latents, ``chunk`` at a time. fp16 decodes that overflow to NaN are redone in fp32."""
    vae = model.vae
    out = []
    for i in range(0, len(latents), chunk):
        z = latents[i:i + chunk].contiguous() / vae.config.scaling_factor
        x = vae.decode(z.to(vae.dtype)).sample
        if vae.dtype == torch.float16 and not torch.isfinite(x).all():
            vae.to(torch.float32)
            x = vae.decode(z.float()).sample
            vae.to(torch.float16)
        out.append(tensor_to_frames(x))
    return np.concatenate(out)


def predict_noise(model: DiffusionModel, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor,
                  uncond: torch.Tensor | None, guidance: float, control: torch.Tensor | None = None,
                  control_scale: float = 1.0, cross_attention_kwargs: dict | None = None,
                  guidance_rescale: float = 0.0) -> torch.Tensor:
    """eps_hat = eps(x, uncond) + w * (eps(x, cond) - eps(x, uncond))  (classifier-free guidance).

    ``x`` holds the F frames of one clip; ``cond``/``uncond`` are (F, L, D) text embeddings. With
    guidance, the UNet sees one batch of 2F: the F unconditional frames, then the F conditional ones
    (the layout the frame attention processors expect: branch-major, frames contiguous).
    As in diffusers' pipelines, w <= 1 means no guidance at all: eps_hat = eps(x, cond), one batch of F.
    ``guidance_rescale`` phi > 0 rescales eps_hat towards the conditional prediction's spread
    (`rescale_guidance`).
    """
    guided = uncond is not None and guidance > 1.0
    xb = torch.cat([x, x]) if guided else x
    emb = torch.cat([uncond, cond]) if guided else cond
    extra = {}
    if model.controlnet is not None and control is not None:
        cb = torch.cat([control, control]) if guided else control
        down, mid = model.controlnet(xb, t, encoder_hidden_states=emb, controlnet_cond=cb,
                                     conditioning_scale=control_scale, return_dict=False)
        extra = dict(down_block_additional_residuals=down, mid_block_additional_residual=mid)
    eps = model.unet(xb, t, encoder_hidden_states=emb, cross_attention_kwargs=cross_attention_kwargs,
                     return_dict=False, **extra)[0]
    if not guided:
        return eps
    eps_uncond, eps_cond = eps.chunk(2)
    guided_eps = eps_uncond + guidance * (eps_cond - eps_uncond)
    return rescale_guidance(guided_eps, eps_cond, guidance_rescale) if guidance_rescale > 0 else guided_eps


def rescale_guidance(eps_cfg: torch.Tensor, eps_cond: torch.Tensor, phi: float) -> torch.Tensor:
    """Guidance rescale (Lin et al., "Common Diffusion Noise Schedules and Sample Steps are Flawed",
    WACV 2024, section 3.4), per frame:

        eps_rescaled = eps_cfg * std(eps_cond) / std(eps_cfg)
        eps_final    = phi * eps_rescaled + (1 - phi) * eps_cfg

    With a zero-terminal-SNR v-prediction model, strong guidance over-exposes; rescaling restores the
    conditional prediction's standard deviation (std over every dimension but the frame's)."""
    dims = list(range(1, eps_cfg.ndim))
    rescaled = eps_cfg * (eps_cond.std(dim=dims, keepdim=True) / eps_cfg.std(dim=dims, keepdim=True))
    return phi * rescaled + (1.0 - phi) * eps_cfg


def make_scheduler(model: DiffusionModel, steps: int, inverse: bool = False):
    """DDIM (or DDIM inverse) scheduler from the model's own config, set to ``steps`` steps."""
    return ddim_scheduler(model.scheduler_config, steps, inverse, model.device)


def ddim_scheduler(config: dict, steps: int, inverse: bool = False, device=None):
    """DDIMScheduler, or for ``inverse`` a DDIMInverseScheduler that walks the sampler's own timesteps backwards.

    Inversion must visit the noise levels that sampling will visit, in reverse order, whatever
    ``timestep_spacing`` the model's config has. DDIMInverseScheduler lays out only ``leading`` and
    ``trailing`` (where its timesteps are the sampler's reversed) and refuses ``linspace``; its step
    (x at level t - T/N -> x at level t, eps evaluated at t) is the exact inverse of DDIMScheduler's
    step for any timesteps. So the inverse scheduler is built with a spacing it accepts, then given
    the sampler's timesteps, reversed.
    """
    from diffusers import DDIMInverseScheduler, DDIMScheduler

    sampler = DDIMScheduler.from_config(config)
    sampler.set_timesteps(steps, device=device)
    if not inverse:
        return sampler
    scheduler = DDIMInverseScheduler.from_config(config, timestep_spacing="leading")
    scheduler.set_timesteps(steps, device=device)
    scheduler.timesteps = sampler.timesteps.flip(0)
    return scheduler


@torch.no_grad()
def ddim_loop(noise_fn: NoiseFn, x: torch.Tensor, scheduler, timesteps, desc: str = "",
              progress: bool = True, callback: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor | None] | None = None,
              keep: bool = False) -> torch.Tensor | list[torch.Tensor]:
    """x_{next} = DDIM step of x_t with eps_hat = noise_fn(x_t, t, i), over ``timesteps``.

    The scheduler decides the direction: DDIMScheduler denoises (x_t -> x_{t-1}), DDIMInverseScheduler
    inverts (x_{t-1} -> x_t). ``callback(i, t, x)`` may return a replacement for x after each step
    (latent blending). With ``keep``, the list [x_start, x_1, ..., x_end] is returned.
    """
    kept = [x] if keep else None
    for i, t in enumerate(tqdm(timesteps, desc=desc, disable=not progress, leave=False)):
        eps = noise_fn(x, t, i)
        x = scheduler.step(eps, t, x).prev_sample
        if callback is not None:
            replaced = callback(i, t, x)
            x = x if replaced is None else replaced
        if keep:
            kept.append(x)
    return kept if keep else x


def ddim_sample(model: DiffusionModel, start: torch.Tensor, k: int, steps: int, cond: torch.Tensor,
                uncond: torch.Tensor | None, guidance: float, control: torch.Tensor | None = None,
                control_scale: float = 1.0, desc: str = "editing", progress: bool = True,
                callback=None, cross_attention_kwargs: dict | None = None,
                guidance_rescale: float = 0.0) -> torch.Tensor:
    """Run the last ``k`` of ``steps`` DDIM sampling steps from ``start`` (= z_k of an inversion)."""
    scheduler = make_scheduler(model, steps)
    timesteps = scheduler.timesteps[steps - k:]  # empty for k = 0

    def eps(x, t, i):
        return predict_noise(model, x, t, cond, uncond, guidance, control, control_scale, cross_attention_kwargs,
                             guidance_rescale)

    return ddim_loop(eps, start, scheduler, timesteps, desc=desc, progress=progress, callback=callback)

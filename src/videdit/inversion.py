"""DDIM inversion of a clip's latents, every timestep kept, with an on-disk cache.

DDIM (Song et al., "Denoising Diffusion Implicit Models", ICLR 2021, eq. 12 with sigma = 0) is a
deterministic map between x_{t-1} and x_t given eps(x, t); running it from the clean latent z_0
towards t = T under the source prompt and guidance 1 gives noise latents z_1 ... z_N from which
DDIM sampling returns (approximately) z_0. Methods start editing from z_k and need the others for
injection and latent blending, so the whole trajectory is kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .diffusion import NoiseFn, ddim_loop, make_scheduler, predict_noise
from .fsutil import cache_dir  # noqa: F401 - where the cache lives (also used by videdit.atlas)
from .models import DiffusionModel

log = logging.getLogger("videdit")

CACHE_VERSION = 1


@dataclass
class Trajectory:
    """z_0 ... z_N: ``latents[i]`` is the inverted latent after i inversion steps (``latents[0]`` = z_0)."""

    latents: torch.Tensor  # (N + 1, F, C, h, w)
    steps: int
    from_cache: bool = False

    def start(self, k: int) -> torch.Tensor:
        """z_k, where editing with k remaining sampling steps starts."""
        return self.latents[k]

    def at_sampling_step(self, i: int, k: int) -> torch.Tensor:
        """The source latent at the noise level reached after sampling step i of a run started at z_k."""
        return self.latents[k - 1 - i]


def start_index(strength: float, steps: int) -> int:
    """k = steps - round((1 - strength) * steps): strength 0 -> z_0 (no steps), strength 1 -> z_N."""
    return steps - int(round((1.0 - strength) * steps))


def cache_key(frames: np.ndarray, model: DiffusionModel, prompt: str, steps: int, control: str,
              extra: dict | None = None) -> str:
    """sha256 of everything the trajectory depends on: frame content and size, weights, prompt,
    steps, control, dtype and method-specific attention settings."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(frames).tobytes())
    meta = dict(v=CACHE_VERSION, shape=list(frames.shape), model=model.identity, prompt=prompt, steps=steps,
                control=control, dtype=str(model.dtype), extra=extra or {})
    h.update(json.dumps(meta, sort_keys=True).encode())
    return h.hexdigest()[:32]


def _load(path: Path) -> torch.Tensor | None:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))["latents"].clone()  # own, aligned memory: not a view of the file
    except Exception:  # a cache file cut short or from another version: recompute
        return None


def _save(path: Path, latents: torch.Tensor) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file({"latents": latents.contiguous().cpu()}, str(tmp))
    os.replace(tmp, path)


@torch.no_grad()
def invert(model: DiffusionModel, z0: torch.Tensor, source_emb: torch.Tensor, steps: int,
           control: torch.Tensor | None = None, control_scale: float = 1.0, progress: bool = True,
           cross_attention_kwargs: dict | None = None, noise_fn: NoiseFn | None = None) -> torch.Tensor:
    """z_0 -> [z_0, z_1, ..., z_N] with DDIMInverseScheduler, guidance 1, under ``source_emb`` (F, L, D).

    The caller installs the same attention processors (cross-frame attention) as the edit uses.
    ``noise_fn(x, t, i)`` replaces the SD UNet call for models with other conditioning (method i2v).
    """
    scheduler = make_scheduler(model, steps, inverse=True)

    def eps(x, t, i):
        if noise_fn is not None:
            return noise_fn(x, t, i)
        return predict_noise(model, x, t, source_emb, None, 1.0, control, control_scale, cross_attention_kwargs)

    kept = ddim_loop(eps, z0, scheduler, scheduler.timesteps, desc="inversion", progress=progress, keep=True)
    # Standard layout: the UNet may return channels-last tensors, and a cached trajectory (always
    # contiguous) must give bit-identical edits to a computed one.
    return torch.stack(kept).contiguous()


def invert_cached(model: DiffusionModel, frames: np.ndarray, z0: torch.Tensor, source_prompt: str,
                  source_emb: torch.Tensor, steps: int, control_name: str, control: torch.Tensor | None,
                  control_scale: float = 1.0, use_cache: bool = True, progress: bool = True,
                  extra_key: dict | None = None, noise_fn: NoiseFn | None = None) -> Trajectory:
    """`invert`, reading and writing the on-disk cache unless ``use_cache`` is False.

    With ``noise_fn`` (see `invert`), ``extra_key`` must name everything else it depends on."""
    path = None
    if use_cache:
        key = cache_key(frames, model, source_prompt, steps, control_name,
                        dict(extra_key or {}, control_scale=control_scale))
        path = cache_dir() / "inversion" / f"{key}.safetensors"
        if path.is_file():
            latents = _load(path)
            if latents is not None and latents.shape[0] == steps + 1 and latents.shape[1:] == z0.shape:
                log.info("inversion: loaded from cache %s (skipped %d inversion steps)", path, steps)
                return Trajectory(latents.to(model.device, model.dtype), steps, from_cache=True)
    latents = invert(model, z0, source_emb, steps, control, control_scale, progress, noise_fn=noise_fn)
    if path is not None:
        try:
            _save(path, latents)
            log.info("inversion: %d steps computed, cached at %s", steps, path)
        except OSError as exc:
            log.warning("inversion cache not written (%s)", exc)
    else:
        log.info("inversion: %d steps computed (cache off)", steps)
    return Trajectory(latents, steps)

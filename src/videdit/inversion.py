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

CACHE_VERSION = 2  # 2: the key covers the scheduler config, prompt embedding and control maps


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


def _tensor_digest(x: torch.Tensor | None) -> str | None:
    """sha256 of a tensor's values, dtype and shape (None for no tensor)."""
    if x is None:
        return None
    x = x.detach().cpu().contiguous()
    return hashlib.sha256(x.view(torch.uint8).numpy().tobytes() + f"{x.dtype}{tuple(x.shape)}".encode()).hexdigest()


def cache_key(frames: np.ndarray, model: DiffusionModel, prompt: str, steps: int, control: str,
              extra: dict | None = None, prompt_embedding: torch.Tensor | None = None,
              control_maps: torch.Tensor | None = None) -> str:
    """sha256 of everything the trajectory depends on: frame content, size and count; the weights
    (`DiffusionModel.identity`); the scheduler's class and whole config (spacing, betas, prediction
    type, ...); dtype; prompt and its embedding; steps; control name, maps and scale; and the
    method's attention settings (``extra``)."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(frames).tobytes())
    scheduler = dict(model.scheduler_config)
    meta = dict(v=CACHE_VERSION, shape=list(frames.shape), model=model.identity, prompt=prompt, steps=steps,
                control=control, dtype=str(model.dtype), extra=extra or {},
                scheduler=dict(scheduler, _inverse_class="DDIMInverseScheduler"),
                prompt_embedding=_tensor_digest(prompt_embedding), control_maps=_tensor_digest(control_maps))
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    return h.hexdigest()[:32]


def _load(path: Path) -> torch.Tensor | None:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))["latents"].clone()  # own, aligned memory: not a view of the file
    except Exception:  # a cache file cut short or from another version: recompute
        return None


def _save(path: Path, latents: torch.Tensor) -> None:
    """Write under a temporary name, then rename: a reader never sees half a file, and a failed write
    leaves nothing behind."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}")
    try:
        save_file({"latents": latents.contiguous().cpu()}, str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


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
                        dict(extra_key or {}, control_scale=control_scale), source_emb, control)
        path = cache_dir() / "inversion" / f"{key}.safetensors"
        try:
            found = path.is_file()
        except OSError as exc:  # a cache folder we may not look into: work without the cache
            log.warning("inversion cache not used: %s cannot be read (%s)", path.parent,
                        exc.strerror or type(exc).__name__)
            found, path = False, None
        if found:
            latents = _load(path)
            if latents is not None and latents.shape[0] == steps + 1 and latents.shape[1:] == z0.shape:
                log.info("inversion: loaded from cache %s (skipped %d inversion steps)", path, steps)
                return Trajectory(latents.to(model.device, model.dtype), steps, from_cache=True)
    latents = invert(model, z0, source_emb, steps, control, control_scale, progress, noise_fn=noise_fn)
    if path is not None:
        try:
            _save(path, latents)
            log.info("inversion: %d steps computed, cached at %s", steps, path)
        except Exception as exc:  # OSError, or safetensors' own error for a read-only or full disk
            reason = getattr(exc, "strerror", None) or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            log.warning("inversion cache not written to %s (%s); the edit goes on without it", path.parent, reason)
    else:
        log.info("inversion: %d steps computed (cache off)", steps)
    return Trajectory(latents, steps)

"""Method ``i2v``: edit the first frame with any image editor, let an image-to-video model re-create the clip.

After AnyV2V (TMLR 2024, arXiv 2403.14468, section 3), on I2VGen-XL (`videdit.i2v`):

1. First frame: the user's edited image (``--first-frame``), or an image editor's output
   (`videdit.editors`), resized to the working size: I*_1.
2. DDIM inversion of the source clip's latents z^src_0 under the *source* first frame I_1, the empty
   prompt and guidance 1, every latent kept (``--inversion-steps``, default 100; cached on disk):
   z^src_t for every timestep t of the inversion schedule.
3. Sampling (``--steps`` 50 DDIM steps, guidance w = 9), from z*_{t'} = z^src_{t'}, t' the timestep of
   step ``--start-step`` (default 0). One UNet call per step on a batch of three branches:

       source:   (z^src_t, empty prompt, I_1)         -> its features are injected, its output unused
       negative: (z*_t,   negative prompt, I*_1 with a zero CLIP image embedding)
       positive: (z*_t,   target prompt,   I*_1)
       v_hat = v_neg + w (v_pos - v_neg);   z*_{t-1} = DDIM step of z*_t with v_hat (v-prediction)

   While t is among the first tau * N timesteps, the source branch's residual feature
   (tau_conv = 0.2), spatial self-attention queries/keys (tau_sa = 0.2) and temporal attention
   queries/keys (tau_ta = 0.5) replace the editing branches' (`videdit.attention.branch_injection`).
   The injected layers keep the source's structure and motion; the edited first frame, through the
   image conditions, sets the appearance.
4. Long clips: the inverted latent simply has more frames (``--long-clip direct``, which the
   authors ran up to about 128 frames), or the clip is cut into chunks of ``--chunk-frames`` that
   overlap by ``--chunk-overlap`` frames, each chunk's first frame taken from the previous chunk's
   output and the overlaps cross-faded (``chunked``).

The reconstruction (sampling from z^src_{t'} in the source branch's conditions alone, guidance 1)
shows how faithful the inversion is.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..attention.branch_injection import (I2VGEN_XL_RESNETS, I2VGEN_XL_SPATIAL, I2VGEN_XL_TEMPORAL,
                                          BranchInjectionState, injection_timesteps)
from ..attention.injection import feature_injection
from ..config import EditOptions
from ..diffusion import ddim_loop, make_scheduler, vae_decode, vae_encode
from ..editors import edit_first_frame
from ..errors import UserError
from ..i2v import Condition, condition, encode_prompt, is_i2v, predict, timestep_index
from ..inversion import invert_cached
from ..models import DiffusionModel
from ..prompts import EditPlan
from . import MethodResult

log = logging.getLogger("videdit")

DIRECT_MAX_FRAMES = 128  # --long-clip auto: one latent up to this many frames (the paper's A6000 limit)


@dataclass(frozen=True)
class Injection:
    """Which layers inject, and for what fraction of the sampling steps each kind does."""

    tau_conv: float = 0.2
    tau_sa: float = 0.2
    tau_ta: float = 0.5
    resnets: tuple[str, ...] = I2VGEN_XL_RESNETS
    spatial: tuple[str, ...] = I2VGEN_XL_SPATIAL
    temporal: tuple[str, ...] = I2VGEN_XL_TEMPORAL

    def state(self, timesteps) -> BranchInjectionState:
        return BranchInjectionState(at=dict(conv=injection_timesteps(timesteps, self.tau_conv),
                                            spatial=injection_timesteps(timesteps, self.tau_sa),
                                            temporal=injection_timesteps(timesteps, self.tau_ta)))


def invert_source(model: DiffusionModel, frames: np.ndarray, z0: torch.Tensor, src: Condition, opts: EditOptions):
    """Step 2: the inversion trajectory of the source latents z0 (F, C, h, w) under the source branch's
    condition, guidance 1; the trajectory's latents[j + 1] lies at noise level ``timesteps[j]``."""

    def v(x, t, i):
        return predict(model, x[None], t, src)[0]

    key = dict(method="i2v", fps=opts.fps_condition, condition="source first frame, empty prompt, guidance 1")
    traj = invert_cached(model, frames, z0, "", None, opts.inversion_steps, "none", None, use_cache=not opts.no_cache,
                         progress=opts.progress, noise_fn=v, extra_key=key)
    return traj, make_scheduler(model, opts.inversion_steps, inverse=True).timesteps


def source_latents(traj, inv_timesteps) -> Callable[[torch.Tensor], torch.Tensor]:
    """t -> z^src_t: the inverted latent at the noise level of sampling timestep t (the nearest one kept)."""
    return lambda t: traj.latents[timestep_index(inv_timesteps, int(t)) + 1]


def reconstruct(model: DiffusionModel, source_at, src: Condition, steps: int, start_step: int = 0,
                progress: bool = False) -> torch.Tensor:
    """DDIM sampling (the last ``steps - start_step`` of ``steps``) from z^src_{t'} in the source branch's
    conditions, guidance 1: it returns z^src_0 where the inversion is exact."""
    scheduler = make_scheduler(model, steps)
    timesteps = scheduler.timesteps[start_step:]
    return ddim_loop(lambda x, t, i: predict(model, x[None], t, src)[0], source_at(timesteps[0]), scheduler,
                     timesteps, desc="reconstruction", progress=progress)


def propagate(model: DiffusionModel, frames: np.ndarray, first: np.ndarray, opts: EditOptions, plan: EditPlan,
              injection: Injection) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
    """Steps 2-3 on one clip (or chunk): edited latents (F, C, h, w), the reconstruction's, and timings."""
    F, fps = len(frames), opts.fps_condition
    src = condition(model, "", frames[0], F, fps)
    pos = condition(model, plan.target_prompt, first, F, fps)
    # the negative branch: its own prompt, the unconditional (zero) image embedding, the same first-frame latent
    neg = dataclasses.replace(pos, text=encode_prompt(model, [opts.negative_prompt]),
                              image_embedding=torch.zeros_like(pos.image_embedding))
    branches = Condition.cat([src, neg, pos])
    z0 = vae_encode(model, frames, opts.vae_chunk)
    t0 = time.perf_counter()
    traj, inv_timesteps = invert_source(model, frames, z0, src, opts)
    info = dict(inversion_s=time.perf_counter() - t0, inversion_cached=traj.from_cache)

    source_at = source_latents(traj, inv_timesteps)
    scheduler = make_scheduler(model, opts.steps)
    timesteps = scheduler.timesteps[opts.start_step:]
    missing = sorted({int(t) for t in timesteps} - {int(t) for t in inv_timesteps})
    if missing:
        log.warning("i2v: %d sampling timesteps are not inversion timesteps (--inversion-steps %d, --steps %d): "
                    "the nearest inverted latents stand in", len(missing), opts.inversion_steps, opts.steps)
    w = opts.guidance

    def v_hat(x, t, i):
        batch = torch.stack([source_at(t), x, x])
        _, v_neg, v_pos = predict(model, batch, t, branches)
        return v_neg + w * (v_pos - v_neg) if w > 1 else v_pos  # w <= 1: no guidance, as diffusers' pipelines

    state = injection.state(scheduler.timesteps)
    t0 = time.perf_counter()
    with feature_injection(model.unet, state, injection.resnets, (*injection.spatial, *injection.temporal)) as used:
        wanted = len(injection.resnets) + len(injection.spatial) + len(injection.temporal)
        if len(used["resnets"]) + len(used["attentions"]) < wanted:
            log.warning("i2v: this UNet has only %d of the %d layers AnyV2V injects into (%s)",
                        len(used["resnets"]) + len(used["attentions"]), wanted, ", ".join(used["attentions"]))
        edited = ddim_loop(v_hat, source_at(timesteps[0]), scheduler, timesteps, desc="editing",
                           progress=opts.progress)
    info.update(editing_s=time.perf_counter() - t0, injected_layers=len(used["resnets"]) + len(used["attentions"]),
                injection_steps={k: len(v) for k, v in state.at.items()})
    recon = None
    if opts.reconstruction:
        recon = reconstruct(model, source_at, src, opts.steps, opts.start_step, opts.progress)
    return edited, recon, info


def chunk_starts(num_frames: int, length: int, overlap: int) -> list[int]:
    """Starts of chunks of ``length`` frames, consecutive ones sharing ``overlap``; the last ends at the clip's end."""
    starts = list(range(0, max(num_frames - length, 0) + 1, length - overlap))
    if starts[-1] + length < num_frames:
        starts.append(num_frames - length)
    return starts


def blend_into(out: np.ndarray, written: int, start: int, chunk: np.ndarray) -> int:
    """Write ``chunk`` at ``start``; frames already written (start ... written - 1) are cross-faded
    linearly from the earlier chunk to this one. Returns the new end of the written frames."""
    n = written - start
    if n > 0:
        a = (np.arange(1, n + 1, dtype=np.float32) / (n + 1))[:, None, None, None]
        out[start:written] = np.round((1 - a) * out[start:written] + a * chunk[:n]).astype(np.uint8)
    out[max(written, start):start + len(chunk)] = chunk[max(n, 0):]
    return start + len(chunk)


def run(model: DiffusionModel, frames: np.ndarray, opts: EditOptions, plan: EditPlan) -> MethodResult:
    if not is_i2v(model):
        raise UserError("method i2v needs an image-to-video model (I2VGen-XL class): use --model i2vgen-xl")
    first, origin = edit_first_frame(frames[0], opts)  # step 1
    injection = Injection(opts.tau_conv, opts.tau_sa, opts.tau_ta)
    F = len(frames)
    mode = opts.long_clip
    if mode == "auto":
        mode = "direct" if F <= DIRECT_MAX_FRAMES else "chunked"
    if mode == "direct" or F <= opts.chunk_frames:
        edited, recon, info = propagate(model, frames, first, opts, plan, injection)
        out = vae_decode(model, edited, opts.vae_chunk)
        recon_frames = None if recon is None else vae_decode(model, recon, opts.vae_chunk)
        info.update(long_clip="direct", chunks=1)
    else:
        out = np.zeros_like(frames)
        recon_frames = np.zeros_like(frames) if opts.reconstruction else None
        written = recon_written = 0
        info = dict(long_clip="chunked", chunks=0, inversion_s=0.0, editing_s=0.0)
        starts = chunk_starts(F, opts.chunk_frames, opts.chunk_overlap)
        chunk_first = first
        for c, s in enumerate(starts):
            e = s + opts.chunk_frames
            edited, recon, part = propagate(model, frames[s:e], chunk_first, opts, plan, injection)
            written = blend_into(out, written, s, vae_decode(model, edited, opts.vae_chunk))
            if recon is not None:
                recon_written = blend_into(recon_frames, recon_written, s, vae_decode(model, recon, opts.vae_chunk))
            if c + 1 < len(starts):  # the next chunk starts from this chunk's output frame
                chunk_first = out[starts[c + 1]]
            info.update(chunks=c + 1, inversion_s=info["inversion_s"] + part["inversion_s"],
                        editing_s=info["editing_s"] + part["editing_s"])
    info.update(first_frame=origin, start_step=opts.start_step, inversion_steps=opts.inversion_steps)
    extras = {"first_frame": first, **({"reconstruction": recon_frames} if recon_frames is not None else {})}
    return MethodResult(out, extras, info)

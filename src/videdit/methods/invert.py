"""Method ``invert``: DDIM-invert the clip, regenerate it under the target prompt.

1. Encode every frame with the VAE: z_0 (F, 4, H/8, W/8).
2. DDIM-invert z_0 under the source prompt with guidance 1 (`videdit.inversion`), keeping z_1 ... z_N.
3. Start from z_k, k = round(strength * N) steps from the end, and run the last k DDIM steps under
   the target prompt with classifier-free guidance.
Both passes use cross-frame self-attention (every frame's queries attend to the keys and values of
all frames, or of the first and previous frame: `videdit.attention.frames`), which ties the frames
together so that the edit is the same edit in every frame, and the same ControlNet maps.
The reconstruction (the same k steps under the source prompt) tells how faithful inversion is.

With ``--inject-steps N`` (plug-and-play, `videdit.attention.injection`): the inversion also keeps
the source's residual features and self-attention queries/keys at the first N editing timesteps,
and the edit uses them in place of its own at those timesteps. Inverted noise alone does not pin
the layout once the prompt changes (on ShapesWorld "a red circle" -> "a blue circle" drew the blue
circle elsewhere); the injected features do.

With ``--localize`` (an instruction such as "replace the car with a Porsche"), only the region the
source word finds in its cross-attention during inversion is edited (`run_localized`).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from ..attention.frames import cross_frame_attention
from ..attention.injection import plug_and_play
from ..config import EditOptions
from ..control import control_maps, maps_to_tensor
from ..diffusion import ddim_sample, encode_text, make_scheduler, vae_decode, vae_encode
from ..errors import UserError
from ..inversion import Trajectory, invert_cached, start_index
from ..models import DiffusionModel
from ..prompts import EditPlan
from . import MethodResult

log = logging.getLogger("videdit")


def run(model: DiffusionModel, frames: np.ndarray, opts: EditOptions, plan: EditPlan) -> MethodResult:
    if opts.localize:
        return run_localized(model, frames, opts, plan)
    F = len(frames)
    target, source, empty = (encode_text(model, [p]).expand(F, -1, -1)
                             for p in (plan.target_prompt, plan.source_prompt, ""))
    maps = control_maps(frames, opts.control, opts.allow_pickle)
    control = maps_to_tensor(maps, model.device, model.dtype) if maps is not None and model.controlnet is not None else None
    k = start_index(opts.strength, opts.steps)
    info = {"start_step": k}
    injecting = opts.inject_steps > 0 and k > 0
    editing_timesteps = make_scheduler(model, opts.steps).timesteps[opts.steps - k:] if k > 0 else []
    inject, injection = plug_and_play(model.unet, editing_timesteps, opts.inject_steps if injecting else 0)
    with cross_frame_attention(model.unet, F, opts.frame_attention, opts.attention_chunk), injection as injected:
        z0 = vae_encode(model, frames, opts.vae_chunk)
        inject.mode = "record" if injecting else "off"
        t0 = time.perf_counter()
        traj = invert_cached(model, frames, z0, plan.source_prompt, source, opts.steps, opts.control, control,
                             opts.control_scale, use_cache=not opts.no_cache and not injecting, progress=opts.progress,
                             extra_key={"frame_attention": opts.frame_attention})
        info.update(inversion_s=time.perf_counter() - t0, inversion_cached=traj.from_cache)
        inject.mode = "inject" if injecting else "off"  # only the kept timesteps have features to inject
        t0 = time.perf_counter()
        edited = ddim_sample(model, traj.start(k), k, opts.steps, target, empty, opts.guidance, control,
                             opts.control_scale, desc="editing", progress=opts.progress,
                             guidance_rescale=opts.guidance_rescale)
        info["editing_s"] = time.perf_counter() - t0
        inject.mode = "off"
        if injecting:
            info.update(injected_layers=injected, injected_features=len(inject.features),
                        injected_replacements=inject.replaced)
        recon = None
        if opts.reconstruction:
            recon = ddim_sample(model, traj.start(k), k, opts.steps, source, empty, opts.guidance, control,
                                opts.control_scale, desc="reconstruction", progress=opts.progress,
                                guidance_rescale=opts.guidance_rescale)
    extras = {}
    if recon is not None:
        extras["reconstruction"] = vae_decode(model, recon, opts.vae_chunk)
    if maps is not None:
        extras["control"] = maps
    return MethodResult(vae_decode(model, edited, opts.vae_chunk), extras, info)


def run_localized(model: DiffusionModel, frames: np.ndarray, opts: EditOptions, plan: EditPlan) -> MethodResult:
    """``--localize``: the same edit, only inside the region the instruction's source word finds.

    Inversion runs under processors that compute the same cross-frame attention and record the
    source word's cross-attention maps (`videdit.localize`); after every editing step the latents
    outside the found mask M are replaced by the source trajectory at that noise level,
    z <- M * z + (1 - M) * z_src(t), as grain keeps what no region names.
    """
    from ..attention.layout import CrossAttentionRecorder, LayoutState, layout_attention
    from ..inversion import invert
    from ..localize import describe_mask, load_maps, maps_cache_path, region_summary, require_instruction_region, save_maps
    from ..masks import paste_outside, resize_nearest
    from ..notices import say
    from .grain import attention_factor, mask_frames, masks_from_attention, token_spans

    region = require_instruction_region(plan, "--localize")
    if opts.inject_steps > 0:
        raise UserError("--localize does not combine with --inject-steps; use --method grain (which takes both) or "
                        "drop one")
    F, H, W = frames.shape[:3]
    target, source, empty = (encode_text(model, [p]).expand(F, -1, -1)
                             for p in (plan.target_prompt, plan.source_prompt, ""))
    maps = control_maps(frames, opts.control, opts.allow_pickle)
    control = maps_to_tensor(maps, model.device, model.dtype) if maps is not None and model.controlnet is not None else None
    k = start_index(opts.strength, opts.steps)
    a, b = token_spans(model.tokenizer, plan.source_prompt, [region.auto_word], [f"--localize {region.name!r}"])[0]
    latent_size = (-(-H // model.vae_scale), -(-W // model.vae_scale))
    groups, factor = {region.name: list(range(a, b))}, attention_factor(model.unet, latent_size)
    maps_path = None if opts.no_cache else maps_cache_path(frames, model, plan.source_prompt, opts.steps, opts.control,
                                                           opts.control_scale, opts.frame_attention, groups, factor)
    found = load_maps(maps_path, [region.name])
    state = LayoutState(F, latent_size, frame_mode=opts.frame_attention, chunk_size=opts.attention_chunk)
    info = {"start_step": k}
    with layout_attention(model.unet, state):  # no masks: plain cross-frame attention, maps recorded
        z0 = vae_encode(model, frames, opts.vae_chunk)
        t0 = time.perf_counter()
        if found is None:
            state.recorder = CrossAttentionRecorder(groups, factor, branch=0)
            traj = Trajectory(invert(model, z0, source, opts.steps, control, opts.control_scale, opts.progress), opts.steps)
            found = state.recorder.maps()
            state.recorder = None
            save_maps(maps_path, found)
        else:
            traj = invert_cached(model, frames, z0, plan.source_prompt, source, opts.steps, opts.control, control,
                                 opts.control_scale, use_cache=not opts.no_cache, progress=opts.progress,
                                 extra_key={"frame_attention": opts.frame_attention})
        info.update(inversion_s=time.perf_counter() - t0, inversion_cached=traj.from_cache)
        mask = masks_from_attention(found[region.name], (H, W), opts.auto_threshold)
        say(describe_mask(region.name, mask))
        info["found_regions"] = {region.name: region_summary(mask)}
        keep = torch.from_numpy(resize_nearest(mask, *latent_size)).to(model.device, model.dtype)[:, None]

        def blend(i, t, x):
            return keep * x + (1 - keep) * traj.at_sampling_step(i, k)

        t0 = time.perf_counter()
        edited = ddim_sample(model, traj.start(k), k, opts.steps, target, empty, opts.guidance, control,
                             opts.control_scale, desc="editing", progress=opts.progress, callback=blend)
        info["editing_s"] = time.perf_counter() - t0
        recon = None
        if opts.reconstruction:
            recon = ddim_sample(model, traj.start(k), k, opts.steps, source, empty, opts.guidance, control,
                                opts.control_scale, desc="reconstruction", progress=opts.progress)
    extras = {f"mask_{region.name}": mask_frames(mask)}
    if recon is not None:
        extras["reconstruction"] = vae_decode(model, recon, opts.vae_chunk)
    if maps is not None:
        extras["control"] = maps
    out = vae_decode(model, edited, opts.vae_chunk)
    if opts.paste_feather >= 0:
        out = paste_outside(out, frames, mask, opts.paste_feather)
    return MethodResult(out, extras, info)

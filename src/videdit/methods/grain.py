"""Method ``grain``: multi-grained editing with per-region prompts and ST-Layout attention.

After "VideoGrain: Modulating Space-Time Attention for Multi-Grained Video Editing" (ICLR 2025).
Class-level ("every car -> Porsche"), instance-level ("left man -> Spiderman, right man -> polar
bear") and part-level ("his shirt -> red") edits in one pass, without training:

1. Prompts (section 3.2). The global prompt holds each region's prompt as a token span
   ("Spiderman and Polar Bear on grass meadow": "Spiderman", "Polar Bear", "grass meadow"). Inside
   span i the global prompt's token embeddings are replaced by region i's prompt encoded alone,
   so each span says only what its region should show. A region prompt that is not a span is an error.
2. Masks. Per region from files, or ``auto:WORD``: the cross-attention maps of WORD in the source
   prompt, recorded during inversion, thresholded and cleaned. Without regions, an instruction
   ("replace the car with a Porsche") is one such region, car=auto:car:Porsche (`videdit.localize`). Pixels outside every mask form a
   background region (self-attention only), unless ``--no-layout-background``.
3. Inversion. DDIM inversion of the clip under the source prompt with cross-frame attention, as
   method ``invert`` does (and, with ``--inject-steps``, the plug-and-play features kept).
4. ST-Layout attention (section 3.3, `videdit.attention.layout`). In the first ``layout_steps`` of
   the editing steps, on the conditional half of guidance, cross-attention pulls region i's pixels
   to span i and pushes them from every other token, and self-attention over all frames pulls
   each pixel to its own region and pushes it from the others.
5. Latent blending. After every step from ``blend_from`` of the steps on, latents outside the union
   of the region masks are replaced with the source latents noised to that step, so what no region
   names stays exactly the source.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..attention.injection import plug_and_play
from ..attention.layout import CrossAttentionRecorder, LayoutState, layout_attention
from ..attention import parse_layer_name
from ..config import EditOptions
from ..control import control_maps, maps_to_tensor
from ..diffusion import ddim_loop, ddim_sample, encode_text, make_scheduler, predict_noise, vae_decode, vae_encode
from ..errors import UserError
from ..inversion import invert_cached, start_index
from ..masks import (Region, clean_mask, load_mask_source, overlay_masks, parse_region_arg, paste_outside,
                     regions_from_config, resize_nearest, validate_regions)
from ..localize import describe_mask, instruction_region, load_maps, maps_cache_path, region_summary, save_maps
from ..models import DiffusionModel
from ..notices import say
from ..prompts import EditPlan
from . import MethodResult

log = logging.getLogger("videdit")

BACKGROUND = "background"
AUTO_MASK_SIDE = 16  # automatic masks from the cross-attention maps nearest 16x16 (SD 1.5 at 512 px: factor 4)


# ---------------------------------------------------------------------------------------
# 1. Prompts

def as_regions(items) -> list[Region]:
    """Regions from `Region` objects, ``NAME=MASK:PROMPT`` strings or ``{name, mask, prompt}`` mappings."""
    regions = []
    for item in items or []:
        if isinstance(item, Region):
            regions.append(item)
        elif isinstance(item, str):
            regions.append(parse_region_arg(item))
        elif isinstance(item, dict):
            regions.extend(regions_from_config([item]))
        else:
            raise UserError(f"a region must be NAME=MASK:PROMPT or {{name, mask, prompt}}, got {item!r}")
    return validate_regions(regions)


def token_spans(tokenizer, prompt: str, phrases: list[str], what: list[str] | None = None) -> list[tuple[int, int]]:
    """[start, end) token positions (after the start token) of each phrase in ``prompt``, left to right.

    A phrase that is not a run of whole tokens of the prompt, or that falls past the tokenizer's
    length, is a UserError; repeated phrases take successive occurrences.
    """
    ids = tokenizer(prompt, add_special_tokens=False).input_ids
    limit = tokenizer.model_max_length - 2  # start and end tokens
    taken: set[int] = set()
    spans = []
    for n, phrase in enumerate(phrases):
        label = what[n] if what else f"{phrase!r}"
        sub = tokenizer(phrase, add_special_tokens=False).input_ids
        if not sub:
            raise UserError(f"{label}: the prompt {phrase!r} has no tokens")
        starts = [j for j in range(len(ids) - len(sub) + 1)
                  if ids[j:j + len(sub)] == sub and not taken & set(range(j, j + len(sub)))]
        if not starts:
            raise UserError(f"{label}: {phrase!r} is not part of the prompt {prompt!r}; "
                            "the prompt must contain each region's prompt word for word")
        j = starts[0]
        if j + len(sub) > limit:
            raise UserError(f"{label}: {phrase!r} falls past the {limit} tokens the text encoder reads; shorten the prompt")
        taken |= set(range(j, j + len(sub)))
        spans.append((1 + j, 1 + j + len(sub)))
    return spans


def region_embeddings(model: DiffusionModel, prompt: str, phrases: list[str], spans: list[tuple[int, int]]) -> torch.Tensor:
    """(1, L, D): the global prompt's embeddings with span i replaced by phrase i encoded alone."""
    emb = encode_text(model, [prompt]).clone()
    alone = encode_text(model, phrases)
    for i, (a, b) in enumerate(spans):
        emb[0, a:b] = alone[i, 1:1 + b - a]
    return emb


def token_region_ids(length: int, spans: list[tuple[int, int]]) -> torch.Tensor:
    """(L,) region index per token, -1 outside every span (start, end, padding, glue words)."""
    ids = torch.full((length,), -1, dtype=torch.long)
    for i, (a, b) in enumerate(spans):
        ids[a:b] = i
    return ids


# ---------------------------------------------------------------------------------------
# 2. Masks

def attention_factor(unet, latent_size: tuple[int, int] = (64, 64)) -> int:
    """The UNet level (2**n) whose cross-attention maps make automatic masks: the one whose maps are nearest
    16 positions on the long side of ``latent_size`` (SD 1.5 at 512 px: 4, the 16x16 layers; a 64-px
    ShapesWorld clip, latents 16x16: 1, where the 4x4 level would make a mask of a few coarse blocks)."""
    n = len(unet.config.down_block_types)
    factors = set()
    for name in unet.attn_processors:
        layer = parse_layer_name(name)
        if layer is None or layer.attn != "attn2" or layer.temporal:
            continue
        depth = {"down": layer.block, "mid": n - 1, "up": n - 1 - layer.block}[layer.kind]
        factors.add(2 ** depth)
    if not factors:
        raise UserError("this model has no cross-attention layers: automatic masks (auto:WORD) need them")
    target = max(max(latent_size) / AUTO_MASK_SIDE, 1.0)
    return min(factors, key=lambda f: (abs(math.log2(f) - math.log2(target)), f))


def masks_from_attention(maps: torch.Tensor, size: tuple[int, int], threshold: float) -> np.ndarray:
    """(F, h, w) averaged attention -> (F, H, W) bool: upsampled, normalised per frame, thresholded, opened."""
    up = F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    return clean_mask(up, threshold)


def mask_frames(mask: np.ndarray) -> np.ndarray:
    """(F, H, W) bool -> (F, H, W, 3) uint8, white inside."""
    return np.repeat((mask.astype(np.uint8) * 255)[..., None], 3, axis=-1)


def heatmap_frames(frames: np.ndarray, amap: torch.Tensor) -> np.ndarray:
    """An attention map (F, h, w) as a heat map over the frames (F, H, W, 3)."""
    import cv2

    H, W = frames.shape[1:3]
    up = F.interpolate(amap[:, None].float(), size=(H, W), mode="bilinear", align_corners=False)[:, 0].numpy()
    low, high = up.min(axis=(1, 2), keepdims=True), up.max(axis=(1, 2), keepdims=True)
    norm = ((up - low) / np.maximum(high - low, 1e-8) * 255).astype(np.uint8)
    heat = np.stack([cv2.cvtColor(cv2.applyColorMap(m, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB) for m in norm])
    return (0.5 * frames + 0.5 * heat).astype(np.uint8)


def _check(opts: EditOptions) -> tuple[int, ...]:
    for name in ("layout_steps", "blend_from"):
        if not 0.0 <= getattr(opts, name) <= 1.0:
            raise UserError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(opts, name)}")
    if not 0.0 < opts.auto_threshold < 1.0:
        raise UserError(f"--auto-threshold must be in (0, 1), got {opts.auto_threshold}")
    try:
        factors = tuple(int(f) for f in str(opts.layout_factors).split(",") if f.strip())
    except ValueError:
        factors = ()
    if not factors or any(f < 1 or f & (f - 1) for f in factors):
        raise UserError(f"--layout-factors must be powers of two separated by commas (e.g. 2,4,8), got {opts.layout_factors!r}")
    return factors


# ---------------------------------------------------------------------------------------
# The method

def run(model: DiffusionModel, frames: np.ndarray, opts: EditOptions, plan: EditPlan, regions=None,
        frame_indices: list[int] | None = None) -> MethodResult:
    factors = _check(opts)
    regions = as_regions(regions)
    if not regions:  # an instruction finds its own region (`videdit.localize`)
        if instruction_region(plan) is None:
            raise UserError("--method grain needs at least one region: --region NAME=MASK:PROMPT (or regions: in "
                            "--config), or an instruction naming what to change (\"replace the car with a Porsche\")")
        regions, found_by_instruction = [instruction_region(plan)], True
    else:
        found_by_instruction = False
    F_, H, W = frames.shape[:3]
    frame_indices = list(range(F_)) if frame_indices is None else list(frame_indices)
    tokenizer = model.tokenizer

    # 1. Prompts: region prompts are token spans of the global prompt; their embeddings replace the spans'.
    prompt = plan.target_prompt
    spans = token_spans(tokenizer, prompt, [r.prompt for r in regions], [f"region {r.name!r}" for r in regions])
    target = region_embeddings(model, prompt, [r.prompt for r in regions], spans).expand(F_, -1, -1)
    source, empty = (encode_text(model, [p]).expand(F_, -1, -1) for p in (plan.source_prompt, ""))
    token_ids = token_region_ids(target.shape[1], spans)

    # 2. Masks from files now (errors before any work); auto:WORD after inversion.
    masks: dict[str, np.ndarray | None] = {}
    auto_spans: dict[str, list[int]] = {}
    for r in regions:
        if r.auto_word is None:
            masks[r.name] = load_mask_source(r.mask, frame_indices, (W, H))
        else:
            what = f"region {r.name!r} (auto:{r.auto_word})"
            if not plan.source_prompt.strip():
                raise UserError(f"{what}: automatic masks need --source-prompt naming {r.auto_word!r}")
            a, b = token_spans(tokenizer, plan.source_prompt, [r.auto_word], [what])[0]
            auto_spans[r.name] = list(range(a, b))
            masks[r.name] = None

    maps = control_maps(frames, opts.control, opts.allow_pickle)
    control = maps_to_tensor(maps, model.device, model.dtype) if maps is not None and model.controlnet is not None else None
    k = start_index(opts.strength, opts.steps)
    latent_size = (math.ceil(H / model.vae_scale), math.ceil(W / model.vae_scale))
    layout = LayoutState(F_, latent_size, factors=factors, cross_strength=opts.layout_cross,
                         self_strength=opts.layout_self, self_branch=opts.layout_self_branch,
                         self_sigma=opts.layout_self_sigma, frame_mode=opts.frame_attention,
                         chunk_size=opts.attention_chunk)
    scheduler = make_scheduler(model, opts.steps)
    timesteps = scheduler.timesteps[opts.steps - k:] if k > 0 else scheduler.timesteps[:0]
    inject, injection = plug_and_play(model.unet, timesteps, opts.inject_steps)
    factor = attention_factor(model.unet, latent_size) if (auto_spans or opts.save_attention) else None
    info = {"start_step": k, "spans": {r.name: list(s) for r, s in zip(regions, spans)},
            "regions": [dict(name=r.name, mask=r.mask, prompt=r.prompt) for r in regions]}
    extras: dict[str, np.ndarray] = {}

    with layout_attention(model.unet, layout), injection as injected:
        # 3. Inversion (plain cross-frame attention: layout.timestep is None), recording what later steps need.
        z0 = vae_encode(model, frames, opts.vae_chunk)
        maps_path = None if not auto_spans or opts.no_cache else maps_cache_path(
            frames, model, plan.source_prompt, opts.steps, opts.control, opts.control_scale, opts.frame_attention,
            auto_spans, factor)
        found = load_maps(maps_path, list(auto_spans)) if auto_spans else None  # a re-edit reuses its regions
        recording = (bool(auto_spans) and found is None) or opts.inject_steps > 0
        layout.recorder = CrossAttentionRecorder(auto_spans, factor, branch=0) if auto_spans and found is None else None
        inject.mode = "record" if opts.inject_steps > 0 else "off"
        t0 = time.perf_counter()
        traj = invert_cached(model, frames, z0, plan.source_prompt, source, opts.steps, opts.control, control,
                             opts.control_scale, use_cache=not opts.no_cache and not recording, progress=opts.progress,
                             extra_key={"frame_attention": opts.frame_attention})
        info.update(inversion_s=time.perf_counter() - t0, inversion_cached=traj.from_cache)
        inject.mode = "off"
        info["injected_features"] = len(inject.features)  # (layer, q/k/conv2, timestep) kept for injection
        if auto_spans:
            if found is None:
                found = layout.recorder.maps()
                save_maps(maps_path, found)
            info["found_regions"] = {}
            for name, amap in found.items():
                masks[name] = masks_from_attention(amap, (H, W), opts.auto_threshold)
                extras[f"mask_{name}"] = mask_frames(masks[name])
                info["found_regions"][name] = region_summary(masks[name], frame_indices)
                say(describe_mask(name, masks[name], frame_indices))
                if not masks[name].any():
                    log.warning("automatic mask of region %r is empty: lower --auto-threshold", name)
        layout.recorder = None

        region_masks = [masks[r.name] for r in regions]
        union = np.logical_or.reduce(region_masks)
        cross_regions = [True] * len(regions)
        if opts.layout_background and not union.all():
            region_masks.append(~union)  # self-attention keeps the rest to itself
            cross_regions.append(False)
        layout.masks, layout.cross_regions, layout.token_ids = region_masks, cross_regions, token_ids
        info["mask_area"] = {r.name: float(m.mean()) for r, m in zip(regions, region_masks)}
        extras["masks_overlay"] = overlay_masks(frames, [masks[r.name] for r in regions],
                                                names=[f"{r.name}: {r.prompt}" for r in regions])

        # 4. ST-Layout attention in the first steps; 5. latent blending outside the union of masks.
        modulated_steps = int(round(opts.layout_steps * k))
        blend_start = int(round(opts.blend_from * k)) if not union.all() else k
        keep = torch.from_numpy(resize_nearest(union, *latent_size)).to(model.device, model.dtype)[:, None]
        if opts.save_attention:
            groups = {r.name: list(range(a, b)) for r, (a, b) in zip(regions, spans)}
            layout.recorder = CrossAttentionRecorder(groups, factor, branch=-1)

        def eps(x, t, i):
            layout.timestep = float(t) if i < modulated_steps else None
            inject.mode = "inject" if i < opts.inject_steps else "off"
            return predict_noise(model, x, t, target, empty, opts.guidance, control, opts.control_scale,
                                 guidance_rescale=opts.guidance_rescale)

        def blend(i, t, x):
            if i < blend_start:
                return None
            return keep * x + (1 - keep) * traj.at_sampling_step(i, k)

        t0 = time.perf_counter()
        edited = ddim_loop(eps, traj.start(k), scheduler, timesteps, desc="editing", progress=opts.progress,
                           callback=blend)
        info.update(editing_s=time.perf_counter() - t0, layout_steps=modulated_steps, blend_from_step=blend_start,
                    injected_layers=injected)
        layout.timestep, inject.mode = None, "off"
        if opts.save_attention:
            for name, amap in layout.recorder.maps().items():
                extras[f"attention_{name}"] = heatmap_frames(frames, amap)
            layout.recorder = None
        recon = None
        if opts.reconstruction:
            recon = ddim_sample(model, traj.start(k), k, opts.steps, source, empty, opts.guidance, control,
                                opts.control_scale, desc="reconstruction", progress=opts.progress,
                                guidance_rescale=opts.guidance_rescale)
    if recon is not None:
        extras["reconstruction"] = vae_decode(model, recon, opts.vae_chunk)
    if maps is not None:
        extras["control"] = maps
    out = vae_decode(model, edited, opts.vae_chunk)
    if found_by_instruction and opts.paste_feather >= 0:  # the edit only where the instruction's words are
        out = paste_outside(out, frames, union, opts.paste_feather)
    return MethodResult(out, extras, info)

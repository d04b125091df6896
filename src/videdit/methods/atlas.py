"""Method ``atlas``: edit the layered atlases of a clip, then re-render every frame from them.

After StableVideo (Chai et al., "StableVideo: Text-driven Consistency-aware Diffusion Video
Editing", ICCV 2023, sec. 3-4), with layers that need no per-video training (`videdit.atlas`):

1. Layers: a background atlas, a foreground atlas per foreground layer, per-frame uv maps and alpha
   (`--atlas-backend mosaic`, built in seconds and cached; or a Neural Layered Atlas checkpoint).
2. Background: the background atlas is edited once: by a file the user edited (``--bg-atlas``), by
   an image editor (``--bg-editor``, instruction ``--bg-prompt``), or by the model itself under
   ``--bg-prompt`` (an instruction editor from noise; a text-to-image model from the atlas noised to
   ``--strength``, under ControlNet maps of the atlas when ``--control`` is given). No
   ``--bg-prompt``: the background is kept.
3. Foreground keyframes (``--keyframes 20,40,60``, or ``auto``: greedily, the frames that together
   cover the foreground atlas): each keyframe is cropped around its mask (+ ``--fg-margin``) and
   edited under ``--prompt``. The first starts from noise (``--strength`` 1) or from the crop noised
   to ``--strength``; each next one starts from the edits so far carried through the atlas to its
   own uv, noised to ``--propagation-strength`` (0.8), and is denoised with its own image (the
   instruction editor's image condition, or ControlNet maps of its source crop). ``--keyframes none``
   keeps the foreground (a background-only edit).
4. Aggregation: each edited keyframe is splatted into the foreground atlas with bilinear weights;
   the edited atlas is the weighted mean of the keyframes at each texel; a texel no keyframe saw
   does not vote (StableVideo's released code takes a median in which unseen texels vote black);
   texels no keyframe saw take the nearest edited colour.
5. Render: out = alpha fg(uv_fg) + (1 - alpha) bg(uv_bg) for every frame (`videdit.atlas.render`);
   what no layer covers keeps the source. Only keyframes and the atlas go through the model, so
   the diffusion cost does not grow with the clip's length.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from ..atlas import Layers, render
from ..atlas.commands import layers_for_clip
from ..atlas.layers import check_atlas, sample
from ..atlas.mosaic import MosaicSettings, fill_unseen, splat
from ..config import EditOptions
from ..diffusion import ddim_sample, encode_text, make_scheduler, vae_decode, vae_encode
from ..errors import UserError
from ..models import DiffusionModel
from ..prompts import EditPlan
from . import MethodResult

log = logging.getLogger("videdit")

MAX_AUTO_KEYFRAMES = 8
AUTO_COVERAGE = 0.95


# ---------------------------------------------------------------------------------------
# Options (checked before any model loads)

def parse_keyframes(text: str) -> list[int] | None:
    """``auto`` -> None; ``none`` -> [] (the foreground is kept); ``20,40,60`` -> [20, 40, 60] (distinct,
    in the order given)."""
    text = str(text).strip()
    if text == "auto":
        return None
    if text == "none":
        return []
    try:
        keys = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--keyframes must be 'auto' or frame numbers like 0,20,40, got {text!r}") from None
    if not keys or len(set(keys)) != len(keys) or min(keys) < 0:
        raise UserError(f"--keyframes must list distinct frame numbers >= 0, got {text!r}")
    return keys


def validate_options(opts: EditOptions) -> None:
    parse_keyframes(opts.keyframes)
    if float(opts.propagation_strength) == 0.0:  # the range [0, 1] is checked with every option's
        raise UserError(f"--propagation-strength must be above 0, got {opts.propagation_strength}")
    if opts.atlas_backend not in ("mosaic", "nla"):
        raise UserError(f"--atlas-backend must be mosaic or nla, got {opts.atlas_backend!r}")
    if opts.atlas_backend == "nla" and not opts.atlas_checkpoint:
        raise UserError("--atlas-backend nla needs --atlas-checkpoint DIR")
    if opts.bg_atlas is not None and not Path(str(opts.bg_atlas)).is_file():
        raise UserError(f"background atlas not found: {opts.bg_atlas}")
    if opts.bg_atlas is not None and opts.bg_editor is not None:
        raise UserError("give either --bg-atlas or --bg-editor, not both")
    if opts.bg_editor is not None:
        from ..editors import check_editor_name

        check_editor_name(str(opts.bg_editor))
        if not (opts.bg_prompt or "").strip():
            raise UserError("--bg-editor needs --bg-prompt: the instruction for the background atlas")
    if opts.atlas_mask is not None and not Path(str(opts.atlas_mask)).exists():
        raise UserError(f"mask {opts.atlas_mask} does not exist")


# ---------------------------------------------------------------------------------------
# Image editing with the model: one image at a time, from noise or from a start image

def is_instruction_editor(model: DiffusionModel) -> bool:
    return model.unet.config.in_channels == 2 * model.latent_channels


def edit_image(model: DiffusionModel, image: np.ndarray, prompt: str, opts: EditOptions,
               start: np.ndarray | None = None, strength: float = 1.0, seed: int = 0) -> np.ndarray:
    """``image`` (H, W, 3) uint8, H and W multiples of 8, edited under ``prompt``; uint8.

    ``start`` None: from noise. Otherwise from ``start`` noised to ``strength`` (SDEdit, Meng et al.,
    ICLR 2022): an instruction editor (InstructPix2Pix) conditions on ``image`` and reads ``prompt``
    as the instruction; a text-to-image model follows ``prompt`` under ControlNet maps of ``image``
    when it has a ControlNet (``--control``), else under the start image alone.
    """
    opts = dataclasses.replace(opts, seed=seed, progress=False)
    if is_instruction_editor(model):
        return _edit_instruction(model, image, prompt, opts, start, strength)
    return _edit_text(model, image, prompt, opts, start, strength)


def _edit_instruction(model, image, instruction, opts, start, strength) -> np.ndarray:
    from .anchor import AnchorEditor, sample_euler_ancestral

    editor = AnchorEditor(model, image[None], instruction, dataclasses.replace(opts, anchors=1))
    steps = len(editor.sigmas) - 1
    first = 0 if start is None else steps - max(1, int(round(strength * steps)))
    noise = editor.noise([0])
    sigma = float(editor.sigmas[first])
    if start is None:
        x = sigma * noise[0]
    else:
        x = vae_encode(model, start[None]).float() + sigma * noise[first]

    def denoise(x, i):
        return editor.predict_x0(x, first + i, [0], record=False)

    z = sample_euler_ancestral(denoise, x, editor.sigmas[first:], noise[first + 1:])
    return vae_decode(model, z.to(model.dtype))[0]


def _edit_text(model, image, prompt, opts, start, strength) -> np.ndarray:
    from ..control import control_maps, maps_to_tensor

    maps = control_maps(image[None], opts.control, opts.allow_pickle) if model.controlnet is not None else None
    control = maps_to_tensor(maps, model.device, model.dtype) if maps is not None else None
    cond, uncond = encode_text(model, [prompt]), encode_text(model, [""])
    steps = opts.steps
    g = torch.Generator().manual_seed(opts.seed)
    h, w = image.shape[0] // model.vae_scale, image.shape[1] // model.vae_scale
    noise = torch.randn((1, model.latent_channels, h, w), generator=g).to(model.device, model.dtype)
    if start is None:
        k = steps
        scheduler = make_scheduler(model, steps)
        x = noise * scheduler.init_noise_sigma
    else:
        k = max(1, int(round(strength * steps)))
        scheduler = make_scheduler(model, steps)
        x = scheduler.add_noise(vae_encode(model, start[None]), noise, scheduler.timesteps[steps - k:steps - k + 1])
    z = ddim_sample(model, x, k, steps, cond, uncond, opts.guidance, control, opts.control_scale, progress=False)
    return vae_decode(model, z)[0]


def edit_at_multiple_of_8(edit, image: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """``edit(image, start)`` run on copies resized to multiples of 8, its result resized back."""
    h, w = image.shape[:2]
    size = (max(8, int(round(w / 8)) * 8), max(8, int(round(h / 8)) * 8))

    def fit(a):
        return a if a is None or (a.shape[1], a.shape[0]) == size else cv2.resize(a, size, interpolation=cv2.INTER_AREA)

    out = edit(fit(image), fit(start))
    return out if out.shape[:2] == (h, w) else cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA)


# ---------------------------------------------------------------------------------------
# Background atlas

def edit_background(model: DiffusionModel, layers: Layers, opts: EditOptions) -> tuple[np.ndarray | None, str]:
    """The edited background atlas (None: kept) and where it came from."""
    atlas = layers.background.atlas
    if opts.bg_atlas:
        from ..video import read_image

        edited = read_image(opts.bg_atlas)
        check_atlas(edited, layers.background, f"background atlas {opts.bg_atlas}")
        return edited, f"file {opts.bg_atlas}"
    prompt = (opts.bg_prompt or "").strip()
    if not prompt:
        return None, "kept"
    if opts.bg_editor:
        from PIL import Image

        from ..editors import fit, make_editor

        editor = make_editor(opts.bg_editor, prompt, opts)
        out = np.asarray(editor(Image.fromarray(atlas)).convert("RGB"))
        return fit(out, layers.background.atlas_size, f"from editor {opts.bg_editor!r}"), f"editor {opts.bg_editor}: {prompt}"
    start = None if is_instruction_editor(model) or opts.strength >= 1 else atlas
    edited = edit_at_multiple_of_8(lambda img, st: edit_image(model, img, prompt, opts, st, opts.strength, opts.seed),
                                   atlas, start)
    return edited, f"model {opts.model}: {prompt}"


# ---------------------------------------------------------------------------------------
# Foreground keyframes

def foreground_alpha(layers: Layers) -> np.ndarray:
    """(T, H, W) the union of the foreground layers' alpha (the largest at each pixel)."""
    return np.max(np.stack([f.alpha for f in layers.foregrounds]), axis=0)


def auto_keyframes(layers: Layers, limit: int = MAX_AUTO_KEYFRAMES, coverage: float = AUTO_COVERAGE) -> list[int]:
    """Frames that together cover the foreground atlases, greedily (each next keyframe adds the most
    texels not yet covered, on a 4-texel grid), until ``coverage`` of them or ``limit`` frames."""
    T = layers.frames
    covers = []
    for t in range(T):
        cells = set()
        for i, layer in enumerate(layers.foregrounds):
            uv = layer.uv[t][layer.alpha[t] > 0.5]
            cells |= {(i, int(u), int(v)) for u, v in np.unique(np.floor(uv / 4).astype(int), axis=0)}
        covers.append(cells)
    everything = set().union(*covers)
    chosen, covered = [], set()
    while everything and len(chosen) < limit and len(covered) < coverage * len(everything):
        t = max(range(T), key=lambda f: (len(covers[f] - covered), -f))
        if not covers[t] - covered:
            break
        chosen.append(t)
        covered |= covers[t]
    if not chosen:
        raise UserError("no foreground found: the foreground layers are empty in every frame")
    return chosen


def crop_box(alpha: np.ndarray, margin: float, minimum: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): a square around alpha > 0.5 grown by ``margin`` of its side, at least ``minimum``
    pixels (within the frame; the whole frame when it is smaller)."""
    h, w = alpha.shape
    ys, xs = np.nonzero(alpha > 0.5)
    if not len(xs):
        return 0, 0, w, h
    cx, cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2
    side = max(xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()) * (1 + 2 * margin)
    side = int(min(max(side, minimum), w, h))
    x0 = int(np.clip(round(cx - side / 2), 0, w - side))
    y0 = int(np.clip(round(cy - side / 2), 0, h - side))
    return x0, y0, x0 + side, y0 + side


class ForegroundVotes:
    """Weighted sums of the edited keyframes per foreground atlas texel: sum w c and sum w."""

    def __init__(self, layers: Layers):
        self.layers = layers
        self.colour = [np.zeros((*f.atlas.shape[:2], 3), np.float64) for f in layers.foregrounds]
        self.weight = [np.zeros(f.atlas.shape[:2], np.float64) for f in layers.foregrounds]

    def add(self, t: int, edited_frame: np.ndarray) -> None:
        """Splat frame t's edited pixels inside each layer's alpha (> 0.5) at their uv."""
        for i, layer in enumerate(self.layers.foregrounds):
            mean, weight = splat(edited_frame.astype(np.float32), layer.uv[t], (layer.alpha[t] > 0.5).astype(np.float32),
                                 layer.atlas_size)
            self.colour[i] += mean * weight[..., None]
            self.weight[i] += weight

    def atlases(self) -> list[np.ndarray]:
        """The edited atlases: the weighted mean where some keyframe voted, the nearest voted colour
        elsewhere in the layer's atlas, and the unedited atlas where no keyframe voted at all."""
        out = []
        for layer, colour, weight in zip(self.layers.foregrounds, self.colour, self.weight):
            voted = weight > 1e-3
            if not voted.any():
                out.append(layer.atlas)
                continue
            mean = np.clip(np.rint(colour / np.maximum(weight, 1e-12)[..., None]), 0, 255).astype(np.uint8)
            mean[~voted] = layer.atlas[~voted]
            out.append(fill_unseen(mean, voted, np.zeros_like(voted)))
        return out

    def carried(self, t: int, source: np.ndarray) -> np.ndarray:
        """Frame t with the edits so far read through its uv where some keyframe voted; the source elsewhere."""
        out = source.astype(np.float32)
        atlases = self.atlases()
        for layer, atlas, weight in zip(self.layers.foregrounds, atlases, self.weight):
            voted = sample((weight > 1e-3).astype(np.float32)[..., None], layer.uv[t])
            a = layer.alpha[t] * (voted > 0.5)
            out = a[..., None] * sample(atlas, layer.uv[t]) + (1 - a[..., None]) * out
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def edit_keyframes(model: DiffusionModel, frames: np.ndarray, layers: Layers, keys: list[int], opts: EditOptions,
                   prompt: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The edited foreground atlases and the edited keyframes (full frames, for the run folder)."""
    alpha = foreground_alpha(layers)
    minimum = int(model.unet.config.sample_size) * model.vae_scale
    votes = ForegroundVotes(layers)
    edited_frames = []
    for j, t in enumerate(keys):
        x0, y0, x1, y1 = crop_box(alpha[t], opts.fg_margin, minimum)
        crop = frames[t, y0:y1, x0:x1]
        if j == 0:
            start = crop if opts.strength < 1 else None
            strength = opts.strength
        else:
            start = votes.carried(t, frames[t])[y0:y1, x0:x1]
            strength = opts.propagation_strength
        edited = edit_at_multiple_of_8(
            lambda img, st: edit_image(model, img, prompt, opts, st, strength, opts.seed + j), crop, start)
        frame = frames[t].copy()
        frame[y0:y1, x0:x1] = edited
        votes.add(t, frame)
        edited_frames.append(frame)
        log.info("atlas: keyframe %d (%d of %d) edited in a %dx%d crop", t, j + 1, len(keys), x1 - x0, y1 - y0)
    return votes.atlases(), edited_frames


# ---------------------------------------------------------------------------------------
# The method

def run(model: DiffusionModel, frames: np.ndarray, opts: EditOptions, plan: EditPlan,
        frame_indices: list[int] | None = None, fps: float = 8.0) -> MethodResult:
    T = len(frames)
    frame_indices = list(range(T)) if frame_indices is None else list(frame_indices)
    keys = parse_keyframes(opts.keyframes)
    if keys and max(keys) >= T:
        raise UserError(f"keyframe {max(keys)} is outside the clip (frames 0 to {T - 1})")
    t0 = time.perf_counter()
    layers = layers_for_clip(frames, fps, frame_indices, [opts.atlas_mask] if opts.atlas_mask else None,
                             opts.atlas_backend, opts.atlas_checkpoint, opts.allow_pickle,
                             MosaicSettings(keyframe_interval=opts.keyframe_interval), not opts.no_cache)
    info = dict(layers_s=time.perf_counter() - t0, layers_cached=bool(layers.info.get("from_cache")),
                atlas_backend=layers.backend, foreground_layers=len(layers.foregrounds))
    if not layers.foregrounds:
        raise UserError("no foreground found: every foreground mask is empty")
    t0 = time.perf_counter()
    bg_edited, bg_from = edit_background(model, layers, opts)
    info.update(background_s=time.perf_counter() - t0, background=bg_from)
    t0 = time.perf_counter()
    keys = keys if keys is not None else auto_keyframes(layers)
    prompt = opts.prompt.strip() if is_instruction_editor(model) else (plan.target_prompt or opts.prompt)
    fg_edited, keyframes = edit_keyframes(model, frames, layers, keys, opts, prompt) if keys else \
        ([f.atlas for f in layers.foregrounds], [])
    info.update(keyframes=keys, keyframes_s=time.perf_counter() - t0)
    t0 = time.perf_counter()
    out = render(layers, bg_atlas=bg_edited, fg_atlases=fg_edited, source=frames)
    info["render_s"] = time.perf_counter() - t0
    extras = {"atlas_reconstruction": render(layers, source=frames),
              "atlas_bg": layers.background.atlas, "atlas_bg_edited": layers.background.atlas if bg_edited is None else bg_edited}
    for i, (layer, edited) in enumerate(zip(layers.foregrounds, fg_edited)):
        suffix = "" if i == 0 else str(i + 1)
        extras[f"atlas_fg{suffix}"] = layer.atlas
        extras[f"atlas_fg{suffix}_edited"] = edited
    for t, frame in zip(keys, keyframes):
        extras[f"keyframe_{t:05d}_edited"] = frame
    return MethodResult(out, extras, info)

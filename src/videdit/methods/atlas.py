"""Method ``atlas``: edit the layered atlases of a clip, then re-render every frame from them.

After StableVideo (Chai et al., "StableVideo: Text-driven Consistency-aware Diffusion Video
Editing", ICCV 2023, sec. 3-4), with layers that need no per-video training (`videdit.atlas`):

1. Layers: a background atlas, a foreground atlas per foreground layer, per-frame uv maps and alpha
   (`--atlas-backend mosaic`, built in seconds and cached; or a Neural Layered Atlas checkpoint).
   One foreground layer per ``--atlas-mask`` (repeatable): a mask folder, video or image, or
   ``auto:WORD``, the cross-attention of WORD in the source prompt during a short inversion of the
   clip (`videdit.localize.word_masks`, as grain's ``auto:WORD`` regions). No mask: what moves.
2. Background: the background atlas is edited once: by a file the user edited (``--bg-atlas``), by
   an image editor (``--bg-editor``, instruction ``--bg-prompt``), or by the model itself under
   ``--bg-prompt`` (an instruction editor from noise; a text-to-image model from the atlas noised to
   ``--strength``, under ControlNet maps of the atlas when ``--control`` is given). No
   ``--bg-prompt``: the background is kept.
3. Foreground keyframes (``--keyframes 20,40,60``, or ``auto``: greedily, the frames that together
   cover the layer's atlas), for each foreground layer in turn: each keyframe is cropped around the
   layer's mask (+ ``--fg-margin``) and edited under the layer's ``--fg-prompt`` (default:
   ``--prompt``, StableVideo's one foreground prompt, for every layer). The first starts from noise
   (``--strength`` 1) or from the crop noised to ``--strength``; each next one starts from the edits
   so far carried through the atlas to its own uv, noised to ``--propagation-strength`` (0.8), and is
   denoised with its own image (the instruction editor's image condition, or ControlNet maps of its
   source crop). ``--keyframes none``
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
import re
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from ..atlas import Layers, render
from ..atlas.commands import layers_for_clip
from ..atlas.layers import MAPS_FILE, check_atlas, sample, save_npz
from ..atlas.mosaic import MosaicSettings, fill_unseen, splat
from ..config import EditOptions
from ..diffusion import ddim_sample, encode_text, make_scheduler, vae_decode, vae_encode
from ..errors import UserError
from ..masks import AUTO_PREFIX
from ..models import DiffusionModel
from ..prompts import EditPlan
from . import MethodResult

log = logging.getLogger("videdit")

MAX_AUTO_KEYFRAMES = 8
AUTO_MASK_STEPS = 10  # inversion steps whose cross-attention makes auto:WORD masks
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
    auto_mask_words(opts)  # each auto:WORD names a word, and no word twice
    if opts.atlas_backend == "nla" and mask_sources(opts):
        raise UserError("--atlas-mask is for the mosaic backend: an NLA checkpoint brings its own alpha")
    layers = max(len(mask_sources(opts)), 1)  # without masks: one layer, from motion
    if len(fg_prompts(opts)) > layers:
        raise UserError(f"{len(fg_prompts(opts))} --fg-prompt given for {layers} foreground layer(s) "
                        "(one per --atlas-mask)")
    for source in mask_sources(opts):
        if not source.startswith(AUTO_PREFIX) and not Path(source).exists():
            raise UserError(f"mask {source} does not exist")


def mask_sources(opts: EditOptions) -> list[str]:
    """The ``--atlas-mask`` values, one per foreground layer, in order (none: the foreground from motion)."""
    value = opts.atlas_mask
    if value is None:
        return []
    return [str(v).strip() for v in (value if isinstance(value, (list, tuple)) else [value])]


def fg_prompts(opts: EditOptions) -> list[str]:
    """The ``--fg-prompt`` values, one per foreground layer in the order of ``--atlas-mask``."""
    value = opts.fg_prompt
    if value is None:
        return []
    return [str(v).strip() for v in (value if isinstance(value, (list, tuple)) else [value])]


def auto_mask_words(opts: EditOptions) -> dict[str, str]:
    """name -> WORD of each ``auto:WORD`` mask (the name as mask_NAME.mp4 spells it)."""
    words: dict[str, str] = {}
    for source in mask_sources(opts):
        if not source.startswith(AUTO_PREFIX):
            continue
        word = source[len(AUTO_PREFIX):].strip()
        if not word:
            raise UserError(f"--atlas-mask {source}: auto: needs a word of the source prompt, e.g. auto:car")
        name = re.sub(r"[^\w.\-]+", "_", word).strip("_") or "region"
        if name in words:
            raise UserError(f"--atlas-mask {source} is given twice")
        words[name] = word
    return words


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

def auto_keyframes(layers: Layers, limit: int = MAX_AUTO_KEYFRAMES, coverage: float = AUTO_COVERAGE,
                   layer: int | None = None) -> list[int]:
    """Frames that together cover the foreground atlases (only foreground ``layer`` when given), greedily
    (each next keyframe adds the most texels not yet covered, on a 4-texel grid), until ``coverage`` of
    them or ``limit`` frames."""
    T = layers.frames
    which = range(len(layers.foregrounds)) if layer is None else [layer]
    covers = []
    for t in range(T):
        cells = set()
        for i in which:
            layer_i = layers.foregrounds[i]
            uv = layer_i.uv[t][layer_i.alpha[t] > 0.5]
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

    def add(self, t: int, edited_frame: np.ndarray, layer: int | None = None) -> None:
        """Splat frame t's edited pixels inside each layer's alpha (> 0.5) at their uv (only foreground
        ``layer``'s when given)."""
        for i, fg in enumerate(self.layers.foregrounds):
            if layer is not None and i != layer:
                continue
            mean, weight = splat(edited_frame.astype(np.float32), fg.uv[t], (fg.alpha[t] > 0.5).astype(np.float32),
                                 fg.atlas_size)
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


def layer_keyframes(layers: Layers, i: int, keys: list[int] | None) -> list[int]:
    """The keyframes of foreground layer i: ``auto_keyframes`` of that layer (``keys`` None), or those of
    ``keys`` in which the layer shows (alpha > 0.5 somewhere)."""
    if keys is None:
        return auto_keyframes(layers, layer=i)
    alpha = layers.foregrounds[i].alpha
    shown = [t for t in keys if (alpha[t] > 0.5).any()]
    if len(shown) < len(keys):
        log.warning("atlas: %s is not in keyframe(s) %s; they do not edit it", layers.foregrounds[i].name,
                    ", ".join(str(t) for t in keys if t not in shown))
    return shown


def layer_prompt(layer_name: str, i: int, prompts: list[str], default: str) -> str:
    """Foreground layer i's prompt: the ``--fg-prompt`` of its mask (the mosaic names layer k of several
    masks foregroundk, and drops an empty mask's layer), else ``default``."""
    number = re.fullmatch(r"foreground(\d+)", layer_name)
    k = int(number.group(1)) - 1 if number else i
    return prompts[k] if k < len(prompts) and prompts[k] else default


def edit_keyframes(model: DiffusionModel, frames: np.ndarray, layers: Layers, keys: list[int] | None,
                   opts: EditOptions, prompt: str) -> tuple[list[np.ndarray], dict[str, list[int]], dict[str, np.ndarray]]:
    """Each foreground layer's keyframes edited in turn (``keys`` None: chosen per layer) under its prompt
    (``--fg-prompt``, else ``prompt``), then aggregated.

    Returns the edited foreground atlases, the keyframes per layer, and the edited keyframes (full
    frames, for the run folder: keyframe_00020_edited, keyframe_00020_fg2_edited, ...)."""
    minimum = int(model.unet.config.sample_size) * model.vae_scale
    votes = ForegroundVotes(layers)
    chosen: dict[str, list[int]] = {}
    shown: dict[str, np.ndarray] = {}
    n = 0  # edits so far: each draws its own seed
    for i, layer in enumerate(layers.foregrounds):
        layer_keys = layer_keyframes(layers, i, keys)
        chosen[layer.name] = layer_keys
        text = layer_prompt(layer.name, i, fg_prompts(opts), prompt)
        if not layer_keys:
            log.warning("atlas: no keyframe shows %s; it is kept", layer.name)
        for j, t in enumerate(layer_keys):
            x0, y0, x1, y1 = crop_box(layer.alpha[t], opts.fg_margin, minimum)
            crop = frames[t, y0:y1, x0:x1]
            if j == 0:
                start = crop if opts.strength < 1 else None
                strength = opts.strength
            else:  # the edits so far carried through the atlas to this keyframe
                start = votes.carried(t, frames[t])[y0:y1, x0:x1]
                strength = opts.propagation_strength
            edited = edit_at_multiple_of_8(
                lambda img, st: edit_image(model, img, text, opts, st, strength, opts.seed + n), crop, start)
            n += 1
            frame = frames[t].copy()
            frame[y0:y1, x0:x1] = edited
            votes.add(t, frame, layer=i)
            shown[f"keyframe_{t:05d}_edited" if i == 0 else f"keyframe_{t:05d}_fg{i + 1}_edited"] = frame
            log.info("atlas: %s, keyframe %d (%d of %d) edited in a %dx%d crop", layer.name, t, j + 1,
                     len(layer_keys), x1 - x0, y1 - y0)
    return votes.atlases(), chosen, shown


# ---------------------------------------------------------------------------------------
# The method

def find_auto_masks(model: DiffusionModel, frames: np.ndarray, opts: EditOptions, source_prompt: str,
                    frame_indices: list[int]) -> dict[str, np.ndarray]:
    """name -> (T, H, W) bool of each ``--atlas-mask auto:WORD``: WORD's cross-attention during a short
    inversion of the clip under the source prompt (`videdit.localize.word_masks`), said on the terminal."""
    from ..localize import describe_mask, word_masks
    from ..notices import say

    words = auto_mask_words(opts)
    if not words:
        return {}
    found = word_masks(model, frames, source_prompt, words, min(opts.steps, AUTO_MASK_STEPS), opts.auto_threshold,
                       opts.frame_attention, opts.attention_chunk, not opts.no_cache, opts.progress, "--atlas-mask auto:")
    for name, mask in found.items():
        say(describe_mask(name, mask, frame_indices))
    return found


def run(model: DiffusionModel, frames: np.ndarray, opts: EditOptions, plan: EditPlan,
        frame_indices: list[int] | None = None, fps: float = 8.0) -> MethodResult:
    from ..localize import region_summary
    from ..methods.grain import mask_frames

    T = len(frames)
    frame_indices = list(range(T)) if frame_indices is None else list(frame_indices)
    keys = parse_keyframes(opts.keyframes)
    if keys and max(keys) >= T:
        raise UserError(f"keyframe {max(keys)} is outside the clip (frames 0 to {T - 1})")
    t0 = time.perf_counter()
    found = find_auto_masks(model, frames, opts, plan.source_prompt, frame_indices)
    info: dict = {"found_regions": {n: region_summary(m, frame_indices) for n, m in found.items()}} if found else {}
    if found:
        info["auto_masks_s"] = time.perf_counter() - t0
    names = iter(found)
    masks = [found[next(names)] if source.startswith(AUTO_PREFIX) else source for source in mask_sources(opts)]
    t0 = time.perf_counter()
    layers = layers_for_clip(frames, fps, frame_indices, masks or None, opts.atlas_backend, opts.atlas_checkpoint,
                             opts.allow_pickle, MosaicSettings(keyframe_interval=opts.keyframe_interval),
                             not opts.no_cache)
    info.update(layers_s=time.perf_counter() - t0, layers_cached=bool(layers.info.get("from_cache")),
                atlas_backend=layers.backend, foreground_layers=len(layers.foregrounds))
    if not layers.foregrounds:
        raise UserError("no foreground found: every foreground mask is empty")
    t0 = time.perf_counter()
    bg_edited, bg_from = edit_background(model, layers, opts)
    info.update(background_s=time.perf_counter() - t0, background=bg_from)
    t0 = time.perf_counter()
    prompt = opts.prompt.strip() if is_instruction_editor(model) else (plan.target_prompt or opts.prompt)
    if keys == []:  # --keyframes none: the foreground is kept
        fg_edited, chosen, keyframes = [f.atlas for f in layers.foregrounds], {}, {}
    else:
        fg_edited, chosen, keyframes = edit_keyframes(model, frames, layers, keys, opts, prompt)
    info.update(keyframes=chosen, keyframes_s=time.perf_counter() - t0)
    t0 = time.perf_counter()
    out = render(layers, bg_atlas=bg_edited, fg_atlases=fg_edited, source=frames)
    info["render_s"] = time.perf_counter() - t0
    extras = {f"mask_{name}": mask_frames(mask) for name, mask in found.items()}
    extras.update({"atlas_reconstruction": render(layers, source=frames), "atlas_bg": layers.background.atlas,
                   "atlas_bg_edited": layers.background.atlas if bg_edited is None else bg_edited})
    for i, (layer, edited) in enumerate(zip(layers.foregrounds, fg_edited)):
        suffix = "" if i == 0 else str(i + 1)
        extras[f"atlas_fg{suffix}"] = layer.atlas
        extras[f"atlas_fg{suffix}_edited"] = edited
    extras.update(keyframes)
    return MethodResult(out, extras, info, files={MAPS_FILE: lambda path: save_npz(layers, path)})

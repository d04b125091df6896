"""``videdit atlas CLIP -o DIR`` (build and write the layers) and ``videdit atlas render DIR
[--fg FG.png] [--bg BG.png] -o out.mp4`` (re-render from atlases edited in any paint program)."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from videdit.errors import UserError

from . import BACKENDS, MosaicSettings, build_layers, load_layers, read_alpha_masks, render, write_layers

log = logging.getLogger("videdit")


def add_atlas_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="video, folder of frames or image; or 'render' followed by a folder that "
                                      "'videdit atlas' wrote")
    parser.add_argument("folder", nargs="?", help="(render) the folder 'videdit atlas CLIP -o DIR' wrote")
    parser.add_argument("-o", "--output", required=True, help="the layers' folder; with render, the output video")
    parser.add_argument("--atlas-mask", action="append", metavar="MASK",
                        help="foreground masks: a folder of per-frame images numbered by frame, a video, one "
                             "image, or auto:WORD (WORD's cross-attention in --source-prompt, by --model); repeat "
                             "for more foreground layers (default: from motion)")
    parser.add_argument("--model", help="auto:WORD masks: the diffusion model whose cross-attention finds WORD "
                                        "(default: sd15)")
    parser.add_argument("--source-prompt", default="", help="auto:WORD masks: a description of the clip naming WORD")
    parser.add_argument("--auto-threshold", type=float, help="auto:WORD masks: threshold on the normalised attention "
                                                             "(default: videdit edit's --auto-threshold)")
    parser.add_argument("--device", help="auto:WORD masks: cuda, mps or cpu (default: the best available)")
    parser.add_argument("--atlas-backend", default="mosaic", choices=BACKENDS,
                        help="mosaic (built here, no training) or nla (a Neural Layered Atlas checkpoint)")
    parser.add_argument("--atlas-checkpoint", help="nla: folder with 'checkpoint' and 'config.json'")
    parser.add_argument("--allow-pickle", action="store_true", help="allow the NLA pickle checkpoint "
                                                                   "(unpickling runs code)")
    parser.add_argument("--keyframe-interval", type=int, default=MosaicSettings.keyframe_interval,
                        help=f"mosaic: frames between keyframes (default {MosaicSettings.keyframe_interval})")
    parser.add_argument("--size", type=int, default=512, help="long side of the working size (default 512)")
    parser.add_argument("--frames", type=int, help="number of frames (default all)")
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the layer cache")
    parser.add_argument("--fg", action="append", metavar="FG.png", help="(render) an edited foreground atlas; "
                        "repeat for further foreground layers, in order")
    parser.add_argument("--bg", metavar="BG.png", help="(render) an edited background atlas")
    parser.add_argument("--keep-working-size", action="store_true", help="(render) write at the layers' size, "
                        "not the source's")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")


def layers_for_clip(frames: np.ndarray, fps: float, frame_indices: list[int], masks: list | None,
                    backend: str = "mosaic", checkpoint: str | None = None, allow_pickle: bool = False,
                    settings: MosaicSettings | None = None, use_cache: bool = True):
    """Layers of working-size ``frames`` by ``backend``; the one place the CLI and method atlas build them."""
    size = (frames.shape[2], frames.shape[1])
    if backend == "nla":
        from .nla import build_nla

        if not checkpoint:
            raise UserError("--atlas-backend nla needs --atlas-checkpoint DIR (a folder with checkpoint and config.json)")
        return build_nla(checkpoint, len(frames), size, fps, allow_pickle)
    if backend != "mosaic":
        raise UserError(f"--atlas-backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    alpha_masks = read_alpha_masks(masks, frame_indices, size) if masks else None
    return build_layers(frames, alpha_masks, fps, settings, use_cache)


def make_atlas(args) -> Path:
    from videdit.fsutil import atomic_target, check_writable
    from videdit.video import read_clip, resize_frames, working_size, write_video

    out = check_writable(Path(args.output), args.overwrite)
    if args.keyframe_interval < 1:
        raise UserError(f"--keyframe-interval must be at least 1, got {args.keyframe_interval}")
    clip = read_clip(args.input, frames=args.frames, stride=args.stride, start=args.start)
    work = working_size(*clip.size, args.size)
    source = resize_frames(clip.frames, work)
    t0 = time.perf_counter()
    masks, found = auto_masks(args, source, list(clip.frame_indices)) if args.atlas_mask else (None, {})
    layers = layers_for_clip(source, clip.fps, list(clip.frame_indices), masks, args.atlas_backend,
                             args.atlas_checkpoint, args.allow_pickle,
                             MosaicSettings(keyframe_interval=args.keyframe_interval), not args.no_cache)
    layers.info.update(source_size=list(clip.size), build_s=round(time.perf_counter() - t0, 3),
                       frame_indices=[int(i) for i in clip.frame_indices])
    with atomic_target(out, args.overwrite) as tmp:
        write_layers(layers, tmp, source)
        for name, mask in found.items():
            write_video(tmp / f"mask_{name}.mp4", np.repeat(mask[..., None].astype(np.uint8) * 255, 3, -1), clip.fps)
    return out


def auto_masks(args, frames: np.ndarray, frame_indices: list[int]) -> tuple[list, dict[str, np.ndarray]]:
    """``--atlas-mask`` with each ``auto:WORD`` replaced by the mask that WORD's cross-attention finds
    during a short inversion by ``--model`` (as ``videdit edit --method atlas`` does), and those masks by name."""
    from videdit.masks import AUTO_PREFIX

    if not any(m.strip().startswith(AUTO_PREFIX) for m in args.atlas_mask):
        return args.atlas_mask, {}
    from videdit.api import get_model
    from videdit.config import make_options
    from videdit.methods.atlas import find_auto_masks, mask_sources
    from videdit.notices import terminal_handler

    source_prompt = (args.source_prompt or "").strip()
    opts, _ = make_options(dict(prompt=source_prompt or "-", source_prompt=source_prompt, method="atlas",
                                model=args.model, device=args.device, allow_pickle=args.allow_pickle,
                                auto_threshold=args.auto_threshold, atlas_mask=args.atlas_mask, no_cache=args.no_cache))
    handler = terminal_handler()  # the found regions are said on the terminal
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.INFO)
    try:
        found = find_auto_masks(get_model(opts), frames, opts, source_prompt, frame_indices)
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    names = iter(found)
    return [found[next(names)] if m.startswith(AUTO_PREFIX) else m for m in mask_sources(opts)], found


def read_atlas_image(path: str, what: str) -> np.ndarray:
    from videdit.video import read_image

    if not Path(path).is_file():
        raise UserError(f"{what} not found: {path}")
    return read_image(path)


def render_atlas(args) -> Path:
    from videdit.video import check_output_path, read_clip, resize_frames, write_video

    if not args.folder:
        raise UserError("videdit atlas render needs the layers' folder: videdit atlas render DIR -o out.mp4")
    check_output_path(Path(args.output), args.overwrite)
    layers = load_layers(args.folder)
    source = None
    if (Path(args.folder) / "source.mp4").is_file():  # what no layer covers keeps the source
        source = read_clip(Path(args.folder) / "source.mp4").frames
        source = source if source.shape[:3] == (layers.frames, layers.size[1], layers.size[0]) else None
    bg = read_atlas_image(args.bg, "background atlas") if args.bg else None
    fgs = [read_atlas_image(p, "foreground atlas") for p in args.fg or []]
    if len(fgs) > len(layers.foregrounds):
        raise UserError(f"{len(fgs)} --fg images given; the layers have {len(layers.foregrounds)} foreground layer(s)")
    frames = render(layers, bg_atlas=bg, fg_atlases=fgs or None, source=source)
    source_size = layers.info.get("source_size")
    if source_size and not args.keep_working_size and tuple(source_size) != layers.size:
        frames = resize_frames(frames, tuple(source_size))
    write_video(Path(args.output), frames, layers.fps, overwrite=args.overwrite)
    return Path(args.output)


def run_atlas_command(args) -> str:
    """The ``videdit atlas`` command; returns the line to print."""
    if args.input == "render" and args.folder:
        out = render_atlas(args)
        return f"wrote {out}"
    if args.folder:
        raise UserError(f"unexpected argument {args.folder!r}: use 'videdit atlas CLIP -o DIR' or "
                        "'videdit atlas render DIR -o out.mp4'")
    out = make_atlas(args)
    return (f"wrote {out}/ (atlas_bg.png, atlas_fg.png, atlas_fg_alpha.png, atlas_reconstruction.mp4, maps.npz; "
            "mask_WORD.mp4 for auto:WORD)")

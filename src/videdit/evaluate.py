"""`videdit eval`: load an edited video (and its source, prompts, mask), compute the metrics, report.

The maths lives in `videdit.metrics`; this module only reads files, aligns sizes and frame counts,
decides which metrics the inputs allow, and formats the answer as a table or JSON. Each value is
reported beside its variant (CLIP model, frame pairs, flow, scene detector), and a metric that
cannot be computed is reported with the reason instead of a value.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics as M
from .errors import UserError

LABELS = {
    "clip_t": "CLIP-T",
    "clip_f": "CLIP-F",
    "frame_accuracy": "Frame accuracy",
    "warp_error": "Warp error (edited)",
    "warp_error_source": "Warp error (source, floor)",
    "mawe": "MAWE",
    "scuts": "SCuts",
    "scuts_adaptive": "SCuts (adaptive, as StreamingT2V)",
    "psnr": "PSNR (whole frame)",
    "psnr_outside_mask": "PSNR (outside mask)",
    "ssim": "SSIM (whole frame)",
    "ssim_outside_mask": "SSIM (outside mask)",
}


def _read(video: Any, frames: int | None, what: str):
    """(frames, frame_indices, path) of a path, a `videdit.video.Clip` or a (T, H, W, 3) uint8 array."""
    if isinstance(video, np.ndarray):
        try:
            M.check_frames(video, what)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        video = video[:frames] if frames else video
        return video, list(range(len(video))), None
    if hasattr(video, "frames") and hasattr(video, "frame_indices"):
        kept = video.frames[:frames] if frames else video.frames
        return kept, list(video.frame_indices)[:len(kept)], video.path
    from .video import read_clip

    clip = read_clip(video, frames=frames)
    return clip.frames, list(clip.frame_indices), str(video)


def _size_for(frames: np.ndarray, size: int | None) -> tuple[int, int]:
    """(width, height) with the long side at ``size`` (aspect kept), or the frames' own size."""
    h, w = frames.shape[1:3]
    if not size or max(w, h) == size:
        return w, h
    if size < 16:
        raise UserError(f"--size must be at least 16, got {size}")
    scale = size / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _resize(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from .video import resize_frames

    return resize_frames(frames, size)


def _load_mask(mask: Any, frame_indices: list[int], size: tuple[int, int], count: int) -> np.ndarray:
    if isinstance(mask, np.ndarray):
        mask = mask.astype(bool)
        if mask.ndim == 2:
            mask = np.broadcast_to(mask, (count, *mask.shape))
        if mask.ndim != 3 or len(mask) < count:
            raise UserError(f"mask array must be (T, H, W) with at least {count} frames, got {mask.shape}")
        from .masks import resize_nearest

        return np.stack([resize_nearest(m, size[1], size[0]) for m in mask[:count]]).astype(bool)
    from .masks import load_mask_source

    return load_mask_source(mask, frame_indices, size)


def _clip_results(clip_model: Any, frames: np.ndarray, prompt: str | None, source_prompt: str | None,
                  pairs: str) -> dict[str, M.Result]:
    """CLIP-T, CLIP-F and frame accuracy, or the reason each is unavailable."""
    name = clip_model.name if isinstance(clip_model, M.Clip) else str(clip_model)
    needs_prompt = "needs --prompt"
    out = {
        "clip_t": M.unavailable(needs_prompt, model=name),
        "clip_f": M.unavailable("not computed", model=name, pairs=pairs),
        "frame_accuracy": M.unavailable("needs --prompt and --source-prompt", model=name),
    }
    if clip_model is None or str(clip_model).lower() == "none":
        return {k: M.unavailable("CLIP metrics not requested (--clip-model none)", **r.variant) for k, r in out.items()}
    try:
        clip = clip_model if isinstance(clip_model, M.Clip) else M.load_clip(str(clip_model))
    except M.ClipUnavailable as exc:
        return {k: M.unavailable(f"CLIP model unavailable: {exc}", **r.variant) for k, r in out.items()}
    images = M.image_embeddings(clip, frames)
    out["clip_f"] = M.clip_f(clip, frames, pairs, images=images)
    if prompt:
        out["clip_t"] = M.clip_t(clip, frames, prompt, images=images)
    if prompt and source_prompt:
        out["frame_accuracy"] = M.frame_accuracy(clip, frames, prompt, source_prompt, images=images)
    return out


def _check_choices(pairs: str, flow: str, detector: str) -> None:
    for value, allowed, flag in ((pairs, M.PAIRS, "--pairs"), (flow, M.FLOWS, "--flow"),
                                 (detector, M.DETECTORS, "--scene-detector")):
        if value not in allowed:
            raise UserError(f"{flag} must be one of {', '.join(allowed)}, got {value!r}")


def evaluate_video(edited: Any, source: Any = None, prompt: str | None = None, source_prompt: str | None = None,
                   mask: Any = None, clip_model: Any = M.DEFAULT_CLIP, pairs: str = "consecutive",
                   flow: str = "dis", frames: int | None = None, size: int | None = None,
                   detector: str = "content", min_scene_len: int = 15,
                   mawe_size: int | None = M.MAWE_SIZE) -> dict[str, Any]:
    """All metrics the inputs allow for ``edited``; a dict with the inputs and one entry per metric.

    ``edited`` and ``source`` are paths (video, frame folder, image), `videdit.video.Clip` objects
    or (T, H, W, 3) uint8 arrays; ``frames`` keeps the first N frames, ``size`` resizes the long
    side (faster; the source and mask follow the edited video's size). The source may be longer
    than the edited video (its first frames are used). ``mask`` (path or (T, H, W) bool array, True
    where the edit may change the picture) adds PSNR/SSIM outside it. ``clip_model`` is a name,
    folder, a loaded `videdit.metrics.Clip`, or None to skip CLIP metrics.
    """
    _check_choices(pairs, flow, detector)
    if source_prompt and not prompt:
        raise UserError("--source-prompt needs --prompt (frame accuracy compares the two)")
    if mask is not None and source is None:
        raise UserError("--mask needs --source (the mask selects where to compare with the source)")
    if min_scene_len < 1:
        raise UserError(f"--min-scene-len must be at least 1, got {min_scene_len}")
    if frames is not None and frames < 1:
        raise UserError(f"--frames must be at least 1, got {frames}")
    notes: list[str] = []  # what the reader should know about how the clips were compared
    edit, edit_indices, edit_path = _read(edited, frames, "edited")
    work = _size_for(edit, size)
    edit = _resize(edit, work)
    src = src_indices = src_path = None
    if source is not None:
        src, src_indices, src_path = _read(source, frames, "source")
        if len(src) < len(edit):
            raise UserError(f"the source has {len(src)} frames, fewer than the {len(edit)} of the edited video")
        if len(src) > len(edit):
            notes.append(f"the source has {len(src)} frames and the edited video {len(edit)}: the source's first "
                         f"{len(edit)} are compared")
        src, src_indices = _resize(src[:len(edit)], work), src_indices[:len(edit)]
    keep = None
    if mask is not None:
        keep = ~_load_mask(mask, src_indices, work, len(edit))

    results: dict[str, M.Result] = _clip_results(clip_model, edit, prompt, source_prompt, pairs)
    flows = M.video_flows(src if src is not None else edit, flow) if len(edit) > 1 else []
    if len(edit) > 1:
        results["warp_error"] = M.warp_error(edit, flows, "source" if src is not None else "edited (no --source)")
    else:
        results["warp_error"] = M.unavailable("needs at least 2 frames", flow=flow)
    if src is not None and len(edit) > 1:
        results["warp_error_source"] = M.warp_error(src, flows, "source")
    else:
        results["warp_error_source"] = M.unavailable("needs --source" if src is None else "needs at least 2 frames",
                                                     flow=flow)
    results["mawe"] = M.mawe(edit, size=mawe_size)
    results["scuts"] = M.scene_cuts(edit, detector, min_scene_len=min_scene_len)
    results["scuts_adaptive"] = M.scene_cuts(edit, "adaptive", min_scene_len=min_scene_len)  # the paper's SCuts
    for name, fn in (("psnr", M.psnr), ("ssim", M.ssim)):
        if src is None:
            results[name] = M.unavailable("needs --source")
            results[f"{name}_outside_mask"] = M.unavailable("needs --source and --mask")
            continue
        results[name] = fn(edit, src)
        results[f"{name}_outside_mask"] = fn(edit, src, keep) if keep is not None else M.unavailable("needs --mask")
    return {
        "edited": edit_path,
        "source": src_path,
        "frames": len(edit),
        "size": list(work),
        "prompt": prompt,
        "source_prompt": source_prompt,
        "metrics": {name: results[name].to_dict() for name in LABELS},
        "notes": notes,
    }


def _finite(value: Any) -> Any:
    """JSON has no inf/nan: write them as the strings "inf", "-inf", "nan"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def to_json(result: dict[str, Any], details: bool = True) -> str:
    """The result as JSON; per-frame details dropped unless ``details``."""
    if not details:
        result = {**result, "metrics": {k: {kk: vv for kk, vv in v.items() if kk != "detail"}
                                        for k, v in result["metrics"].items()}}
    return json.dumps(_finite(result), indent=2)


def _format_value(name: str, value: float) -> str:
    if math.isnan(value):
        return "nan"
    if name.startswith("psnr"):
        return "inf dB" if math.isinf(value) else f"{value:.2f} dB"
    if name.startswith("scuts"):
        return str(int(value))
    if name == "clip_t":
        return f"{value:.2f}"
    if math.isinf(value):
        return "inf"
    return f"{value:.4f}" if abs(value) >= 0.01 or value == 0 else f"{value:.3e}"


def _format_variant(variant: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in variant.items() if k not in ("prompt", "source_prompt"))


def format_table(result: dict[str, Any]) -> str:
    """A terminal table: metric, value (or why it is unavailable), variant."""
    head = [f"edited: {result['edited'] or '(array)'}  frames: {result['frames']}  "
            f"size: {result['size'][0]}x{result['size'][1]}"]
    if result.get("source") is not None:
        head.append(f"source: {result['source']}")
    if result.get("prompt"):
        head.append(f"prompt: {result['prompt']!r}" + (f"  source prompt: {result['source_prompt']!r}"
                                                        if result.get("source_prompt") else ""))
    rows = []
    for name, entry in result["metrics"].items():
        value = entry["value"]
        shown = _format_value(name, value) if value is not None else "-"
        note = _format_variant(entry["variant"])
        if entry.get("unavailable"):
            note = f"unavailable: {entry['unavailable']}"
        rows.append((LABELS.get(name, name), shown, note))
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    lines = head + [""] + [f"{'metric':<{width}}  {'value':>{vwidth}}  variant"]
    lines += [f"{label:<{width}}  {shown:>{vwidth}}  {note}" for label, shown, note in rows]
    return "\n".join(lines)


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `videdit eval`."""
    parser.add_argument("edited", help="edited video (file, frame folder or image)")
    parser.add_argument("--source", help="the source video it was edited from (flow for warp error, PSNR/SSIM)")
    parser.add_argument("--prompt", help="target prompt (CLIP-T; with --source-prompt, frame accuracy)")
    parser.add_argument("--source-prompt", help="prompt describing the source (frame accuracy)")
    parser.add_argument("--mask", help="where the edit may change the picture (folder, video or image); "
                                       "adds PSNR/SSIM outside it")
    parser.add_argument("--clip-model", default=M.DEFAULT_CLIP,
                        help=f"CLIP model: preset, repository id or folder, 'none' to skip (default: {M.DEFAULT_CLIP})")
    parser.add_argument("--pairs", choices=M.PAIRS, default="consecutive",
                        help="frame pairs of CLIP-F: consecutive (FateZero) or all (LOVEU-TGVE) (default: consecutive)")
    parser.add_argument("--flow", choices=M.FLOWS, default="dis", help="optical flow for warp error (default: dis)")
    parser.add_argument("--scene-detector", choices=M.DETECTORS, default="content",
                        help="SCuts detector: content (threshold 27) or adaptive (as StreamingT2V) (default: content)")
    parser.add_argument("--min-scene-len", type=int, default=15,
                        help="SCuts: frames between cuts, and before the first (default: 15, as PySceneDetect)")
    parser.add_argument("--frames", type=int, help="evaluate only the first N frames")
    parser.add_argument("--size", type=int, help="resize so that the long side is N pixels first (faster)")
    parser.add_argument("--json", action="store_true", help="print JSON (with per-frame values) instead of a table")


def run_eval(args: argparse.Namespace) -> int:
    """`videdit eval`: print the table or JSON; 0 on success (bad input raises `UserError`)."""
    if args.edited is None or not str(args.edited).strip():
        raise UserError("name the edited video to evaluate")
    for flag in ("edited", "source", "mask"):
        value = getattr(args, flag, None)
        if value is not None and not Path(value).expanduser().exists():
            raise UserError(f"--{flag} {value}: no such file or folder" if flag != "edited"
                            else f"no such file or folder: {value}")
    result = evaluate_video(args.edited, source=args.source, prompt=args.prompt, source_prompt=args.source_prompt,
                            mask=args.mask, clip_model=args.clip_model, pairs=args.pairs, flow=args.flow,
                            frames=args.frames, size=args.size, detector=args.scene_detector,
                            min_scene_len=args.min_scene_len)
    for note in result["notes"]:
        print(f"videdit: note: {note}", file=sys.stderr)
    print(to_json(result) if args.json else format_table(result))
    return 0

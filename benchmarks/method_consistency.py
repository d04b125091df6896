"""Temporal consistency of each method's output on real footage, measured in one run.

For every method this prints seconds per frame and the warp error of its output (flow from the
source, so the edit is judged by the motion it should keep), beside the source's own warp error
(the floor), MAWE, SCuts and SSIM to the source. Two reference rows need no model: ``identity``
(the source itself: warp error at the floor) and ``flicker`` (per-frame brightness jitter: what
an inconsistent edit looks like). Methods are added to ``METHODS`` as functions
``frames (T, H, W, 3) uint8 -> edited frames``; already edited videos can be given on the command
line as NAME=PATH.

    python benchmarks/method_consistency.py --source ../shared/videos/woman-running.mp4 \
        --frames 16 --size 256 [invert=out/invert.mp4 ...] [--clip-model DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from videdit.errors import UserError
from videdit.evaluate import evaluate_video
from videdit.video import read_clip, resize_frames

Method = Callable[[np.ndarray], np.ndarray]
DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "videos" / "woman-running.mp4"


def identity(frames: np.ndarray) -> np.ndarray:
    return frames.copy()


def flicker(frames: np.ndarray, amount: float = 0.2, seed: int = 0) -> np.ndarray:
    """Each frame times a gain drawn from [1 - amount, 1 + amount]."""
    gain = np.random.default_rng(seed).uniform(1 - amount, 1 + amount, len(frames))
    return np.clip(frames.astype(np.float32) * gain[:, None, None, None], 0, 255).astype(np.uint8)


_TMP = None


def _tmp() -> Path:
    """A folder for the tiny models and masks of this run, removed at exit."""
    global _TMP
    if _TMP is None:
        import atexit
        import shutil
        import tempfile

        _TMP = Path(tempfile.mkdtemp(prefix="videdit-consistency-"))
        atexit.register(shutil.rmtree, _TMP, True)
    return _TMP


def _tiny(kind: str) -> str:
    from videdit.tiny import write_tiny_model

    folder = _tmp() / f"tiny-{kind}"
    if not folder.exists():
        write_tiny_model(kind, folder)
    return str(folder)


COMMON = dict(steps=10, progress=False, reconstruction=False, no_cache=True)


def invert(frames: np.ndarray) -> np.ndarray:
    from videdit import edit

    return edit(frames, "a robot running", method="invert", model=_tiny("sd15"), size=max(frames.shape[1:3]),
                source_prompt="a woman running", **COMMON).frames


def grain(frames: np.ndarray) -> np.ndarray:
    """Two regions: the left half becomes a robot, the right half a beach."""
    from PIL import Image

    from videdit import edit

    h, w = frames.shape[1:3]
    masks = {}
    for name, cols in (("left", slice(0, w // 2)), ("right", slice(w // 2, w))):
        m = np.zeros((h, w), np.uint8)
        m[:, cols] = 255
        masks[name] = _tmp() / f"{name}.png"
        Image.fromarray(m).save(masks[name])
    regions = [f"person={masks['left']}:a robot", f"ground={masks['right']}:a beach"]
    return edit(frames, "a robot running on a beach", method="grain", model=_tiny("sd15"), regions=regions,
                size=max(frames.shape[1:3]), **COMMON).frames


def anchor(frames: np.ndarray) -> np.ndarray:
    from videdit import edit

    return edit(frames, "make it a watercolour", method="anchor", model=_tiny("ip2p"), size=max(frames.shape[1:3]),
                progress=False, reconstruction=False).frames


def i2v(frames: np.ndarray) -> np.ndarray:
    """The first frame mirrored, as a stand-in for an image editor's output."""
    from PIL import Image

    from videdit import edit

    return edit(frames, "a robot running", method="i2v", model=_tiny("i2vgen-xl"), size=max(frames.shape[1:3]),
                first_frame_editor=lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), inversion_steps=10,
                **COMMON).frames


# name -> function of the source frames; videdit's methods run on tiny random-weight models, so
# their rows compare the methods' machinery (how much each lets frames drift apart), not quality.
METHODS: dict[str, Method] = {"identity": identity, "flicker": flicker, "invert": invert, "grain": grain,
                              "anchor": anchor, "i2v": i2v}


def timed(method: Method, frames: np.ndarray) -> tuple[np.ndarray, float]:
    """The method's output and its seconds per frame."""
    start = time.perf_counter()
    out = method(frames)
    return out, (time.perf_counter() - start) / len(frames)


def row(name: str, edited: np.ndarray, source: np.ndarray, seconds_per_frame: float | None,
        clip_model: str | None, mawe_size: int | None) -> dict:
    if edited.shape[1:3] != source.shape[1:3]:
        edited = resize_frames(edited, (source.shape[2], source.shape[1]))
    m = evaluate_video(edited, source=source, clip_model=clip_model, mawe_size=mawe_size)["metrics"]
    floor = m["warp_error_source"]["value"]
    return {
        "method": name,
        "frames": len(edited),
        "s/frame": seconds_per_frame,
        "warp error": m["warp_error"]["value"],
        "floor": floor,
        "x floor": m["warp_error"]["value"] / floor if floor else float("nan"),
        "MAWE": m["mawe"]["value"],
        "SCuts": int(m["scuts"]["value"]),
        "SSIM": m["ssim"]["value"],
        "CLIP-F": m["clip_f"]["value"],
    }


def format_rows(rows: list[dict]) -> str:
    def cell(v) -> str:
        if v is None:
            return "-"
        if isinstance(v, str):
            return v
        if isinstance(v, int):
            return str(v)
        return f"{v:.3e}" if abs(v) < 0.01 and v != 0 else f"{v:.4f}"

    keys = list(rows[0])
    table = [keys] + [[cell(r[k]) for k in keys] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(keys))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths)))
                     for line in table)


def parse_outputs(items: list[str]) -> dict[str, Path]:
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"give edited videos as NAME=PATH, got {item!r}")
        out[name] = Path(path)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outputs", nargs="*", help="edited videos of the same source, as NAME=PATH")
    parser.add_argument("--source", default=str(DEFAULT_SOURCE), help="source video (default: woman-running.mp4)")
    parser.add_argument("--frames", type=int, default=16, help="first N frames (default: 16)")
    parser.add_argument("--size", type=int, default=256, help="long side in pixels (default: 256)")
    parser.add_argument("--methods", default=",".join(METHODS), help="methods of METHODS to run (comma-separated)")
    parser.add_argument("--clip-model", default=None, help="CLIP model for CLIP-F (default: none)")
    parser.add_argument("--mawe-size", type=int, default=720, help="frame size of MAWE's flow (default: 720)")
    args = parser.parse_args(argv)
    try:
        source = read_clip(args.source, frames=args.frames).frames
        scale = args.size / max(source.shape[1:3])
        source = resize_frames(source, (round(source.shape[2] * scale), round(source.shape[1] * scale)))
        rows = []
        for name in [n for n in args.methods.split(",") if n]:
            if name not in METHODS:
                raise UserError(f"unknown method {name!r}: use one of {', '.join(METHODS)}")
            edited, spf = timed(METHODS[name], source)
            rows.append(row(name, edited, source, spf, args.clip_model, args.mawe_size))
        for name, path in parse_outputs(args.outputs).items():
            edited = read_clip(path, frames=args.frames).frames
            rows.append(row(name, edited, source[:len(edited)], None, args.clip_model, args.mawe_size))
    except UserError as exc:
        print(f"method_consistency: error: {exc}", file=sys.stderr)
        return 2
    print(f"source: {args.source}  frames: {len(source)}  size: {source.shape[2]}x{source.shape[1]}")
    print(format_rows(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

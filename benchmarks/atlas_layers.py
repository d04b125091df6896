"""Layers without training (`videdit.atlas`, mosaic backend): how faithful, how fast.

ShapesWorld (--shapes N): held-out clips with a camera pan and moving objects at 256 px, one
foreground layer per object from the renderer's instance masks. Printed per clip: the background
atlas against the true background strip (PSNR over the texels a frame saw as background, 2 px
away from texels none saw), and every frame re-rendered from the unedited atlases against the
source (PSNR outside a 2-px band at object edges).

Real footage (--real): layers at 512 px with alpha from motion (no masks), the reconstruction PSNR
over whole frames and seconds per frame to build them on this machine.

    python benchmarks/atlas_layers.py --shapes 10
    python benchmarks/atlas_layers.py --real
    python benchmarks/atlas_layers.py --real --videos woman-running.mp4 --segments 3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from videdit.atlas import MosaicSettings, build_layers, render
from videdit.shapes import world as W

VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "videos"


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    err = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    mse = err[where].mean() if where is not None else err.mean()
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def edge_band(masks: np.ndarray, band: int = 2) -> np.ndarray:
    """(T, H, W) bool: pixels within ``band`` px of an edge of any (T, H, W) mask."""
    k = np.ones((2 * band + 1, 2 * band + 1), np.uint8)
    return np.stack([(cv2.dilate(m.astype(np.uint8), k) - cv2.erode(m.astype(np.uint8), k)) > 0 for m in masks])


def held_out_clip(seed: int, frames: int) -> W.ClipSpec:
    """A clip with a pan and at least one object that moves (seeds far from the training draws)."""
    rng = np.random.default_rng(900_000 + seed)
    while True:
        spec = W.random_clip(rng, n_frames=frames, pan=True)
        if any(m.kind != "still" for m in spec.motions):
            return spec


def background_vs_strip(layers, clip: W.Clip, spec: W.ClipSpec, size: int) -> float:
    """PSNR of the background atlas against the strip the renderer drew, through the reference frame."""
    bg = layers.background
    ref = layers.info["reference_background"]
    to_ref = np.linalg.inv(bg.homographies[ref])  # atlas -> reference frame pixels
    ha, wa = bg.atlas.shape[:2]
    ys, xs = np.mgrid[0:ha, 0:wa].astype(np.float64)
    pts = np.stack([xs, ys, np.ones_like(xs)], -1) @ to_ref.T
    fx, fy = pts[..., 0] / pts[..., 2], pts[..., 1] / pts[..., 2]
    pan_total = abs(spec.pan) * max(spec.n_frames - 1, 0)
    width = size + int(np.ceil(pan_total * size)) + 2
    strip = W.render_background(spec.scene.background, spec.scene.bg_seed, size, width)
    wx = (fx + clip.pan_px[ref]).astype(np.float32)
    truth = cv2.remap(strip, wx, fy.astype(np.float32), cv2.INTER_LINEAR)
    inside = (wx >= 0) & (wx <= width - 1) & (fy >= 0) & (fy <= size - 1)
    seen = cv2.erode(bg.seen.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    return psnr(bg.atlas, np.clip(np.rint(truth), 0, 255), seen & inside)


def run_shapes(n: int, frames: int, size: int) -> None:
    print(f"ShapesWorld, {n} held-out clips with a pan, {frames} frames at {size} px, one layer per object")
    print(f"{'clip':>4} {'background':>10} {'objects (motion)':40} {'atlas vs strip':>14} {'render vs source':>16} {'s/frame':>8}")
    rows = []
    for i in range(n):
        spec = held_out_clip(i, frames)
        clip = W.render_clip(spec, size)
        t0 = time.perf_counter()
        layers = build_layers(clip.frames, clip.masks.transpose(1, 0, 2, 3), use_cache=False)
        seconds = (time.perf_counter() - t0) / frames
        atlas_db = background_vs_strip(layers, clip, spec, size)
        render_db = psnr(render(layers), clip.frames, ~edge_band(clip.masks.any(1)))
        objects = ", ".join(f"{o.colour} {o.shape} ({m.kind})" for o, m in zip(spec.scene.objects, spec.motions))
        print(f"{i:>4} {spec.scene.background:>10} {objects[:40]:40} {atlas_db:>11.1f} dB {render_db:>13.1f} dB {seconds:>8.3f}")
        rows.append((atlas_db, render_db))
    a = np.array(rows)
    print(f"min: atlas vs strip {a[:, 0].min():.1f} dB, render vs source {a[:, 1].min():.1f} dB; "
          f"clips with both >= 30 dB: {int(((a >= 30).all(1)).sum())} of {n}")


def run_real(names: list[str], size: int, frames: int | None, segments: int = 1) -> None:
    from videdit.video import read_clip, resize_frames, working_size

    print(f"real footage at {size} px, alpha from motion")
    print(f"{'clip':22} {'frames':>6} {'size':>9} {'PSNR':>7} {'s/frame':>8} {'fg share':>8} {'bg atlas':>10}")
    for name in names:
        clip = read_clip(VIDEOS / name, frames=frames)
        work = working_size(*clip.size, size)
        source = resize_frames(clip.frames, work)
        t0 = time.perf_counter()
        layers = build_layers(source, None, fps=clip.fps, settings=MosaicSettings(), use_cache=False)
        seconds = (time.perf_counter() - t0) / len(source)
        out = render(layers, source=source)
        share = float(np.mean([f.alpha.mean() for f in layers.foregrounds])) if layers.foregrounds else 0.0
        wa, ha = layers.background.atlas_size
        print(f"{name:22} {len(source):>6} {work[0]:>4}x{work[1]:<4} {psnr(out, source):>5.1f}dB {seconds:>8.3f} "
              f"{share:>8.2f} {wa:>4}x{ha:<5}")
        if segments > 1:  # where in the clip the reconstruction degrades
            parts = np.array_split(np.arange(len(source)), segments)
            print("    by part of the clip: " + ", ".join(f"frames {p[0]}-{p[-1]} {psnr(out[p], source[p]):.1f} dB"
                                                   for p in parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", type=int, default=0, help="number of held-out ShapesWorld clips")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--real", action="store_true", help="the sample videos at 512 px")
    parser.add_argument("--videos", nargs="+", default=["trucks-race.mp4", "wolf.mp4", "woman-running.mp4"])
    parser.add_argument("--real-frames", type=int, default=None, help="first N frames of each video (default all)")
    parser.add_argument("--segments", type=int, default=1, help="also the reconstruction PSNR over this many equal "
                                                                "parts of each clip")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    if args.shapes:
        run_shapes(args.shapes, args.frames, args.size)
    if args.real:
        run_real(args.videos, 512, args.real_frames, args.segments)


if __name__ == "__main__":
    main()

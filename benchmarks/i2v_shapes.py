"""Method i2v on ShapesWorld: does the propagated clip keep the edit and follow the source motion?

A red square moves right across a textured background (16 frames at 64x64). Its first frame is
edited exactly: the same scene re-rendered with a blue square, which is also the ground truth of
every later frame. The i2v edit propagates that first frame along the source's inverted noise.
Printed, per setting:
- blue: the fraction of frames whose largest object, found by the ShapesWorld oracle, is blue;
  acceptance: >= 0.9;
- err: the mean distance in pixels between the largest blue object's centroid and the true one,
  over frames 1 ... F-1 (a frame without a blue object counts as the image diagonal);
for no injection, the default thresholds, and tau_ta = 0, 0.5, 1 (tau_conv = tau_sa = 0.2).
Injection should lower err. Then a 32-frame clip, one long latent (direct) against chunks of 16
frames overlapping by 4 (chunked).

    python benchmarks/i2v_shapes.py                 # the ShapesWorld model shapes-i2v
    python benchmarks/i2v_shapes.py --model DIR     # any I2VGen-XL-class model (a tiny one: plumbing only)

Without a ``shapes-i2v`` model the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace

import numpy as np

from videdit.errors import UserError


def clips(n_frames: int, size: int):
    """Source (red square) and ground truth (blue square) clips of the same motion and background."""
    from videdit.shapes.world import ClipSpec, Motion, Obj, Scene, render_clip

    scene = Scene((Obj("square", "red", cx=0.25, cy=0.5, size=0.14),), background="grass", bg_seed=3)
    vx = 0.5 / max(n_frames - 1, 1)  # a quarter to three quarters of the width
    spec = ClipSpec(scene, (Motion("linear", vx=vx),), n_frames=n_frames)
    blue = ClipSpec(replace(scene, objects=(replace(scene.objects[0], colour="blue"),)), spec.motions, n_frames)
    return render_clip(spec, size), render_clip(blue, size)


def measure(frames: np.ndarray, truth) -> tuple[float, float]:
    """(fraction of frames with a blue square, mean centroid error in pixels over frames 1 ...), by the
    ShapesWorld oracle (`videdit.shapes.judge.locate`: objects found by colour, no learned weights)."""
    from videdit.shapes.judge import locate

    diag = float(np.hypot(*frames.shape[1:3]))
    blue_frames, errs = [], []
    for t, frame in enumerate(frames):
        found, _ = locate(frame)
        biggest = max(found, key=lambda f: f.area, default=None)
        blue = [f for f in found if f.colour == "blue"]
        blue_frames.append(biggest is not None and biggest.colour == "blue")
        if t:
            c = max(blue, key=lambda f: f.area).centroid if blue else None
            errs.append(diag if c is None else float(np.hypot(c[0] - truth.centroids[t, 0, 0],
                                                              c[1] - truth.centroids[t, 0, 1])))
    return float(np.mean(blue_frames)), float(np.mean(errs))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="shapes-i2v")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--inversion-steps", type=int, default=100)
    parser.add_argument("--long", action=argparse.BooleanOptionalAction, default=True,
                        help="also compare direct and chunked propagation of a 32-frame clip")
    args = parser.parse_args(argv)

    import videdit
    from videdit.i2v import load_i2v

    try:
        model = load_i2v(args.model)
    except UserError as exc:
        print(f"skipped: no image-to-video model {args.model!r} ({exc}); the ShapesWorld model shapes-i2v "
              "has to be trained first")
        return 0
    os.environ.setdefault("VIDEDIT_CACHE_DIR", tempfile.mkdtemp(prefix="videdit-i2v-bench-"))
    size = 64
    source, truth = clips(args.frames, size)
    prompt = truth.spec.scene.caption
    common = dict(method="i2v", model=model, size=size, steps=args.steps, inversion_steps=args.inversion_steps,
                  progress=False, reconstruction=False, first_frame_editor=lambda image: truth.frames[0])
    print(f"model {args.model}, {args.frames} frames {size}x{size}, {args.steps} steps, "
          f"{args.inversion_steps} inversion steps, prompt {prompt!r}")
    print(f"{'setting':28s} {'blue':>6s} {'err px':>8s} {'s':>6s}")
    settings = [("no injection", 0.0, 0.0, 0.0), ("tau_ta = 0", 0.2, 0.2, 0.0),
                ("tau_ta = 0.5 (default)", 0.2, 0.2, 0.5), ("tau_ta = 1", 0.2, 0.2, 1.0)]
    for name, conv, sa, ta in settings:
        t0 = time.perf_counter()
        res = videdit.edit(source.frames, prompt, tau_conv=conv, tau_sa=sa, tau_ta=ta, **common)
        blue, err = measure(res.edited_working, truth)
        print(f"{name:28s} {blue:6.2f} {err:8.2f} {time.perf_counter() - t0:6.1f}")
    if args.long:
        source, truth = clips(32, size)
        common["first_frame_editor"] = lambda image: truth.frames[0]
        for mode in ("direct", "chunked"):
            t0 = time.perf_counter()
            res = videdit.edit(source.frames, prompt, long_clip=mode, chunk_frames=16, chunk_overlap=4, **common)
            blue, err = measure(res.edited_working, truth)
            print(f"{'32 frames, ' + mode:28s} {blue:6.2f} {err:8.2f} {time.perf_counter() - t0:6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

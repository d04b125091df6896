"""Method i2v on ShapesWorld: does the propagated clip keep the edit and follow the source motion?

A red square moves right across grass (16 frames at 64x64; `--clip circle`: a yellow circle moves
down-left across sand, a clip never used to choose a training recipe). Its first frame is edited
exactly: the same scene re-rendered with the object blue, which is also the ground truth of every
later frame. The i2v edit propagates that first frame along the source's inverted noise.
Printed, per setting (`videdit.shapes.evaluate.propagation`, fractions of frames):
- blue: the oracle reads blue under the object's ground-truth mask; acceptance: >= 0.9;
- one: exactly one blue object is found (no copy left behind at the first-frame place);
- bg: the background is still the source's;
- ok: all three at once;
- err: the mean distance in pixels between the largest blue object's centroid and the true one,
  over frames 1 ... F-1 (a frame without a blue object counts as the image diagonal);
- PSNR: of the clip against the ground truth (dB);
for no injection, the default thresholds, tau_ta = 0, 0.5, 1 (tau_conv = tau_sa = 0.2), and every
tau at 1 (injection in every step). Injection should lower err. Then a 32-frame clip, one long latent
(direct) against chunks of `--chunk-frames` frames overlapping by `--chunk-overlap` (chunked).

The square and the circle are two hand-picked draws. `--held-out N` runs the same check on the first N
fixed held-out draws (`videdit.shapes.evaluate.held_out_i2v_spec`: one object of any shape and any colour
but blue, on any background but sky, moving 0.2-0.5 frame widths in any direction) and prints the means
and how many clips pass; `--source-colour C` repaints the source's object (the first frame and the truth
stay blue), to see which source colours make the edit hard.

    python benchmarks/i2v_shapes.py                 # the ShapesWorld model shapes-i2v
    python benchmarks/i2v_shapes.py --model DIR     # any I2VGen-XL-class model (a tiny one: plumbing only)
    python benchmarks/i2v_shapes.py --clip circle   # a second clip: a yellow circle moving down-left on sand
    python benchmarks/i2v_shapes.py --ablation      # also each injection alone (conv feature, spatial Q/K)
    python benchmarks/i2v_shapes.py --held-out 10 --per-clip --frames 8 --no-long --settings none defaults
    python benchmarks/i2v_shapes.py --frames 8 --no-long --settings none --source-colour purple

Without a ``shapes-i2v`` model the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

from videdit.errors import UserError

# (tau_conv, tau_sa, tau_ta) per printed setting; the method's defaults are (0.2, 0.2, 0.5)
SETTINGS = {"none": (0.0, 0.0, 0.0), "tau_ta=0": (0.2, 0.2, 0.0), "defaults": (0.2, 0.2, 0.5),
            "tau_ta=1": (0.2, 0.2, 1.0), "every_tau=1": (1.0, 1.0, 1.0),
            "conv_only": (0.2, 0.0, 0.0), "spatial_only": (0.0, 0.2, 0.0)}
ABLATION = ("conv_only", "spatial_only")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="shapes-i2v")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--inversion-steps", type=int, default=100)
    parser.add_argument("--start-step", type=int, default=0, help="T': sampling starts from the inverted latent at "
                                                                  "this step (default %(default)s)")
    parser.add_argument("--guidance", type=float, default=None, help="default: the method's (9)")
    parser.add_argument("--negative-prompt", default=None,
                        help="default: videdit.shapes.method_options('i2v'), the empty prompt; the method's own "
                             "default turns the check's grass dark blue at guidance 9")
    parser.add_argument("--long", action=argparse.BooleanOptionalAction, default=True,
                        help="also compare direct and chunked propagation of a 32-frame clip")
    parser.add_argument("--chunk-frames", type=int, default=16, help="chunked: frames per chunk (the model's count)")
    parser.add_argument("--chunk-overlap", type=int, default=4)
    parser.add_argument("--clip", default="square",
                        help="square: the acceptance clip (a red square moving right on grass); circle: a second "
                             "clip, never used to choose a recipe (a yellow circle moving down-left on sand); "
                             "held-out-K: the K-th held-out clip (videdit.shapes.evaluate.held_out_i2v_spec)")
    parser.add_argument("--held-out", type=int, default=0, metavar="N",
                        help="instead of --clip, the held-out clips 0 ... N-1 (one object of any shape and colour, "
                             "any background but sky, any direction): per setting, the means over the clips and "
                             "how many clips have blue >= 0.9")
    parser.add_argument("--per-clip", action="store_true", help="with --held-out: also a row per clip")
    parser.add_argument("--source-colour", default=None, metavar="COLOUR",
                        help="repaint the source's object in this named colour (the first frame and truth stay "
                             "blue): which source colours make the edit hard")
    parser.add_argument("--ablation", action="store_true",
                        help="also each injection alone: conv feature only (0.2, 0, 0), spatial Q/K only (0, 0.2, 0)")
    parser.add_argument("--settings", nargs="*", choices=list(SETTINGS), default=None,
                        help="only these settings (default: all but the ablation's, which --ablation adds; "
                             "none listed: only the 32-frame rows)")
    args = parser.parse_args(argv)
    if not 0 <= args.start_step < args.steps:
        parser.error(f"--start-step must be in [0, --steps), got {args.start_step}")
    if args.held_out < 0:
        parser.error("--held-out N must be >= 0")
    if args.held_out and args.clip != "square":
        parser.error("--held-out runs the held-out clips; leave out --clip")
    if args.per_clip and args.held_out < 2:
        parser.error("--per-clip needs --held-out N with N >= 2")
    if args.ablation and args.settings is not None:
        parser.error("--ablation adds to the default settings; with --settings, list conv_only and spatial_only")

    from videdit.i2v import load_i2v
    from videdit.shapes.evaluate import I2V_HELD_OUT, i2v_clips, i2v_recolour

    clips = [f"{I2V_HELD_OUT}{k}" for k in range(args.held_out)] if args.held_out else [args.clip]
    try:  # (source, truth) captions
        captions = [tuple(c.spec.scene.caption for c in i2v_clips(name, 2, source_colour=args.source_colour))
                    for name in clips]
    except ValueError as exc:
        parser.error(str(exc))
    try:
        model = load_i2v(args.model)
    except UserError as exc:
        print(f"skipped: no image-to-video model {args.model!r} ({exc}); the ShapesWorld model shapes-i2v "
              "has to be trained first")
        return 0
    os.environ.setdefault("VIDEDIT_CACHE_DIR", tempfile.mkdtemp(prefix="videdit-i2v-bench-"))
    common = dict(model=model, steps=args.steps, inversion_steps=args.inversion_steps, source_colour=args.source_colour,
                  start_step=args.start_step)
    if args.guidance is not None:
        common["guidance"] = args.guidance
    if args.negative_prompt is not None:
        common["negative_prompt"] = args.negative_prompt
    names = args.settings if args.settings is not None else [n for n in SETTINGS if args.ablation or n not in ABLATION]
    print(f"model {args.model}, {args.frames if names else 32} frames 64x64, {args.steps} steps, "
          f"{args.inversion_steps} inversion steps, start step {args.start_step}, guidance {args.guidance or 'default'}, " +
          (f"prompt {captions[0][1]!r}" if len(clips) == 1 else f"means over {len(clips)} held-out clips") +
          (f", source object {args.source_colour}" if args.source_colour else ""))
    passed = " blue>=0.9" if len(clips) > 1 else ""
    print(f"{'setting':28s} {'blue':>5s} {'one':>5s} {'bg':>5s} {'ok':>5s} {'err px':>7s} {'PSNR':>5s} {'s':>6s}{passed}")

    def row(name, runs, seconds):
        mean = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
        tail = f" {sum(r['blue'] >= 0.9 for r in runs):4d}/{len(runs)}" if len(runs) > 1 else ""
        print(f"{name:28s} {mean['blue']:5.2f} {mean['one_blue']:5.2f} {mean['background']:5.2f} {mean['success']:5.2f} "
              f"{mean['centroid_error_px']:7.2f} {mean['psnr']:5.1f} {seconds:6.1f}{tail}", flush=True)

    def per_clip(runs):
        if args.per_clip:  # the parser admits it with two or more clips only
            for clip, (caption, _), r in zip(clips, captions, runs):
                row(f"  {clip}: {caption}", [r], float("nan"))

    for name in names:
        conv, sa, ta = SETTINGS[name]
        t0 = time.perf_counter()
        runs = [i2v_recolour(n_frames=args.frames, tau_conv=conv, tau_sa=sa, tau_ta=ta, clip=c, **common) for c in clips]
        row(name, runs, time.perf_counter() - t0)
        per_clip(runs)
    if args.long:
        for mode in ("direct", "chunked"):
            t0 = time.perf_counter()
            runs = [i2v_recolour(n_frames=32, long_clip=mode, chunk_frames=args.chunk_frames, clip=c,
                                 chunk_overlap=args.chunk_overlap, **common) for c in clips]
            row(f"32 frames, {mode}", runs, time.perf_counter() - t0)
            per_clip(runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())

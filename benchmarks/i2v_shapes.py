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

    python benchmarks/i2v_shapes.py                 # the ShapesWorld model shapes-i2v
    python benchmarks/i2v_shapes.py --model DIR     # any I2VGen-XL-class model (a tiny one: plumbing only)
    python benchmarks/i2v_shapes.py --clip circle   # a second clip: a yellow circle moving down-left on sand
    python benchmarks/i2v_shapes.py --ablation      # also each injection alone (conv feature, spatial Q/K)

Without a ``shapes-i2v`` model the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from videdit.errors import UserError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="shapes-i2v")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--inversion-steps", type=int, default=100)
    parser.add_argument("--guidance", type=float, default=None, help="default: the method's (9)")
    parser.add_argument("--negative-prompt", default=None,
                        help="default: videdit.shapes.method_options('i2v'), the empty prompt; the method's own "
                             "default turns the check's grass dark blue at guidance 9")
    parser.add_argument("--long", action=argparse.BooleanOptionalAction, default=True,
                        help="also compare direct and chunked propagation of a 32-frame clip")
    parser.add_argument("--chunk-frames", type=int, default=16, help="chunked: frames per chunk (the model's count)")
    parser.add_argument("--chunk-overlap", type=int, default=4)
    parser.add_argument("--clip", choices=("square", "circle"), default="square",
                        help="square: the acceptance clip (a red square moving right on grass); circle: a second "
                             "clip, never used to choose a recipe (a yellow circle moving down-left on sand)")
    parser.add_argument("--ablation", action="store_true",
                        help="also each injection alone: conv feature only (0.2, 0, 0), spatial Q/K only (0, 0.2, 0)")
    args = parser.parse_args(argv)

    from videdit.i2v import load_i2v
    from videdit.shapes.evaluate import I2V_CLIPS, i2v_recolour

    try:
        model = load_i2v(args.model)
    except UserError as exc:
        print(f"skipped: no image-to-video model {args.model!r} ({exc}); the ShapesWorld model shapes-i2v "
              "has to be trained first")
        return 0
    os.environ.setdefault("VIDEDIT_CACHE_DIR", tempfile.mkdtemp(prefix="videdit-i2v-bench-"))
    common = dict(model=model, steps=args.steps, inversion_steps=args.inversion_steps, clip=args.clip)
    if args.guidance is not None:
        common["guidance"] = args.guidance
    if args.negative_prompt is not None:
        common["negative_prompt"] = args.negative_prompt
    print(f"model {args.model}, {args.frames} frames 64x64, {args.steps} steps, {args.inversion_steps} inversion "
          f"steps, guidance {args.guidance or 'default'}, prompt {I2V_CLIPS[args.clip](2)[1].spec.scene.caption!r}")
    print(f"{'setting':28s} {'blue':>5s} {'one':>5s} {'bg':>5s} {'ok':>5s} {'err px':>7s} {'PSNR':>5s} {'s':>6s}")

    def row(name, r, seconds):
        print(f"{name:28s} {r['blue']:5.2f} {r['one_blue']:5.2f} {r['background']:5.2f} {r['success']:5.2f} "
              f"{r['centroid_error_px']:7.2f} {r['psnr']:5.1f} {seconds:6.1f}", flush=True)

    settings = [("no injection", 0.0, 0.0, 0.0), ("tau_ta = 0", 0.2, 0.2, 0.0),
                ("tau_ta = 0.5 (default)", 0.2, 0.2, 0.5), ("tau_ta = 1", 0.2, 0.2, 1.0),
                ("every tau = 1", 1.0, 1.0, 1.0)]
    if args.ablation:
        settings += [("conv only", 0.2, 0.0, 0.0), ("spatial only", 0.0, 0.2, 0.0)]
    for name, conv, sa, ta in settings:
        t0 = time.perf_counter()
        r = i2v_recolour(n_frames=args.frames, tau_conv=conv, tau_sa=sa, tau_ta=ta, **common)
        row(name, r, time.perf_counter() - t0)
    if args.long:
        for mode in ("direct", "chunked"):
            t0 = time.perf_counter()
            r = i2v_recolour(n_frames=32, long_clip=mode, chunk_frames=args.chunk_frames,
                             chunk_overlap=args.chunk_overlap, **common)
            row(f"32 frames, {mode}", r, time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

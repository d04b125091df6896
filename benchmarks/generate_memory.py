"""videdit generate: peak memory and seconds per frame at 48 and at 240 frames, tiny ms-t2v model.

Each length runs in a fresh process (peak resident set on the CPU, see _peak.py), model loaded before
the measurement. Printed in one run: peak memory added by the generation, seconds per frame over the
whole run (the first chunk, 16 frames without conditioning, is cheaper than the rest, so this falls
slightly towards longer runs), and seconds per new frame after the first chunk (the steady cost).
Acceptance: peaks within 10% of each other, seconds per frame within 15%.

    python benchmarks/generate_memory.py [--conditioning free|cam] [--steps 3] [--size 64]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _peak import measure, run_child  # noqa: E402  (benchmarks/_peak.py)

LENGTHS = (48, 240)


def child(model_dir: str, frames: int, conditioning: str, steps: int, size: int) -> None:
    import torch

    from videdit.generate.options import GenerateOptions
    from videdit.generate.stream import generate
    from videdit.generate.t2v import load_t2v

    torch.set_num_threads(1)
    model = load_t2v(model_dir, device="cpu")
    out = Path(tempfile.mkdtemp()) / "long.mp4"
    opts = GenerateOptions(prompt="a red circle moving right on grass", frames=frames, steps=steps, size=str(size),
                           conditioning=conditioning, progress=False)
    marks = []
    peak, seconds, _ = measure(lambda: generate(opts, out, model=model,
                                                on_chunk=lambda d, t: marks.append(time.perf_counter())))
    steady = (marks[-1] - marks[0]) / (frames - opts.chunk)
    print(json.dumps({"frames": frames, "peak_mib": peak / 2**20, "s_per_frame": seconds / frames,
                      "steady_s_per_frame": steady}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conditioning", default="free", choices=("free", "cam", "none"))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "FRAMES"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.conditioning, args.steps, args.size)
        return
    from videdit.generate.tiny import write_tiny_t2v

    model_dir = write_tiny_t2v(Path(tempfile.mkdtemp()) / "tiny-t2v")
    rows = {}
    for frames in LENGTHS:
        rows[frames], error = run_child(__file__, ["--child", str(model_dir), str(frames), "--conditioning",
                                                   args.conditioning, "--steps", str(args.steps), "--size",
                                                   str(args.size)])
        if error:
            sys.exit(f"{frames} frames failed: {error}")
    a, b = rows[LENGTHS[0]], rows[LENGTHS[1]]
    print(f"conditioning {args.conditioning}, {args.steps} steps, {args.size}x{args.size}, tiny ms-t2v, 1 thread")
    print(f"{'frames':>6} {'peak MiB':>9} {'s/frame':>8} {'steady s/frame':>15}")
    for r in (a, b):
        print(f"{r['frames']:>6} {r['peak_mib']:>9.1f} {r['s_per_frame']:>8.3f} {r['steady_s_per_frame']:>15.3f}")
    print(f"peak 240/48: {b['peak_mib'] / a['peak_mib']:.3f}; s/frame 240/48: {b['s_per_frame'] / a['s_per_frame']:.3f}; "
          f"steady s/frame 240/48: {b['steady_s_per_frame'] / a['steady_s_per_frame']:.3f}")


if __name__ == "__main__":
    main()

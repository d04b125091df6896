"""Time of a first edit (computes and caches the DDIM inversion) vs a second edit of the same clip
with another prompt (loads the inversion), measured in one run.

    python benchmarks/inversion_cache.py [--model DIR] [--video PATH] [--steps 50] [--size 512]

Without --model a tiny random model is written to a temporary folder. Prints both times and
their ratio; the inversion cache lives in a temporary folder, so nothing of the user's is touched.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--video", default=str(ROOT.parent / "shared" / "videos" / "fox.mp4"))
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["VIDEDIT_CACHE_DIR"] = str(Path(tmp) / "cache")
        import videdit
        from videdit.models import load_sd
        from videdit.tiny import write_tiny_model

        model = load_sd(args.model or str(write_tiny_model("sd15", Path(tmp) / "tiny")))
        common = dict(model=model, steps=args.steps, size=args.size, progress=False, reconstruction=False)
        times = {}
        for name, prompt in (("first edit (inverts, caches)", "a cat"), ("second edit (cache hit)", "a dog")):
            t0 = time.perf_counter()
            res = videdit.edit(args.video, prompt, **common)
            times[name] = time.perf_counter() - t0
            print(f"{name:30s} {times[name]:7.1f} s   inversion from cache: {res.info['inversion_cached']}")
        a, b = times.values()
        print(f"second / first: {b / a:.2f}  ({args.steps} steps, {len(res.frames)} frames, size {args.size})")


if __name__ == "__main__":
    main()

"""How `--conditioning free` should start its new frames, chosen on captions the acceptance check does not use.

For two ShapesWorld captions outside benchmarks/generate_shapes.py's five, shapes-t2v generates --frames
(48) frames, 10 DDIM steps, seed 0, under: independent chunks (none); free from pure noise
(`--free-start 1`) with reconstruction weight w_r 1, 3 and 10; and free from the last known frame diffused
to 0.8 and 0.6 of the schedule (w_r 1). Each video is read with the ShapesWorld oracle as in
generate_shapes.py: identity (frames with frame 0's colour and shape), colour (frame 0's colour alone),
background, seams (difference across chunk borders over the difference elsewhere).

    python benchmarks/free_start_tuning.py [--model shapes-t2v] [--frames 48] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

CAPTIONS = ("a blue square on sky", "a green star on night")
SETTINGS = (("none", {"conditioning": "none"}),
            ("free, start 1, w_r 1", {"conditioning": "free", "free_start": 1.0, "reconstruction_guidance": 1.0}),
            ("free, start 1, w_r 3", {"conditioning": "free", "free_start": 1.0, "reconstruction_guidance": 3.0}),
            ("free, start 1, w_r 10", {"conditioning": "free", "free_start": 1.0, "reconstruction_guidance": 10.0}),
            ("free, start 0.8, w_r 1", {"conditioning": "free", "free_start": 0.8, "reconstruction_guidance": 1.0}),
            ("free, start 0.6, w_r 1", {"conditioning": "free", "free_start": 0.6, "reconstruction_guidance": 1.0}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="shapes-t2v")
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/free_start_tuning")
    a = ap.parse_args()

    import torch

    from generate_shapes import background_of, read, seam_ratio
    from videdit.generate.options import GenerateOptions
    from videdit.generate.stream import generate
    from videdit.generate.t2v import load_t2v
    from videdit.video import read_clip

    torch.set_num_threads(a.threads)
    model = load_t2v(a.model, device="cpu", dtype="fp32")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    borders = list(range(16, a.frames, 8))
    print(f"# {a.model}, {a.frames} frames at 64x64, DDIM {a.steps} steps eta 1, guidance 7.5, seed 0")
    print(f"{'caption':24s} {'setting':24s} {'frame 0':14s} {'identity':>8s} {'colour':>6s} {'bg':>5s} {'seams':>6s} "
          f"{'s':>4s}")
    for caption in CAPTIONS:
        for i, (name, kw) in enumerate(SETTINGS):
            path = out / f"{caption.replace(' ', '-')}-{i}.mp4"
            started = time.monotonic()
            opts = GenerateOptions(prompt=caption, model=a.model, frames=a.frames, steps=a.steps, seed=0, size="64",
                                   progress=False, overwrite=True, **kw)
            frames = read_clip(generate(opts, path, model=model)).frames
            r = read(frames, background_of(caption))
            print(f"{caption:24s} {name:24s} {r['frame0']:14s} {r['identity']:8.3f} {r['colour']:6.3f} "
                  f"{r['background']:5.2f} {seam_ratio(frames, borders):6.2f} {time.monotonic() - started:4.0f}",
                  flush=True)


if __name__ == "__main__":
    main()

"""Long text-to-video on ShapesWorld: does streaming keep the object and hide the seams?

For "a red circle moving right on grass" and 4 held-out single-object captions (drawn from the
evaluation stream, `train.HELD_OUT_SEED`, that training never uses), generate --frames (240) frames with
shapes-t2v under each conditioning (cam, free, none = independent chunks) with the same seed, and read
every frame with the ShapesWorld oracle (`judge.locate`, no masks: colours by CIELAB distance, shapes
by contour, backgrounds by texture statistics):

- identity: share of frames in which an object of frame 0's colour and shape is found (the acceptance
  asks >= 0.9); colour: the same for frame 0's colour alone (the oracle reads a circle cut by the frame's
  edge as a square, so an object that stays at the edge fails identity though it never changes); and the
  share of frames whose background is the caption's (asks 1.0);
- seams: mean absolute frame difference across chunk borders (frame b - 1 to b, b = 16, 24, 32, ...)
  over the mean difference between all other consecutive frames (1: no visible border);
- SCuts: scene cuts, PySceneDetect's content (threshold 27) and adaptive detectors (`videdit.metrics`).

Then randomized blending (`videdit refine`, StreamingT2V section 4.3): the `none` video of each caption
is refined with shapes-t2v at --refine-strength, chunks C = 24 overlapping by O = 8, once with random
offsets and once with r = 0 (the same chunks, hard borders); seams are measured at the refiner's chunk
borders (b = 16, 32, ...).

    python benchmarks/generate_shapes.py [--model shapes-t2v] [--frames 240] [--steps 20]
        [--conditionings cam free none] [--captions 5] [--only all|main|held-out] [--held-out-frames N]
        [--out DIR] [--no-refine]
    python benchmarks/generate_shapes.py --summary --out DIR     # the table of runs split over processes

Prints one row per (caption, conditioning), the means per conditioning, and the refine comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

MAIN_CAPTION = "a red circle moving right on grass"
HELD_OUT_STREAM = 7  # draws from HELD_OUT_SEED + 7: single-object scenes for long generation


def captions(n: int) -> list[str]:
    from videdit.shapes import world
    from videdit.shapes.train import HELD_OUT_SEED

    rng = np.random.default_rng(HELD_OUT_SEED + HELD_OUT_STREAM)
    return [MAIN_CAPTION] + [world.random_scene(rng, n_objects=1).caption for _ in range(n - 1)]


def background_of(caption: str) -> str:
    return caption.rsplit(" on ", 1)[1]


def seam_ratio(frames: np.ndarray, borders: list[int]) -> float:
    """Mean |x_b - x_{b-1}| over borders b, divided by the mean over all other consecutive pairs."""
    diffs = np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))  # diffs[i]: i -> i + 1
    at = np.zeros(len(diffs), bool)
    at[[b - 1 for b in borders if 0 < b < len(frames)]] = True
    return float(diffs[at].mean() / max(diffs[~at].mean(), 1e-6))


def read(frames: np.ndarray, background: str) -> dict:
    """The oracle on every frame: identity with frame 0 and background; and SCuts."""
    from videdit import metrics
    from videdit.shapes.judge import locate

    readings = [locate(f) for f in frames]
    found0 = sorted(readings[0][0], key=lambda f: -f.area)
    ref = (found0[0].colour, found0[0].shape) if found0 else None
    same = [ref is not None and any((f.colour, f.shape) == ref for f in found) for found, _ in readings]
    hue = [ref is not None and any(f.colour == ref[0] for f in found) for found, _ in readings]
    return {"frame0": "-".join(str(x) for x in ref) if ref else "nothing",
            "identity": float(np.mean(same)), "colour": float(np.mean(hue)),
            "background": float(np.mean([bg == background for _, bg in readings])),
            "scuts": int(metrics.scene_cuts(frames).value),
            "scuts_adaptive": int(metrics.scene_cuts(frames, detector="adaptive").value)}


def summarize(rows: list[dict], out: Path | None = None) -> None:
    """Means per conditioning over the captions, and each caption's comparison with independent chunks.
    Rows written before the colour column existed get it from their video in ``out``, read again."""
    made = [r for r in rows if "conditioning" in r]
    for r in made:
        video = out / f"{r['caption'].replace(' ', '-')}-{r['conditioning']}.mp4" if out is not None else None
        if "colour" not in r and video is not None and video.is_file():
            from videdit.video import read_clip

            r["colour"] = read(read_clip(video).frames, background_of(r["caption"]))["colour"]
    print(f"{'caption':36s} {'cond':5s} {'frames':>6s} {'frame 0':16s} {'identity':>8s} {'colour':>6s} {'bg':>5s} "
          f"{'seams':>6s} {'SCuts':>5s} {'adapt':>5s} {'s':>5s}")
    for r in made:
        print(f"{r['caption']:36s} {r['conditioning']:5s} {r['frames']:6d} {r['frame0']:16s} {r['identity']:8.3f} "
              f"{r.get('colour', float('nan')):6.3f} {r['background']:5.2f} {r['seams']:6.2f} {r['scuts']:5d} "
              f"{r['scuts_adaptive']:5d} {r['seconds']:5d}")
    print("\nmeans over captions (identity, background: share of frames; seams: border / elsewhere)")
    for cond in dict.fromkeys(r["conditioning"] for r in made):
        mine = [r for r in made if r["conditioning"] == cond]
        colour = [r["colour"] for r in mine if "colour" in r]
        print(f"  {cond:5s} captions {len(mine)}, identity {np.mean([r['identity'] for r in mine]):.3f} "
              f"(min {min(r['identity'] for r in mine):.3f}), colour {np.mean(colour) if colour else float('nan'):.3f}, background {np.mean([r['background'] for r in mine]):.3f} "
              f"(min {min(r['background'] for r in mine):.3f}), seams {np.mean([r['seams'] for r in mine]):.2f}, "
              f"SCuts {sum(r['scuts'] for r in mine)}, adaptive {sum(r['scuts_adaptive'] for r in mine)}")
    base = {r["caption"]: r for r in made if r["conditioning"] == "none"}
    for cond in ("cam", "free"):
        pairs = [(r, base[r["caption"]]) for r in made if r["conditioning"] == cond and r["caption"] in base]
        if pairs:
            print(f"  {cond} vs none (same seed): identity higher in {sum(r['identity'] > b['identity'] for r, b in pairs)}"
                  f" of {len(pairs)}, colour higher in {sum(r.get('colour', 0) > b.get('colour', 0) for r, b in pairs)}"
                  f" of {len(pairs)}, seams lower in {sum(r['seams'] < b['seams'] for r, b in pairs)} of {len(pairs)}")
    refined = [r for r in rows if "refine" in r]
    if refined:
        lower = sum(r["refine"]["random"] < r["refine"]["none"] for r in refined)
        print(f"  randomized blending: seam ratio {np.mean([r['refine']['random'] for r in refined]):.3f} against "
              f"{np.mean([r['refine']['none'] for r in refined]):.3f} with r = 0; lower in {lower} of {len(refined)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="shapes-t2v", help="text-to-video model (default: the shipped shapes-t2v, whose "
                    "streaming/ folder holds its CAM and APM)")
    ap.add_argument("--frames", type=int, default=240)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--captions", type=int, default=5, help="the main caption and N - 1 held-out ones")
    ap.add_argument("--only", choices=["all", "main", "held-out"], default="all", help="which captions this run makes")
    ap.add_argument("--held-out-frames", type=int, help="frames of the held-out captions (default: --frames)")
    ap.add_argument("--summary", action="store_true", help="print the table of every row in OUT/rows.jsonl and stop "
                    "(runs split over processes append their rows there)")
    ap.add_argument("--conditionings", nargs="+", default=["cam", "free", "none"], choices=["cam", "free", "none"])
    ap.add_argument("--refine-strength", type=float, default=0.6)
    ap.add_argument("--no-refine", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--out", default="runs/generate_shapes")
    a = ap.parse_args()

    out = Path(a.out)
    if a.summary:
        summarize([json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines() if line.strip()], out)
        return
    import torch

    from videdit.generate.options import GenerateOptions
    from videdit.generate.refine import refine_frames
    from videdit.generate.stream import generate
    from videdit.generate.t2v import load_t2v
    from videdit.video import read_clip

    if a.threads:
        torch.set_num_threads(a.threads)
    out.mkdir(parents=True, exist_ok=True)
    model = load_t2v(a.model, device="cpu", dtype="fp32")
    chunk, overlap = 16, 8
    rows = []
    chosen = captions(a.captions)
    chosen = chosen[:1] if a.only == "main" else chosen[1:] if a.only == "held-out" else chosen
    defaults = GenerateOptions()
    print(f"# {a.model}, {a.frames} frames at 64x64, DDIM {a.steps} steps eta 1, guidance {a.guidance}, seed {a.seed}; "
          f"free: --free-start {defaults.free_start}, --reconstruction-guidance {defaults.reconstruction_guidance}")
    print(f"{'caption':44s} {'cond':5s} {'frame 0':16s} {'identity':>8s} {'bg':>5s} {'seams':>6s} "
          f"{'SCuts':>5s} {'adapt':>5s} {'s':>5s}")
    for caption in chosen:
        frames_n = a.frames if caption == MAIN_CAPTION else (a.held_out_frames or a.frames)
        borders = list(range(chunk, frames_n, chunk - overlap))
        for cond in a.conditionings:
            path = out / f"{caption.replace(' ', '-')}-{cond}.mp4"
            started = time.monotonic()
            opts = GenerateOptions(prompt=caption, model=a.model, frames=frames_n, conditioning=cond,
                                   steps=a.steps, guidance=a.guidance, seed=a.seed, size="64", progress=False,
                                   overwrite=True)
            generate(opts, path, model=model)
            frames = read_clip(path).frames
            row = {"caption": caption, "conditioning": cond, "frames": frames_n, **read(frames, background_of(caption)),
                   "seams": seam_ratio(frames, borders), "seconds": round(time.monotonic() - started),
                   "steps": a.steps, "model": a.model}
            rows.append(row)
            with open(out / "rows.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{caption:44s} {cond:5s} {row['frame0']:16s} {row['identity']:8.3f} {row['background']:5.2f} "
                  f"{row['seams']:6.2f} {row['scuts']:5d} {row['scuts_adaptive']:5d} {row['seconds']:5d}", flush=True)
    summarize(rows, out)
    refined = []
    if not a.no_refine and "none" in a.conditionings:
        c, o = 24, 8
        refine_borders = list(range(c - o, max(a.frames, a.held_out_frames or 0), c - o))
        print(f"\nrandomized blending: refine each 'none' video, strength {a.refine_strength}, C {c}, O {o}; "
              f"seams at the refiner's chunk borders")
        for caption in chosen:
            source = read_clip(out / f"{caption.replace(' ', '-')}-none.mp4").frames
            ratios = {}
            for blend in ("random", "none"):
                path = out / f"{caption.replace(' ', '-')}-none-refined-{blend}.mp4"
                opts = GenerateOptions(prompt=caption, refiner=a.model, refine_size="64", refine_steps=a.steps * 2,
                                       refine_strength=a.refine_strength, refine_blend=blend, seed=a.seed,
                                       guidance=a.guidance, progress=False, overwrite=True)
                refine_frames(iter(source), len(source), opts, path, model=model)
                ratios[blend] = seam_ratio(read_clip(path).frames, refine_borders)
            refined.append({"caption": caption, **ratios})
            with open(out / "rows.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps({"caption": caption, "refine": ratios, "strength": a.refine_strength}) + "\n")
            print(f"  {caption:44s} random {ratios['random']:.3f}  r = 0 {ratios['none']:.3f}", flush=True)
        print(f"  mean: random {np.mean([r['random'] for r in refined]):.3f}, "
              f"r = 0 {np.mean([r['none'] for r in refined]):.3f}")
    (out / "results.json").write_text(json.dumps({"args": vars(a), "rows": rows, "refine": refined}, indent=1))


if __name__ == "__main__":
    main()

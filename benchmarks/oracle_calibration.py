"""How well the ShapesWorld oracle reads shapes after a VAE round trip; the calibration of its thresholds.

    python benchmarks/oracle_calibration.py            # 800 training-stream scenes + 300 held-out ones
    python benchmarks/oracle_calibration.py --n 200 --json

Every model's output is decoded by the VAE, so the VAE round trip of a rendered scene is the best a
latent model can show the oracle. This prints, for clean renders and their round trips through the
shapes-sd VAE: the shape features of the blobs the oracle locates (percentiles per true shape), and how
often the oracle reads colour, shape and background right, with its thresholds
(`judge.STAR_MAX_SOLIDITY`, `CIRCLE_MIN_EXTENT`, `CIRCLE_MIN_FILL`) and with ideal-shape ones (0.80, 0.64,
0.82: about halfway between ideal shapes' values). The thresholds were chosen on the
training-stream scenes (seed 7); the held-out rows show that they carry over.
"""

from __future__ import annotations

import argparse
import json
from contextlib import contextmanager

import numpy as np
import torch

from videdit.shapes import evaluate, judge, weights_path, world

IDEAL = dict(STAR_MAX_SOLIDITY=0.80, CIRCLE_MIN_EXTENT=0.64, CIRCLE_MIN_FILL=0.82)


@contextmanager
def thresholds(values: dict):
    saved = {k: getattr(judge, k) for k in values}
    for k, v in values.items():
        setattr(judge, k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(judge, k, v)


def features(images: np.ndarray, scenes: list[world.Scene]) -> dict[str, np.ndarray]:
    """(solidity, extent, fill) of each located object's blob, by its true shape. Blobs are matched to objects
    by colour alone (objects that share their colour with another are left out), so that the data the
    thresholds are chosen on does not depend on the thresholds (`match_caption` prefers the asked shape)."""
    out: dict[str, list] = {s: [] for s in world.SHAPES}
    for im, scene in zip(images, scenes):
        found, _ = judge.locate(im)
        colours = [o.colour for o in scene.objects]
        for o in scene.objects:
            blobs = [f for f in found if f.colour == o.colour]
            if colours.count(o.colour) == 1 and len(blobs) == 1:
                out[o.shape].append(judge.shape_features(blobs[0].mask))
    return {k: np.array(v).reshape(-1, 3) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=800, help="training-stream scenes (the calibration set)")
    ap.add_argument("--n-held-out", type=int, default=300)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(2)
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(weights_path("shapes-sd") / "vae", torch_dtype=torch.float32)
    rng = np.random.default_rng(7)  # a training stream, below HELD_OUT_SEED
    sets = {"training stream": [world.random_scene(rng, n_objects=int(rng.integers(1, 3))) for _ in range(a.n)],
            "held out": evaluate.held_out_scenes(a.n_held_out)}
    report = {"thresholds": {k: getattr(judge, k) for k in IDEAL}, "ideal": IDEAL, "reading": {}, "features": {}}
    for name, scenes in sets.items():
        clean = np.stack([world.render(s)[0] for s in scenes])
        trip = evaluate.vae_round_trip(vae, clean)
        for kind, images in (("clean", clean), ("round trip", trip)):
            report["reading"][f"{name}, {kind}"] = {"oracle": evaluate.oracle_reading(images, scenes)}
            with thresholds(IDEAL):
                report["reading"][f"{name}, {kind}"]["ideal"] = evaluate.oracle_reading(images, scenes)
            if name == "training stream":
                report["features"][kind] = {
                    shape: {f: [round(float(np.percentile(v[:, i], p)), 2) for p in (5, 50, 95)]
                            for i, f in enumerate(("solidity", "extent", "fill"))}
                    for shape, v in features(images, scenes).items() if len(v)}
    if a.json:
        print(json.dumps(report, indent=1))
        return
    print("shape features of located blobs, training stream (5th / 50th / 95th percentile)")
    for kind, per_shape in report["features"].items():
        for shape, f in per_shape.items():
            print(f"  {kind:<10} {shape:<9} solidity {f['solidity']}  extent {f['extent']}  fill {f['fill']}")
    print(f"\noracle thresholds {report['thresholds']}; ideal-shape thresholds {IDEAL}")
    print(f"{'images':<32}{'shape (oracle)':>15}{'shape (ideal)':>15}{'colour':>8}{'bg':>6}")
    for name, r in report["reading"].items():
        print(f"{name:<32}{r['oracle']['shape']:>15.3f}{r['ideal']['shape']:>15.3f}"
              f"{r['oracle']['colour']:>8.3f}{r['oracle']['background']:>6.2f}")


if __name__ == "__main__":
    main()

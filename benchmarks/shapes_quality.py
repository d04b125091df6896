"""Quality bars of the ShapesWorld models, measured on held-out draws; prints a table.

    python benchmarks/shapes_quality.py                       # committed weights, full sizes
    python benchmarks/shapes_quality.py --n-sd 50 --n-ip2p 50 # quicker
    python benchmarks/shapes_quality.py --sd runs/shapes/sd/pipeline --json

The shapes-sd rows also cover DDIM inversion (50 steps) + regeneration PSNR and the `invert` edit
of a 16-frame red circle to blue, both through the project's own editing code (`videdit.edit`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from videdit.shapes import IP2P_GUIDANCE, evaluate, weights_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sd", type=Path, default=weights_path("shapes-sd"))
    ap.add_argument("--ip2p", type=Path, default=weights_path("shapes-ip2p"))
    ap.add_argument("--n-vae", type=int, default=500)
    ap.add_argument("--n-sd", type=int, default=300)
    ap.add_argument("--n-ip2p", type=int, default=300)
    ap.add_argument("--steps", type=int, default=30, help="DDIM steps for shapes-sd")
    ap.add_argument("--guidance", type=float, default=5.0, help="shapes-sd (the bar's 5)")
    ap.add_argument("--ip2p-guidance", type=float, nargs=2, default=IP2P_GUIDANCE, metavar=("TEXT", "IMAGE"),
                    help=f"shapes-ip2p's guidance scales (default {IP2P_GUIDANCE})")
    ap.add_argument("--n-inversion", type=int, default=3, help="8-frame clips for the inversion round trip (0: skip)")
    ap.add_argument("--no-recolour", action="store_true", help="skip the invert red -> blue circle check")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(2)
    rows = []  # (measure, value, bar)
    if (a.sd / "model_index.json").exists():
        pipe = evaluate.load_sd(a.sd)
        t = time.time()
        rows.append(("vae PSNR dB (held-out %d)" % a.n_vae, evaluate.vae_score(pipe.vae, a.n_vae), ">= 30"))
        s = evaluate.sd_scores(pipe, a.n_sd, guidance=a.guidance, steps=a.steps)
        rows += [(f"shapes-sd colour (n={a.n_sd})", s["colour"], ">= 0.90"), ("shapes-sd shape", s["shape"], ">= 0.80"), ("shapes-sd background", s["background"], ">= 0.90")]
        rows.append(("shapes-sd seconds", time.time() - t, ""))
        ceiling = evaluate.round_trip_reading(pipe.vae, evaluate.held_out_scenes(a.n_sd))["round_trip"]
        rows += [("the same captions' scenes rendered, VAE round trip (the ceiling): colour", ceiling["colour"], ""),
                 ("the same, VAE round trip: shape", ceiling["shape"], "")]
        if a.n_inversion:
            scores = evaluate.inversion_psnr(a.sd, a.n_inversion)
            rows.append((f"DDIM inversion + regeneration PSNR dB (mean of {a.n_inversion} clips)", sum(scores) / len(scores), ">= 25"))
        if not a.no_recolour:
            for inject in (0, 25):  # plain, then plug-and-play injection in the first 25 of 50 steps
                r = evaluate.invert_recolour(a.sd, inject_steps=inject)
                rows += [(f"invert red -> blue circle, 16 frames, --inject-steps {inject}: blue frames", r["blue"], ">= 0.90"),
                         (f"invert red -> blue circle, --inject-steps {inject}: PSNR outside dB", r["psnr_outside"], "")]
    else:
        rows.append((f"shapes-sd: no pipeline at {a.sd}", float("nan"), ""))
    if (a.ip2p / "model_index.json").exists():
        pipe = evaluate.load_ip2p(a.ip2p)
        t = time.time()
        s = evaluate.ip2p_scores(pipe, a.n_ip2p, *a.ip2p_guidance)
        rows.append((f"shapes-ip2p success (n={a.n_ip2p}, PSNR outside >= 25, guidance {a.ip2p_guidance})", s["success"], ">= 0.80"))
        rows += [(f"shapes-ip2p {k}", v, "") for k, v in s.items() if k.startswith(("success_", "psnr", "asked"))]
        rows.append(("shapes-ip2p seconds", time.time() - t, ""))
        ceiling = evaluate.ip2p_ceiling(pipe.vae, a.n_ip2p)
        rows += [("the same pairs' exact targets, VAE round trip (the ceiling): success", ceiling["success"], "")]
        rows += [(f"the same, VAE round trip: {k}", v, "") for k, v in ceiling.items() if k.startswith("success_")]
    else:
        rows.append((f"shapes-ip2p: no pipeline at {a.ip2p}", float("nan"), ""))
    if a.json:
        print(json.dumps([{"measure": m, "value": v, "bar": b} for m, v, b in rows], indent=2))
        return
    width = max(len(m) for m, _, _ in rows)
    print(f"{'measure':<{width}}  {'value':>8}  bar")
    for m, v, b in rows:
        print(f"{m:<{width}}  {v:8.3f}  {b}")


if __name__ == "__main__":
    main()

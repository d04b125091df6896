"""Acceptance of ``--method anchor`` on ShapesWorld, judged by the oracle (`videdit.shapes.judge`).

    python benchmarks/anchor_shapes.py [--frames 48] [--finetuned DIR]

A red circle moves across grass for 48 frames; the instruction is "make the circle blue". Printed:
- the fraction of frames in which the oracle calls the circle blue (acceptance: >= 90%);
- temporal stability by the oracle: the circle's frame-to-frame colour change (mean Delta E, lower
  is steadier) and the background's frame-to-frame PSNR (higher is steadier), for
  anchor editing with 1, 3 and 7 anchors, with per-frame (not shared) sampler noise, and for
  editing each frame on its own with diffusers' StableDiffusionInstructPix2PixPipeline (same
  model, steps and sampler; fresh noise per frame, and the same seed for every frame);
- with ``--finetuned DIR`` (a model from ``videdit finetune-equivariant shapes-ip2p shapes -o DIR``),
  the same for the finetuned editor.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

INSTRUCTION = "make the circle blue"


def moving_circle(n_frames: int = 48):
    """A red circle moving left to right over grass (no camera pan), with ground truth."""
    from videdit.shapes import world

    scene = world.Scene((world.Obj("circle", "red", 0.25, 0.5, 0.15),), "grass", bg_seed=7)
    spec = world.ClipSpec(scene, (world.Motion("linear", vx=0.5 / max(n_frames - 1, 1), vy=0.0),), n_frames, 0.0)
    return world.render_clip(spec)


def judge(frames: np.ndarray, clip) -> dict:
    from videdit.shapes import judge as oracle

    colours = [oracle.object_colour(f, m[0]) for f, m in zip(frames, clip.masks)]
    st = oracle.stability(frames, clip.masks, clip.pan_px)
    return {"blue_fraction": float(np.mean([c == "blue" for c in colours])),
            "object_delta_e": float(st["object_delta_e"][0]), "background_psnr": float(st["background_psnr"])}


def anchor_edit(model, clip, anchors: int, shared_noise: bool = True, steps: int = 10, seed: int = 0) -> np.ndarray:
    from videdit.config import make_options
    from videdit.diffusion import vae_decode
    from videdit.methods.anchor import edit_latents

    from videdit.shapes import method_options

    opts = make_options(dict(prompt=INSTRUCTION, method="anchor", anchors=anchors, steps=steps, seed=seed,
                             size=clip.frames.shape[1], progress=False, device="cpu",
                             **method_options("anchor", steps)))[0]
    latents, _ = edit_latents(model, clip.frames, INSTRUCTION, opts, shared_noise=shared_noise)
    return vae_decode(model, torch.stack([latents[f] for f in range(len(clip.frames))]), opts.vae_chunk)


def per_frame_edit(model_dir: str, clip, same_seed: bool, steps: int = 10, seed: int = 0) -> np.ndarray:
    """Each frame on its own with diffusers' InstructPix2Pix pipeline (Euler ancestral, same steps)."""
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline
    from PIL import Image

    from videdit.shapes import IP2P_GUIDANCE

    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(model_dir, safety_checker=None,
                                                                  requires_safety_checker=False,
                                                                  torch_dtype=torch.float32)  # fp16 weights, CPU
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    out = []
    for t, f in enumerate(clip.frames):
        g = torch.Generator().manual_seed(seed if same_seed else seed + t)
        img = pipe(INSTRUCTION, image=Image.fromarray(f), num_inference_steps=steps, guidance_scale=IP2P_GUIDANCE[0],
                   image_guidance_scale=IP2P_GUIDANCE[1], generator=g, output_type="np").images[0]
        out.append((img * 255).round().astype(np.uint8))
    return np.stack(out)


def edit_moving_circle(n_frames: int = 48, anchors: int = 3, model_name: str = "shapes-ip2p") -> dict:
    """The numbers the test checks: anchor editing vs each frame on its own (fresh noise per frame)."""
    from videdit.models import load_sd, resolve

    clip = moving_circle(n_frames)
    model = load_sd(model_name, device="cpu")
    a = judge(anchor_edit(model, clip, anchors), clip)
    p = judge(per_frame_edit(str(resolve(model_name)), clip, same_seed=False), clip)
    return {"blue_fraction": a["blue_fraction"], "object_delta_e_anchor": a["object_delta_e"],
            "object_delta_e_per_frame": p["object_delta_e"], "background_psnr_anchor": a["background_psnr"],
            "background_psnr_per_frame": p["background_psnr"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--model", default="shapes-ip2p")
    ap.add_argument("--finetuned", default=None, help="an equivariantly finetuned copy of --model")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from diffusers.utils import logging as dlog

    from videdit.models import load_sd, resolve

    dlog.set_verbosity_error()
    clip = moving_circle(args.frames)
    from videdit.shapes import IP2P_GUIDANCE

    print(f"{args.frames} frames, red circle moving over grass, instruction {INSTRUCTION!r}, 10 Euler ancestral steps, "
          f"guidance {IP2P_GUIDANCE[0]}, image guidance {IP2P_GUIDANCE[1]}")
    print(f"{'model':12s} {'editing':34s} {'blue':>6s} {'circle dE/frame':>16s} {'bg PSNR/frame':>14s} {'s':>6s}")
    models = [("base", args.model)] + ([("finetuned", args.finetuned)] if args.finetuned else [])
    for label, name in models:
        model = load_sd(name, device="cpu")
        runs = [(f"anchor, {k} anchor{'s' if k > 1 else ''}", lambda k=k: anchor_edit(model, clip, k)) for k in (1, 3, 7)]
        runs.append(("anchor, 3 anchors, noise per frame", lambda: anchor_edit(model, clip, 3, shared_noise=False)))
        runs.append(("each frame alone, fresh noise", lambda: per_frame_edit(str(resolve(name)), clip, False)))
        runs.append(("each frame alone, same seed", lambda: per_frame_edit(str(resolve(name)), clip, True)))
        for what, fn in runs:
            t0 = time.perf_counter()
            frames = fn()
            dt = time.perf_counter() - t0
            r = judge(frames, clip)
            print(f"{label:12s} {what:34s} {r['blue_fraction']:6.0%} {r['object_delta_e']:16.2f} "
                  f"{r['background_psnr']:14.2f} {dt:6.1f}", flush=True)
    src = judge(clip.frames, clip)
    print(f"{'source':12s} {'(unedited)':34s} {src['blue_fraction']:6.0%} {src['object_delta_e']:16.2f} "
          f"{src['background_psnr']:14.2f}")


if __name__ == "__main__":
    main()

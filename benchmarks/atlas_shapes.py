"""Acceptance of ``--method atlas`` on ShapesWorld with the shipped models, and its cost by clip length.

    python benchmarks/atlas_shapes.py [--frames 48] [--cost 24 240]
    python benchmarks/atlas_shapes.py --layers [--frames 8]

A red circle moves over grass while the camera pans (64 px, the models' size), masks from the renderer:
- object edit "make the circle blue" (shapes-ip2p edits the keyframes): the share of frames the
  oracle calls the circle blue, its frame-to-frame colour change (Delta E, after ground-truth motion
  compensation) and the background's frame-to-frame PSNR, against ``--method anchor`` (shapes-ip2p,
  3 anchors) and ``--method invert`` (shapes-sd, "a red circle on grass" -> "a blue circle on grass",
  injection in the first half of the steps) on the same clip;
- background edit "put it on sand" (shapes-ip2p edits the background atlas; the foreground is kept):
  the share of frames on sand, and of frames whose circle stays red;
- cost: the same edit with the same two keyframes on clips of --cost lengths (the same scene, the
  motion slowed to cross the same distance): seconds of editing with the layers built before (what
  goes through the model) and seconds including building the layers, and their ratios to the shortest.

``--layers``: a red circle and a yellow square on sand (benchmarks/localize_shapes.py's clip). The alpha
``auto:circle`` finds (cross-attention of "circle" in "a red circle and a yellow square on sand" during
the 10-step inversion, threshold 0.5) against the true circle, by shapes-ip2p and by shapes-sd; then two
foreground layers (auto:circle, the square's true masks) recoloured differently by shapes-ip2p: one
compound instruction for both, against one --fg-prompt per layer.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from videdit.shapes import IP2P_GUIDANCE, method_options  # noqa: E402
from videdit.shapes import judge as oracle  # noqa: E402
from videdit.shapes import world as W  # noqa: E402

INSTRUCTION = "make the circle blue"


def panning_circle(n_frames: int):
    """A red circle crossing half the frame over grass during ``n_frames``, the camera panning a third."""
    scene = W.Scene((W.Obj("circle", "red", 0.25, 0.5, 0.15),), "grass", bg_seed=7)
    step = 1.0 / max(n_frames - 1, 1)
    return W.render_clip(W.ClipSpec(scene, (W.Motion("linear", vx=0.5 * step, vy=0.0),), n_frames, 0.3 * step))


def mask_folder(clip, folder: Path) -> str:
    for t, m in enumerate(clip.masks[:, 0]):
        Image.fromarray(m.astype(np.uint8) * 255).save(folder / f"{t:05d}.png")
    return str(folder)


def judge(frames: np.ndarray, clip, colour: str) -> dict:
    colours = [oracle.object_colour(f, m[0]) for f, m in zip(frames, clip.masks)]
    st = oracle.stability(frames, clip.masks, clip.pan_px)
    return {"fraction": float(np.mean([c == colour for c in colours])), "delta_e": float(st["object_delta_e"][0]),
            "background_psnr": float(st["background_psnr"])}


ATLAS = dict(method="atlas", model="shapes-ip2p", size=64, steps=10, guidance=IP2P_GUIDANCE[0],
             image_guidance=IP2P_GUIDANCE[1], strength=1.0, progress=False, device="cpu", reconstruction=False)


def object_edits(clip, masks: str, steps_invert: int) -> None:
    import videdit

    runs = [
        ("atlas, keyframes auto (shapes-ip2p)", lambda: videdit.edit(clip.frames, INSTRUCTION, atlas_mask=masks, **ATLAS)),
        ("anchor, 3 anchors (shapes-ip2p)", lambda: videdit.edit(
            clip.frames, INSTRUCTION, method="anchor", model="shapes-ip2p", size=64, anchors=3, progress=False,
            device="cpu", **method_options("anchor", 10))),
        (f"invert, {steps_invert} steps (shapes-sd)", lambda: videdit.edit(
            clip.frames, "a blue circle on grass", source_prompt="a red circle on grass", method="invert",
            model="shapes-sd", size=64, steps=steps_invert, progress=False, device="cpu", reconstruction=False,
            **method_options("invert", steps_invert))),
    ]
    print(f"object edit {INSTRUCTION!r}, {len(clip.frames)} frames")
    print(f"{'method':40s} {'blue':>6s} {'circle dE/frame':>16s} {'bg PSNR/frame':>14s} {'s':>6s}")
    for name, fn in runs:
        t0 = time.perf_counter()
        res = fn()
        r = judge(res.frames, clip, "blue")
        extra = f"  keyframes {res.info['keyframes']}" if "keyframes" in res.info else ""
        print(f"{name:40s} {r['fraction']:6.0%} {r['delta_e']:16.2f} {r['background_psnr']:14.2f} "
              f"{time.perf_counter() - t0:6.1f}{extra}", flush=True)
    r = judge(clip.frames, clip, "blue")
    print(f"{'source (unedited)':40s} {r['fraction']:6.0%} {r['delta_e']:16.2f} {r['background_psnr']:14.2f}")


def background_edit(clip, masks: str) -> None:
    import videdit

    print("background edit 'put it on sand' (keyframes none: the foreground is kept)")
    for name, extra in (("the model (shapes-ip2p)", {}), ("--bg-editor ip2p (shapes-ip2p)",
                                                          dict(bg_editor="ip2p", editor_model="shapes-ip2p"))):
        res = videdit.edit(clip.frames, "put it on sand", atlas_mask=masks, bg_prompt="put it on sand",
                           **dict(ATLAS, keyframes="none"), **extra)
        sand = np.mean([oracle.background_class(f, m[0]) == "sand" for f, m in zip(res.frames, clip.masks)])
        red = np.mean([oracle.object_colour(f, m[0]) == "red" for f, m in zip(res.frames, clip.masks)])
        print(f"  {name:32s} sand in {sand:.0%} of frames, circle red in {red:.0%}", flush=True)


def cost(lengths: list[int], root: Path) -> None:
    import videdit
    from videdit.atlas import build_layers
    from videdit.atlas.commands import read_alpha_masks

    print(f"cost of {INSTRUCTION!r} with keyframes 0 and 12, by clip length (same scene, same path)")
    print(f"{'frames':>6s} {'editing s':>10s} {'x':>6s} {'with layers s':>14s} {'x':>6s}")
    base = None
    model = None
    for n in lengths:
        clip = panning_circle(n)
        folder = root / f"masks{n}"
        folder.mkdir()
        masks = mask_folder(clip, folder)
        if model is None:
            from videdit.models import load_sd

            model = load_sd("shapes-ip2p", device="cpu")
            videdit.edit(clip.frames, INSTRUCTION, atlas_mask=masks, keyframes="0,12", **dict(ATLAS, model=model))
        t0 = time.perf_counter()
        build_layers(clip.frames, read_alpha_masks([masks], list(range(n)), (64, 64))[0], use_cache=True)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        videdit.edit(clip.frames, INSTRUCTION, atlas_mask=masks, keyframes="0,12", **dict(ATLAS, model=model))
        edit_s = time.perf_counter() - t0
        base = base or (edit_s, edit_s + build_s)
        print(f"{n:>6d} {edit_s:>10.2f} {edit_s / base[0]:>6.2f} {edit_s + build_s:>14.2f} "
              f"{(edit_s + build_s) / base[1]:>6.2f}", flush=True)


def two_layers(frames: int, root: Path) -> None:
    import videdit
    from localize_shapes import SOURCE_PROMPT, circle_and_square

    video, circle, square = circle_and_square(frames)
    c, q = circle.astype(bool), square.astype(bool)
    common = dict(ATLAS, source_prompt=SOURCE_PROMPT, auto_threshold=0.5, keyframes=f"0,{frames - 1}", no_cache=True)
    print(f"auto:circle on a red circle and a yellow square, {frames} frames; threshold 0.5")
    print(f"{'model':12s} {'IoU with circle':>16s} {'circle covered':>15s} {'square covered':>15s} {'s':>6s}")
    for model in ("shapes-ip2p", "shapes-sd"):
        t0 = time.perf_counter()
        res = videdit.edit(video, INSTRUCTION, atlas_mask="auto:circle", **dict(common, model=model, keyframes="none"))
        m = res.extras["mask_circle"][..., 0] > 127
        print(f"{model:12s} {(m & c).sum() / (m | c).sum():>16.2f} {(m & c).sum() / c.sum():>15.2f} "
              f"{(m & q).sum() / q.sum():>15.2f} {time.perf_counter() - t0:>6.1f}", flush=True)
    folder = root / "square"
    folder.mkdir()
    for t, m in enumerate(square):
        Image.fromarray(m.astype(np.uint8) * 255).save(folder / f"{t:05d}.png")
    print("two layers (auto:circle, the square's masks), shapes-ip2p: share of frames with the circle blue, the square green")
    compound = "make the circle blue and the square green"
    for label, extra in ((f"one instruction {compound!r}", dict(prompt=compound)),
                         ("--fg-prompt 'make the circle blue' --fg-prompt 'make the square green'",
                          dict(prompt=INSTRUCTION, fg_prompt=["make the circle blue", "make the square green"]))):
        t0 = time.perf_counter()
        res = videdit.edit(video, atlas_mask=["auto:circle", str(folder)], **common, **extra)
        blue = np.mean([oracle.object_colour(f, m) == "blue" for f, m in zip(res.frames, circle)])
        green = np.mean([oracle.object_colour(f, m) == "green" for f, m in zip(res.frames, square)])
        print(f"  {label}: circle blue {blue:.2f}, square green {green:.2f} ({time.perf_counter() - t0:.1f} s)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--invert-steps", type=int, default=20)
    ap.add_argument("--cost", type=int, nargs="*", default=[24, 240])
    ap.add_argument("--skip-edits", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layers", action="store_true", help="only the auto:WORD alpha and two-layer check")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from diffusers.utils import logging as dlog

    dlog.set_verbosity_error()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["VIDEDIT_CACHE_DIR"] = str(root / "cache")
        if args.layers:
            two_layers(args.frames, root)
            return
        if not args.skip_edits:
            clip = panning_circle(args.frames)
            (root / "masks").mkdir()
            masks = mask_folder(clip, root / "masks")
            object_edits(clip, masks, args.invert_steps)
            background_edit(clip, masks)
        if args.cost:
            cost(args.cost, root)


if __name__ == "__main__":
    main()

"""`videdit demo`: a ShapesWorld clip edited by the ShapesWorld models that ship with videdit,
judged by the oracle. Runs anywhere: no download, no GPU.

Two circles of the same colour move across sand; the left one is asked to turn blue and the
right one to stay. The best method available does the edit (grain with one region per circle,
else invert with the target caption), and the oracle says in words what happened.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from .errors import UserError
from .shapes import judge, method_options, world

DEMO_COLOURS = ("red", "blue")  # source colour, asked colour of the left circle


def demo_clip(frames: int = 16) -> tuple[world.Clip, world.Scene]:
    """The demo's source clip and the scene it should become."""
    a = world.Obj("circle", DEMO_COLOURS[0], 0.28, 0.45, 0.15)
    b = world.Obj("circle", DEMO_COLOURS[0], 0.72, 0.55, 0.15)
    scene = world.Scene((a, b), "sand", 3)
    spec = world.ClipSpec(scene, (world.Motion("linear", 0.0, 0.008), world.Motion("linear", 0.0, -0.008)), frames)
    target = replace(scene, objects=(replace(a, colour=DEMO_COLOURS[1]), b))
    return world.render_clip(spec), target


def available_method() -> str:
    """grain if it is available in this version, else invert."""
    from .methods import get_method

    try:
        get_method("grain")
        return "grain"
    except UserError:
        return "invert"


def edit_demo(clip: world.Clip, target: world.Scene, method: str, model: str, steps: int, seed: int) -> np.ndarray:
    from .api import edit

    common = dict(model=model, steps=steps, seed=seed, size=clip.frames.shape[2], progress=False,
                  reconstruction=False, no_cache=True, source_prompt=clip.spec.scene.caption, strength=1.0)
    if method != "grain":
        return edit(clip.frames, target.caption, method="invert", **common, **method_options("invert", steps)).frames
    from .bench import write_mask_folder

    with tempfile.TemporaryDirectory() as tmp:  # one mask folder per circle
        regions = [f"{side}_circle={write_mask_folder(clip.masks[:, i], Path(tmp) / side)}:{world.object_phrase(obj)}"
                   for i, (side, obj) in enumerate(zip(("left", "right"), target.objects))]
        return edit(clip.frames, target.caption, method="grain", regions=regions, **common,
                    **method_options("grain", steps)).frames


def verdict(clip: world.Clip, edited: np.ndarray, target: world.Scene) -> list[str]:
    """The oracle's findings in words, one line each."""
    lines = []
    for i, (side, src, want) in enumerate(zip(("left", "right"), clip.spec.scene.objects, target.objects)):
        seen = [judge.object_colour(f, m) for f, m in zip(edited, clip.masks[:, i])]
        names, counts = np.unique([s or "none" for s in seen], return_counts=True)
        got = names[counts.argmax()]
        share = float(np.mean([s == want.colour for s in seen]))
        asked = f"asked {want.colour}" if want.colour != src.colour else "asked to stay"
        lines.append(f"{side} {src.shape}: {src.colour} -> {got} ({asked}; {want.colour} in {share:.0%} of frames)")
    region = clip.masks.any(1)
    psnr = judge.psnr_outside(edited, clip.frames, region)
    bgs = [judge.background_class(f, m) for f, m in zip(edited, region)]
    bg_ok = float(np.mean([b == target.background for b in bgs]))
    word = "unchanged" if bg_ok >= 0.9 and psnr >= 25 else "changed"
    lines.append(f"background {word}: {target.background} in {bg_ok:.0%} of frames, PSNR outside the circles {psnr:.1f} dB")
    stab = judge.stability(edited, clip.masks, clip.pan_px)
    lines.append(f"temporal stability: colour change {np.nanmean(stab['object_delta_e']):.2f} Delta E per frame, "
                 f"background {stab['background_psnr']:.1f} dB between frames")
    return lines


def run_demo(out: str | Path = "demo_out", method: str = "auto", model: str = "shapes-sd", frames: int = 16,
             steps: int = 25, seed: int = 0, overwrite: bool = False) -> tuple[Path, list[str]]:
    """Render, edit, judge; write ``out/`` (source, edited, side by side mp4 and gif, masks) atomically."""
    from .video import side_by_side, write_video

    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"{out} exists; pass --overwrite to replace it")
    method = available_method() if method == "auto" else method
    t0 = time.perf_counter()
    clip, target = demo_clip(frames)
    edited = edit_demo(clip, target, method, model, steps, seed)
    seconds = time.perf_counter() - t0
    lines = [f"method {method}, model {model}: {len(edited)} frames in {seconds:.1f} s"] + verdict(clip, edited, target)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp-", dir=out.parent if str(out.parent) else "."))
    try:
        fps = 8
        big = lambda x: world.upscale(x, 4)  # noqa: E731  the models' 64x64, enlarged for looking at
        write_video(tmp / "source.mp4", big(clip.frames), fps)
        write_video(tmp / "edited.mp4", big(edited), fps)
        sbs = side_by_side(big(clip.frames), big(edited))
        write_video(tmp / "side_by_side.mp4", sbs, fps)
        write_video(tmp / "side_by_side.gif", sbs, fps)
        masks = (clip.masks[:, 0, ..., None] * np.array([255, 80, 80]) + clip.masks[:, 1, ..., None] * np.array([80, 80, 255]))
        write_video(tmp / "masks.mp4", big(masks.clip(0, 255).astype(np.uint8)), fps)
        (tmp / "verdict.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out, lines

"""`videdit demo`: a ShapesWorld clip edited by the ShapesWorld models that ship with videdit,
judged by the oracle. Runs anywhere: no download, no GPU.

Two circles of the same colour move across sand; the left one is asked to turn blue and the
right one to stay. The best method available does the edit (in order of preference: grain with one
region per circle, anchor with the instruction "make the left circle blue", invert with the target
caption), and the oracle says in words what happened.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import UserError
from .shapes import judge, method_options, world

DEMO_COLOURS = ("red", "blue")  # source colour, asked colour of the left circle
DEMO_INSTRUCTION = "make the left circle blue"  # the same edit for the instruction editor (method anchor)
METHODS = ("grain", "anchor", "invert")  # in order of preference
MODELS = {"grain": "shapes-sd", "anchor": "shapes-ip2p", "invert": "shapes-sd"}  # each method's default model


def demo_clip(frames: int = 16) -> tuple[world.Clip, world.Scene]:
    """The demo's source clip and the scene it should become."""
    a = world.Obj("circle", DEMO_COLOURS[0], 0.28, 0.45, 0.15)
    b = world.Obj("circle", DEMO_COLOURS[0], 0.72, 0.55, 0.15)
    scene = world.Scene((a, b), "sand", 3)
    spec = world.ClipSpec(scene, (world.Motion("linear", 0.0, 0.008), world.Motion("linear", 0.0, -0.008)), frames)
    target = replace(scene, objects=(replace(a, colour=DEMO_COLOURS[1]), b))
    return world.render_clip(spec), target


def available_method(model: str | None = None) -> str:
    """The first of `METHODS` that this version has and whose model (`model`, else its default) is installed."""
    from .bench import installed
    from .methods import get_method

    for name in METHODS:
        try:
            get_method(name)
        except UserError:
            continue
        if installed(model or MODELS[name]):
            return name
    raise UserError("no ShapesWorld model is installed; reinstall videdit (the models ship inside the package)")


def edit_demo(clip: world.Clip, target: world.Scene, method: str, model: str, steps: int, seed: int,
              progress: bool = False) -> np.ndarray:
    """The demo's edit under `videdit.shapes.method_options`; `progress`: a bar per sampling loop on stderr."""
    from .api import edit

    if method == "anchor":  # the instruction editor on anchor frames, carried to the rest
        return edit(clip.frames, DEMO_INSTRUCTION, method="anchor", model=model, steps=steps, seed=seed,
                    size=clip.frames.shape[2], progress=progress, reconstruction=False,
                    **method_options("anchor", steps)).frames
    common = dict(model=model, steps=steps, seed=seed, size=clip.frames.shape[2], progress=progress,
                  reconstruction=False, no_cache=True, source_prompt=clip.spec.scene.caption)
    if method == "invert":
        return edit(clip.frames, target.caption, method="invert", **common, **method_options("invert", steps)).frames
    from .bench import write_mask_folder

    with tempfile.TemporaryDirectory() as tmp:  # one mask folder per circle
        regions = [f"{side}_circle={write_mask_folder(clip.masks[:, i], Path(tmp) / side)}:{world.object_phrase(obj)}"
                   for i, (side, obj) in enumerate(zip(("left", "right"), target.objects))]
        return edit(clip.frames, target.caption, method="grain", regions=regions, **common,
                    **method_options("grain", steps)).frames


def verdict(clip: world.Clip, edited: np.ndarray, target: world.Scene) -> list[str]:
    """The oracle's findings in words, one line each."""
    v = judge.judge_clip(edited, clip.frames, clip.masks, edited=(0, 1), pan_px=clip.pan_px)
    lines = []
    for i, (side, src, want) in enumerate(zip(("left", "right"), clip.spec.scene.objects, target.objects)):
        colour, shape = v.majority(i)
        share = float(np.mean([c == want.colour for c in v.colours[i]]))
        asked = f"asked {want.colour}" if want.colour != src.colour else "asked to stay"
        lines.append(f"{side} {src.shape}: {src.colour} -> {colour or 'none'} ({asked}; {want.colour} in {share:.0%} "
                     f"of frames; shape read as {shape or 'none'})")
    bg_ok = float(np.mean([b == target.background for b in v.backgrounds]))
    word = "unchanged" if bg_ok >= 0.9 and v.psnr_outside >= 25 else "changed"
    lines.append(f"background {word}: {target.background} in {bg_ok:.0%} of frames, "
                 f"PSNR outside the circles {v.psnr_outside:.1f} dB")
    lines.append(f"temporal stability: colour change {np.nanmean(v.object_delta_e):.2f} Delta E per frame, "
                 f"background {v.background_psnr:.1f} dB between frames")
    return lines


def run_demo(out: str | Path = "demo_out", method: str = "auto", model: str | None = None, frames: int = 16,
             steps: int = 20, seed: int = 0, overwrite: bool = False,
             say: Callable[[str], None] | None = None) -> tuple[Path, list[str]]:
    """Render, edit, judge; write ``out/`` (source, edited, side by side mp4 and gif, masks) atomically.
    `model`: default the method's ShapesWorld model (`MODELS`). `say`: told what is being done as it
    starts, and the sampling loops show progress bars (with the time left) on stderr."""
    from .masks import overlay_masks
    from .video import side_by_side, write_video

    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"{out} exists; pass --overwrite to replace it")
    if method != "auto" and method not in METHODS:
        raise UserError(f"unknown demo method {method!r}; choose auto, {', '.join(METHODS)}")
    if frames < 2 or steps < 1:
        raise UserError(f"the demo needs at least 2 frames and 1 step (got --frames {frames}, --steps {steps})")
    method = available_method(model) if method == "auto" else method
    model = model or MODELS[method]
    t0 = time.perf_counter()
    clip, target = demo_clip(frames)
    if say:
        say(f"editing {frames} frames with method {method} and model {model}, {steps} steps "
            f"({'anchor frames, then the rest' if method == 'anchor' else 'DDIM inversion, then editing'})")
    edited = edit_demo(clip, target, method, model, steps, seed, progress=say is not None)
    seconds = time.perf_counter() - t0
    if say:
        say(f"edited in {seconds:.0f} s; judging and writing {out}/")
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
        masks = overlay_masks(big(clip.frames), [clip.masks[:, 0], clip.masks[:, 1]],
                              names=["left circle: asked to turn blue", "right circle: to stay red"])
        write_video(tmp / "masks.mp4", masks, fps)
        (tmp / "verdict.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out, lines

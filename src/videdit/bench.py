"""`videdit bench shapes`: a fixed, seeded suite of ShapesWorld edit tasks, judged by the oracle.

Each task is a rendered clip with ground truth (masks, attributes, motion) and an asked edit.
Every method that can take a task edits it; the oracle (`videdit.shapes.judge`) reports:
- success: fraction of frames in which every edited object shows the asked colour and shape,
  every other object keeps its own, and the background class is the asked one;
- bg PSNR: PSNR against the source outside the edited objects' masks (all frames pooled);
  for a background edit, PSNR inside the objects instead (they should stay; their anti-aliased edges excluded);
- stability: mean frame-to-frame colour change (Delta E) of the edited objects and background
  PSNR between consecutive frames after ground-truth motion compensation;
- s/frame: wall time of the edit per frame.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .shapes import judge, method_options, world


@dataclass(frozen=True)
class Task:
    name: str
    spec: world.ClipSpec
    target: world.Scene          # the scene as it should look after the edit
    kind: str                    # "recolour", "reshape" or "background"
    edited: tuple[int, ...]      # indices of edited objects (empty for a background edit)
    instruction: str             # for instruction editors

    @property
    def source_caption(self) -> str:
        return self.spec.scene.caption

    @property
    def target_caption(self) -> str:
        return self.target.caption


def _two(colour_a: str, colour_b: str, shape_a="circle", shape_b="circle", bg="grass", seed=7):
    scene = world.Scene((world.Obj(shape_a, colour_a, 0.28, 0.5, 0.15), world.Obj(shape_b, colour_b, 0.72, 0.5, 0.15)),
                        bg, seed)
    motions = (world.Motion("linear", 0.0, 0.006), world.Motion("linear", 0.0, -0.006))
    return scene, motions


def tasks(frames: int = 16) -> list[Task]:
    """The fixed suite (seeded; the same clips every run)."""
    out = []
    scene, motions = _two("red", "red")
    spec = world.ClipSpec(scene, motions, frames)
    tgt = replace(scene, objects=(replace(scene.objects[0], colour="blue"), scene.objects[1]))
    out.append(Task("recolour one of two", spec, tgt, "recolour", (0,), "make the left circle blue"))
    tgt = replace(scene, objects=(replace(scene.objects[0], colour="blue"), replace(scene.objects[1], colour="green")))
    out.append(Task("recolour both differently", spec, tgt, "recolour", (0, 1), "make the left circle blue and the right circle green"))
    scene, motions = _two("yellow", "blue", "square", "circle", bg="sand", seed=11)
    spec = world.ClipSpec(scene, motions, frames)
    tgt = replace(scene, objects=(replace(scene.objects[0], shape="triangle"), scene.objects[1]))
    out.append(Task("change a shape", spec, tgt, "reshape", (0,), "turn the square into a triangle"))
    single = world.Scene((world.Obj("circle", "red", 0.5, 0.5, 0.17),), "grass", 5)
    spec = world.ClipSpec(single, (world.Motion("bounce", 0.012, 0.008),), frames)
    out.append(Task("change the background", spec, replace(single, background="sand"), "background", (),
                    "put it on sand"))
    spec = world.ClipSpec(single, (world.Motion("bounce", 0.015, 0.01),), 48)
    tgt = replace(single, objects=(replace(single.objects[0], colour="blue"),))
    out.append(Task("48-frame consistency", spec, tgt, "recolour", (0,), "make the circle blue"))
    return out


def score(task: Task, clip: world.Clip, edited: np.ndarray) -> dict:
    """The oracle's verdict on an edited clip (see the module docstring)."""
    v = judge.judge_clip(edited, clip.frames, clip.masks, task.edited, clip.pan_px)
    want = task.target.objects
    ok = [all(v.colours[i][t] == o.colour and v.shapes[i][t] == o.shape for i, o in enumerate(want))
          and v.backgrounds[t] == task.target.background for t in range(len(edited))]
    if task.edited:
        region = clip.masks[:, list(task.edited)].any(1)
        psnrs = [judge.psnr_outside(edited[t:t + 1], clip.frames[t:t + 1], region[t:t + 1]) for t in range(len(edited))]
    else:
        psnrs = [judge.psnr_inside_objects(e, f, m) for e, f, m in zip(edited, clip.frames, clip.masks)]
    de = [v.object_delta_e[i] for i in (task.edited or range(clip.masks.shape[1]))]
    finite = [p for p in psnrs if math.isfinite(p)]
    return {"success": float(np.mean(ok)), "bg_psnr": float(np.mean(finite)) if finite else float("inf"),
            "object_delta_e": float(np.nanmean(de)) if de else float("nan"),
            "bg_stability_psnr": v.background_psnr}


Runner = Callable[[Task, world.Clip, dict], "np.ndarray | None"]


def run_invert(task: Task, clip: world.Clip, cfg: dict) -> np.ndarray | None:
    from .api import edit

    res = edit(clip.frames, task.target_caption, method="invert", model=cfg["sd"], source_prompt=task.source_caption,
               steps=cfg["steps"], strength=cfg["strength"], guidance=cfg["guidance"], size=clip.frames.shape[2],
               progress=False, reconstruction=False, no_cache=True, **method_options("invert", cfg["steps"]))
    return res.frames


def write_mask_folder(masks: np.ndarray, folder: Path) -> Path:
    """(T, H, W) bool -> ``folder/00000.png ...``, the mask source layout of ``--region``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for t, m in enumerate(masks):
        Image.fromarray(m.astype(np.uint8) * 255).save(folder / f"{t:05d}.png")
    return folder


def run_grain(task: Task, clip: world.Clip, cfg: dict) -> np.ndarray | None:
    """One region per edited object (its ground-truth mask, its target phrase); for a background
    edit, one region for everything but the objects, prompted with the new background."""
    import tempfile

    from .api import edit

    with tempfile.TemporaryDirectory() as tmp:
        if task.edited:
            regions = [f"obj{i}={write_mask_folder(clip.masks[:, i], Path(tmp) / f'obj{i}')}:"
                       f"{world.object_phrase(task.target.objects[i])}" for i in task.edited]
        else:
            regions = [f"background={write_mask_folder(~clip.masks.any(1), Path(tmp) / 'bg')}:{task.target.background}"]
        return edit(clip.frames, task.target_caption, method="grain", model=cfg["sd"], regions=regions,
                    source_prompt=task.source_caption, steps=cfg["steps"], strength=cfg["strength"],
                    guidance=cfg["guidance"], size=clip.frames.shape[2], progress=False, reconstruction=False,
                    no_cache=True, **method_options("grain", cfg["steps"])).frames


def run_anchor(task: Task, clip: world.Clip, cfg: dict) -> np.ndarray | None:
    """The instruction with the ShapesWorld instruction editor; skipped when it is not installed."""
    from .api import edit

    if not installed(cfg["ip2p"]):
        return None
    return edit(clip.frames, task.instruction, method="anchor", model=cfg["ip2p"], size=clip.frames.shape[2],
                steps=cfg["steps"], progress=False, reconstruction=False,
                **method_options("anchor", cfg["steps"])).frames


def installed(model: str) -> bool:
    from .errors import UserError
    from .models import resolve

    try:
        resolve(model, allow_download=False)
    except UserError:
        return False
    return True


def true_first_frame(task: Task, clip: world.Clip) -> np.ndarray:
    """The exact edit of the first frame: the target scene rendered in the source's first state."""
    return world.render_clip(replace(task.spec, scene=task.target, n_frames=1), clip.frames.shape[1]).frames[0]


def i2v_edit(task: Task, clip: world.Clip, cfg: dict, **first) -> np.ndarray | None:
    """Method i2v with the ShapesWorld image-to-video model (``--steps`` sampling steps, twice as many
    inversion steps, the method's 1:2 default); skipped when that model is not installed."""
    from .api import edit

    if not installed(cfg["i2v"]):
        return None
    return edit(clip.frames, task.target_caption, method="i2v", model=cfg["i2v"], size=clip.frames.shape[2],
                steps=cfg["steps"], inversion_steps=2 * cfg["steps"], progress=False, reconstruction=False,
                no_cache=True, **first, **method_options("i2v", cfg["steps"])).frames


def run_i2v(task: Task, clip: world.Clip, cfg: dict) -> np.ndarray | None:
    """First frame edited exactly (ground truth): the row measures the propagation alone."""
    target = true_first_frame(task, clip)
    return i2v_edit(task, clip, cfg, first_frame_editor=lambda image: target)


def run_i2v_ip2p(task: Task, clip: world.Clip, cfg: dict) -> np.ndarray | None:
    """First frame edited by the ShapesWorld instruction editor with the task's instruction: the whole
    pipeline a user runs with ``--first-frame-editor ip2p``."""
    if not installed(cfg["ip2p"]):
        return None
    return i2v_edit(task, clip, cfg, first_frame_editor="ip2p", instruction=task.instruction, editor_model=cfg["ip2p"])


def run_atlas(task: Task, clip: world.Clip, cfg: dict) -> np.ndarray | None:
    """The instruction on the layered atlases, shapes-ip2p editing the keyframes (foreground: the edited
    objects' ground-truth masks) or, for a background edit, the background atlas (foreground: every
    object, kept); skipped when the instruction editor is not installed."""
    import tempfile

    from .api import edit

    if not installed(cfg["ip2p"]):
        return None
    objects = list(task.edited) or list(range(clip.masks.shape[1]))
    extra = {} if task.edited else dict(keyframes="none", bg_prompt=task.instruction)
    with tempfile.TemporaryDirectory() as tmp:
        masks = write_mask_folder(clip.masks[:, objects].any(1), Path(tmp) / "fg")
        return edit(clip.frames, task.instruction, method="atlas", model=cfg["ip2p"], atlas_mask=str(masks),
                    size=clip.frames.shape[2], steps=cfg["steps"], strength=1.0, progress=False, reconstruction=False,
                    no_cache=True, **method_options("anchor", cfg["steps"]), **extra).frames


RUNNERS: dict[str, Runner] = {"invert": run_invert, "grain": run_grain, "anchor": run_anchor, "i2v": run_i2v,
                              "i2v+ip2p": run_i2v_ip2p, "atlas": run_atlas}


def run_suite(methods: list[str] | None = None, sd: str = "shapes-sd", ip2p: str = "shapes-ip2p",
              i2v: str = "shapes-i2v", steps: int = 30,
              strength: float = 0.8, guidance: float = 5.0, frames: int = 16, only: list[str] | None = None,
              progress: Callable[[str], None] | None = None) -> list[dict]:
    """Every (task, method) pair the method can take: the oracle's scores and seconds per frame."""
    from .api import get_model
    from .config import make_options

    from .errors import UserError

    suite = tasks(frames)
    names = [t.name for t in suite]
    for kind, asked, known in (("method", methods, list(RUNNERS)), ("task", only, names)):
        unknown = [x for x in asked or () if x not in known]
        if unknown:
            raise UserError(f"unknown {kind} {unknown[0]!r}; choose from: {', '.join(repr(k) for k in known)}")
    if steps < 1 or frames < 2:
        raise UserError(f"the suite needs at least 2 frames and 1 step (got --frames {frames}, --steps {steps})")
    cfg = dict(steps=steps, strength=strength, guidance=guidance, ip2p=ip2p, i2v=i2v)
    cfg["sd"] = get_model(make_options(dict(prompt="x", model=sd))[0])
    rows = []
    for task in suite:
        if only and task.name not in only:
            continue
        clip = world.render_clip(task.spec)
        for name in methods or list(RUNNERS):
            if progress:
                progress(f"{task.name}: {name}")
            t0 = time.perf_counter()
            edited = RUNNERS[name](task, clip, cfg)
            if edited is None:
                continue
            row = dict(task=task.name, method=name, frames=len(edited), **score(task, clip, edited),
                       s_per_frame=(time.perf_counter() - t0) / len(edited))
            rows.append(row)
    return rows


def format_rows(rows: list[dict]) -> str:
    head = f"{'task':28s} {'method':8s} {'success':>8s} {'bg PSNR':>8s} {'obj dE':>7s} {'bg stab':>8s} {'s/frame':>8s}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['task']:28s} {r['method']:8s} {r['success']:8.0%} {r['bg_psnr']:8.1f} "
                     f"{r['object_delta_e']:7.2f} {r['bg_stability_psnr']:8.1f} {r['s_per_frame']:8.2f}")
    return "\n".join(lines)


def to_json(rows: list[dict]) -> str:
    return json.dumps([{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
                       for r in rows], indent=2)

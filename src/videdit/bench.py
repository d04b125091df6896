"""`videdit bench shapes`: a fixed, seeded suite of ShapesWorld edit tasks, judged by the oracle.

Each task is a rendered clip with ground truth (masks, attributes, motion) and an asked edit.
Every method that can take a task edits it; the oracle (`videdit.shapes.judge`) reports:
- success: fraction of frames in which every edited object shows the asked colour and shape,
  every other object keeps its own, and the background class is the asked one; and each of these
  four parts alone (colour, shape, kept, bg), which says why a row fails;
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
    """The oracle's verdict on an edited clip (see the module docstring). Besides `success`, the share of
    frames in which each part of it holds: the edited objects' colour (`colour`) and shape (`shape`), the
    other objects kept (`kept`; 1 when every object is edited), the background (`background`)."""
    v = judge.judge_clip(edited, clip.frames, clip.masks, task.edited, clip.pan_px)
    want = task.target.objects
    frames = range(len(edited))
    kept = [i for i in range(len(want)) if i not in task.edited]

    def holds(objs, colour: bool = True, shape: bool = True) -> list[bool]:
        return [all((not colour or v.colours[i][t] == want[i].colour) and (not shape or v.shapes[i][t] == want[i].shape)
                    for i in objs) for t in frames]

    parts = {"colour": holds(task.edited, shape=False), "shape": holds(task.edited, colour=False), "kept": holds(kept),
             "background": [v.backgrounds[t] == task.target.background for t in frames]}
    ok = np.logical_and.reduce([parts[k] for k in parts])
    if task.edited:
        region = clip.masks[:, list(task.edited)].any(1)
        psnrs = [judge.psnr_outside(edited[t:t + 1], clip.frames[t:t + 1], region[t:t + 1]) for t in frames]
    else:
        psnrs = [judge.psnr_inside_objects(e, f, m) for e, f, m in zip(edited, clip.frames, clip.masks)]
    de = [v.object_delta_e[i] for i in (task.edited or range(clip.masks.shape[1]))]
    finite = [p for p in psnrs if math.isfinite(p)]
    return {"success": float(np.mean(ok)), **{k: float(np.mean(x)) for k, x in parts.items()},
            "bg_psnr": float(np.mean(finite)) if finite else float("inf"),
            "object_delta_e": float(np.nanmean(de)) if de else float("nan"),
            "bg_stability_psnr": v.background_psnr}


Runner = Callable[[Task, world.Clip, dict], np.ndarray]


def run_invert(task: Task, clip: world.Clip, cfg: dict) -> np.ndarray:
    from .api import edit

    res = edit(clip.frames, task.target_caption, method="invert", model=cfg["sd"], source_prompt=task.source_caption,
               steps=cfg["steps"], size=clip.frames.shape[2], progress=False, reconstruction=False, no_cache=True,
               **method_options("invert", cfg["steps"]))
    return res.frames


def write_mask_folder(masks: np.ndarray, folder: Path) -> Path:
    """(T, H, W) bool -> ``folder/00000.png ...``, the mask source layout of ``--region``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for t, m in enumerate(masks):
        Image.fromarray(m.astype(np.uint8) * 255).save(folder / f"{t:05d}.png")
    return folder


def run_grain(task: Task, clip: world.Clip, cfg: dict) -> np.ndarray:
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
                    source_prompt=task.source_caption, steps=cfg["steps"], size=clip.frames.shape[2], progress=False,
                    reconstruction=False, no_cache=True, **method_options("grain", cfg["steps"])).frames


def run_anchor(task: Task, clip: world.Clip, cfg: dict) -> np.ndarray:
    """The instruction with the ShapesWorld instruction editor."""
    from .api import edit

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


def i2v_edit(task: Task, clip: world.Clip, cfg: dict, **first) -> np.ndarray:
    """Method i2v with the ShapesWorld image-to-video model (``--steps`` sampling steps, twice as many
    inversion steps, the method's 1:2 default)."""
    from .api import edit

    return edit(clip.frames, task.target_caption, method="i2v", model=cfg["i2v"], size=clip.frames.shape[2],
                steps=cfg["steps"], inversion_steps=2 * cfg["steps"], progress=False, reconstruction=False,
                no_cache=True, **first, **method_options("i2v", cfg["steps"])).frames


def run_i2v(task: Task, clip: world.Clip, cfg: dict) -> np.ndarray:
    """First frame edited exactly (ground truth): the row measures the propagation alone."""
    target = true_first_frame(task, clip)
    return i2v_edit(task, clip, cfg, first_frame_editor=lambda image: target)


def run_i2v_ip2p(task: Task, clip: world.Clip, cfg: dict) -> np.ndarray:
    """First frame edited by the ShapesWorld instruction editor with the task's instruction: the whole
    pipeline a user runs with ``--first-frame-editor ip2p``."""
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
NEEDS = {"invert": ("sd",), "grain": ("sd",), "anchor": ("ip2p",), "i2v": ("i2v",), "i2v+ip2p": ("i2v", "ip2p"),
         "atlas": ("ip2p",)}  # models


@dataclass
class Progress:
    """Where a suite run stands after a row: rows done of all, seconds so far and an estimate of those left."""
    done: int
    total: int
    elapsed_s: float
    left_s: float | None  # None until a row has been timed

    def line(self) -> str:
        left = "" if self.left_s is None else f", about {_duration(self.left_s)} left"
        return f"[{self.done}/{self.total}] {_duration(self.elapsed_s)} elapsed{left}"


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(round(seconds)), 60)
    return f"{minutes}m{s:02d}s" if minutes else f"{s}s"


def estimate_left(rows: list[dict], pending: list[tuple[str, int]]) -> float | None:
    """Seconds the `pending` (method, frames) runs should take: each at its method's mean seconds per
    frame in `rows` so far (a method not yet timed: the mean over all rows); None before any row."""
    if not rows:
        return None
    overall = float(np.mean([r["s_per_frame"] for r in rows]))
    per_method = {m: float(np.mean([r["s_per_frame"] for r in rows if r["method"] == m])) for m in {r["method"] for r in rows}}
    return sum(per_method.get(m, overall) * n for m, n in pending)


def plan_suite(methods: list[str] | None = None, ip2p: str = "shapes-ip2p", i2v: str = "shapes-i2v", steps: int = 30,
               frames: int = 16, only: list[str] | None = None) -> list[tuple[Task, str]]:
    """The (task, method) runs of a suite, in order: `only` the named tasks (default all) by `methods`
    (default all), leaving out methods whose model is not installed. Bad names stop here (`UserError`)."""
    from .errors import UserError

    suite = tasks(frames)
    names = [t.name for t in suite]
    for kind, asked, known in (("method", methods, list(RUNNERS)), ("task", only, names)):
        unknown = [x for x in asked or () if x not in known]
        if unknown:
            raise UserError(f"unknown {kind} {unknown[0]!r}; choose from: {', '.join(repr(k) for k in known)}")
    if steps < 1 or frames < 2:
        raise UserError(f"the suite needs at least 2 frames and 1 step (got --frames {frames}, --steps {steps})")
    here = {"sd": True, "ip2p": installed(ip2p), "i2v": installed(i2v)}
    return [(task, name) for task in suite if not only or task.name in only
            for name in methods or list(RUNNERS) if all(here[key] for key in NEEDS[name])]


def run_suite(methods: list[str] | None = None, sd: str = "shapes-sd", ip2p: str = "shapes-ip2p",
              i2v: str = "shapes-i2v", steps: int = 30, frames: int = 16, only: list[str] | None = None,
              on_row: Callable[[dict, Progress], None] | None = None) -> list[dict]:
    """The oracle's scores and seconds per frame of each run of `plan_suite`. Each method runs under
    `videdit.shapes.method_options`, the options of the README's ShapesWorld checks.
    `on_row(row, progress)` is called as each row is done."""
    from .api import get_model
    from .config import make_options

    runs = plan_suite(methods, ip2p, i2v, steps, frames, only)
    cfg = dict(steps=steps, ip2p=ip2p, i2v=i2v, sd=get_model(make_options(dict(prompt="x", model=sd))[0]))
    rows: list[dict] = []
    t_start = time.perf_counter()
    clips: dict[str, world.Clip] = {}
    for k, (task, name) in enumerate(runs):
        clip = clips.setdefault(task.name, world.render_clip(task.spec))
        t0 = time.perf_counter()
        edited = RUNNERS[name](task, clip, cfg)
        rows.append(dict(task=task.name, method=name, frames=len(edited), **score(task, clip, edited),
                         s_per_frame=(time.perf_counter() - t0) / len(edited)))
        if on_row:
            pending = [(m, t.spec.n_frames) for t, m in runs[k + 1:]]
            on_row(rows[-1], Progress(k + 1, len(runs), time.perf_counter() - t_start, estimate_left(rows, pending)))
    return rows


COLUMNS = (("task", "26s", "task"), ("method", "8s", "method"), ("success", ">7.0%", "success"),
           ("colour", ">6.0%", "colour"), ("shape", ">6.0%", "shape"), ("kept", ">5.0%", "kept"),
           ("bg", ">5.0%", "background"), ("bg PSNR", ">7.1f", "bg_psnr"), ("obj dE", ">6.2f", "object_delta_e"),
           ("bg stab", ">7.1f", "bg_stability_psnr"), ("s/frame", ">7.2f", "s_per_frame"))
LEGEND = """\
success  share of frames in which all four of the next columns hold (the oracle, videdit.shapes.judge)
colour   share of frames in which every edited object shows the asked colour (under its source mask)
shape    share of frames in which every edited object shows the asked shape
kept     share of frames in which every object not asked to change keeps its colour and shape
bg       share of frames whose background is the asked one
bg PSNR  dB against the source outside the edited objects (a background edit: inside the objects, which
         should stay); higher keeps more of what was not asked to change
obj dE   mean colour change of the edited objects (all objects for a background edit) from one frame to the
         next, CIELAB Delta E; lower is steadier
bg stab  dB between consecutive frames' backgrounds after the ground-truth camera motion; higher is steadier
s/frame  seconds of the edit per frame, this machine, this run
methods  invert, grain: shapes-sd; anchor: shapes-ip2p; i2v: shapes-i2v from the exact first frame;
         i2v+ip2p: shapes-i2v from the first frame shapes-ip2p edits. Options per method:
         videdit.shapes.method_options (the README's ShapesWorld checks use the same)"""


def format_header() -> str:
    head = " ".join(_cell(title, spec, title=True) for title, spec, _ in COLUMNS)
    return head + "\n" + "-" * len(head)


def _cell(value, spec: str, title: bool = False) -> str:
    if title:  # the titles take the values' width and alignment
        width = "".join(c for c in spec.split(".")[0] if c.isdigit())
        return f"{value:{'>' if spec.startswith('>') else '<'}{width}s}"
    return f"{value:{spec}}"


def format_row(row: dict) -> str:
    return " ".join(_cell(row[key], spec) for _, spec, key in COLUMNS)


def to_json(rows: list[dict]) -> str:
    return json.dumps([{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
                       for r in rows], indent=2)

"""`videdit ui`: one web page for every method, on the same Python API as the CLI (`videdit.api`).

The page, top to bottom:
- input: upload a video (any format the CLI reads) or pick a bundled ShapesWorld example; the frame
  selection and working size, with the selected first frame shown at the working size;
- method and options: the controls are built from `EditOptions`' field metadata (type, default, help,
  choices), so a new option appears here without code; options of one method (their help starts with
  "grain:", "i2v:", ...) show only under that method, and everything but the main ones is folded away;
- grain: regions painted on the first frame, one editor layer per region, written one per line as on the
  command line (``NAME=layerN:PROMPT``, or ``NAME=auto:WORD:PROMPT``), with a preview over the clip;
- i2v: the edited first frame, uploaded or painted over the source's, previewed before propagating;
- run: a progress bar that follows the method's own progress bars (inversion, editing, reconstruction),
  a cancel button that stops at the next step and removes the job's folder, one job at a time (queue);
- result: source, edit and reconstruction side by side, the run folder as a zip, `--eval` as a table.

Bad input gets the CLI's one line (``videdit: error: ...``) in the page. The app serves files from its
own work folder only (uploads, examples, jobs), limits upload size, listens on 127.0.0.1 unless told
otherwise, and opens a public link only with ``--share``.
"""

import dataclasses
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # the page works offline and reports nothing

import gradio as gr  # noqa: E402

from .config import METHODS, EditOptions, option_help  # noqa: E402
from .errors import UserError  # noqa: E402

log = logging.getLogger("videdit")

# Options the page sets itself: it follows the progress bars, needs the run folder, writes fresh job
# folders, and keeps its log in the page. `first_frame` comes from the i2v editor.
FIXED = {"progress": True, "run_folder": True, "overwrite": False, "verbose": False}
FROM_WIDGETS = ("first_frame",)
SELECTION = ("frames", "stride", "start", "size")            # beside the input
MAIN = ("prompt", "source_prompt", "method", "model", "strength", "steps", "guidance", "seed")  # unfolded
REGION_LINE = re.compile(r"^layer\s*(\d+)$", re.IGNORECASE)   # NAME=layerN:PROMPT
# videdit generate: set by the page (fresh job folders, its own progress), and the options shown unfolded
GENERATE_FIXED = {"progress": True, "overwrite": False, "resume": False}
GENERATE_MAIN = ("prompt", "model", "frames", "chunk", "overlap", "size", "steps", "guidance", "seed")
PREVIEW_MIN_SIDE = 256   # small frames (ShapesWorld's 64 px) are enlarged for painting; masks are resized back


def error_line(exc: BaseException) -> str:
    """The CLI's one line for a bad input (`videdit.cli.main`)."""
    return f"videdit: error: {exc}"


# ---------------------------------------------------------------------------------------------------------
# Controls from EditOptions' metadata

def option_fields() -> list[dataclasses.Field]:
    """The fields of `EditOptions` the page shows (all but those it sets itself)."""
    return [f for f in dataclasses.fields(EditOptions) if f.name not in FIXED and f.name not in FROM_WIDGETS]


def methods_of(f: dataclasses.Field) -> tuple[str, ...]:
    """The methods an option belongs to, read from its help ("grain: ...", "invert, grain: ..."); () for all."""
    head, sep, _ = f.metadata["help"].partition(":")
    if not sep:
        return ()
    return tuple(m for m in re.split(r"[,\s]+", head) if m in METHODS)


def generate_fields() -> list[dataclasses.Field]:
    """The fields of `GenerateOptions` (videdit generate) the page shows."""
    from .generate.options import GenerateOptions

    return [f for f in dataclasses.fields(GenerateOptions) if f.name not in GENERATE_FIXED]


def generate_groups() -> dict[str, list[str]]:
    """generate's options: main (unfolded), refine (the ``refine`` switch and its group), advanced (the rest)."""
    groups: dict[str, list[str]] = {"main": [], "refine": [], "advanced": []}
    for f in generate_fields():
        group = ("main" if f.name in GENERATE_MAIN else
                 "refine" if f.name == "refine" or f.metadata.get("group") == "refine" else "advanced")
        groups[group].append(f.name)
    return groups


def option_groups() -> dict[tuple[str, ...], list[str]]:
    """Option names by the methods they belong to: () holds the common ones (main or advanced)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for f in option_fields():
        if f.name in SELECTION or f.name in MAIN:
            continue
        groups.setdefault(methods_of(f), []).append(f.name)
    return groups


def _kind(f: dataclasses.Field) -> tuple[str, bool]:
    """('int' | 'float' | 'bool' | 'str', optional) from the field's annotation."""
    parts = [p.strip() for p in str(f.type).split("|")]
    return parts[0], "None" in parts


def model_presets(kinds: tuple[str, ...] | None = None) -> list[tuple[str, str]]:
    """The model presets (of ``kinds``: "sd", "t2v", ...; all when None) as dropdown choices."""
    from .models import PRESETS

    return [(name, name) for name, preset in PRESETS.items() if kinds is None or preset.kind in kinds]


def make_control(f: dataclasses.Field, value=dataclasses.MISSING, models: dict[str, list] | None = None,
                 prefix: str = "opt-") -> gr.components.Component:
    """A widget for one option: its help as info, its CLI flag named, its default as the value.

    ``models`` maps the names of free-text model options to the presets offered (default: ``model``, every
    preset, or empty for the method's own); ``prefix`` starts the widget's element id."""
    kind, optional = _kind(f)
    value = f.default if value is dataclasses.MISSING else value
    flag = "--" + f.name.replace("_", "-")
    common = dict(label=f.name.replace("_", " "), info=f"{option_help(f)} ({flag})",
                  elem_id=prefix + f.name.replace("_", "-"))
    if "choices" in f.metadata:
        return gr.Dropdown(list(f.metadata["choices"]), value=value, **common)
    models = {"model": [("by method", "")] + model_presets()} if models is None else models
    if f.name in models:  # a free text option; the presets are offered
        return gr.Dropdown(models[f.name], value=value or "", allow_custom_value=True, **common)
    if kind == "bool":
        return gr.Checkbox(value=bool(value), **common)
    if kind in ("int", "float") and not optional:
        return gr.Number(value=value, precision=0 if kind == "int" else None, **common)
    if kind in ("int", "float"):  # a number that may stay empty (its default); a Number would send 0
        return gr.Textbox(value="" if value is None else str(value), placeholder="empty: the default", **common)
    return gr.Textbox(value=value or "", lines=2 if f.name.endswith("prompt") else 1, **common)


def options_from_values(names: list[str], values: list, options=EditOptions, fixed: dict = FIXED) -> dict:
    """Widget values -> option layer for `make_options` (or ``options``' constructor, after `coerced`): an
    empty optional field means its default; ``fixed`` are the options the page sets itself."""
    types = {f.name: f for f in dataclasses.fields(options)}
    layer = {}
    for name, value in zip(names, values):
        kind, optional = _kind(types[name])
        if value is None or (optional and isinstance(value, str) and not value.strip()):
            continue
        if isinstance(value, str) and kind in ("int", "float"):
            value = value.strip()  # make_options turns it into a number, or says what is wrong
        if kind == "int" and isinstance(value, float) and value.is_integer():
            value = int(value)
        layer[name] = value
    return dict(layer, **fixed)


def coerced(layer: dict, options) -> dict:
    """``layer``'s values as the types of ``options``' fields, or the CLI's line for one that is not."""
    from .config import _coerce

    types = {f.name: str(f.type) for f in dataclasses.fields(options)}
    return {name: _coerce(name, value, types[name]) for name, value in layer.items()}


# ---------------------------------------------------------------------------------------------------------
# A job: progress that follows the method's tqdm bars, and cancellation at the next step

class Cancelled(Exception):
    """The page's cancel button stopped the run."""


class Job:
    """One edit in a worker thread: its folder, its bars (outermost first), its log, its cancel flag."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.cancel = threading.Event()
        self.bars: list[list] = []          # [desc, step, total] per active bar
        self.entries: dict[int, list] = {}  # id(bar) -> its entry in bars
        self.log: list[str] = []
        self.thread: threading.Thread | None = None
        self.result = None
        self.error: BaseException | None = None
        self.lock = threading.Lock()

    def fraction_and_text(self) -> tuple[float, str]:
        """Overall fraction (outer bars weigh their inner ones) and "inversion 3/20 · ..." text."""
        with self.lock:
            bars = [list(b) for b in self.bars]
        fraction, scale = 0.0, 1.0
        for _, step, total in bars:
            if total:
                fraction += scale * min(step, total) / total
                scale /= total
        text = " · ".join(f"{desc or 'step'} {step}/{total or '?'}" for desc, step, total in bars)
        return min(fraction, 1.0), text


def _in_job(job: Job) -> bool:
    return job.thread is not None and threading.get_ident() == job.thread.ident


def _bar_entry(job: Job, bar) -> list:
    """The [desc, step, total] entry of ``bar`` in ``job``'s bars, added when new."""
    with job.lock:
        entry = job.entries.get(id(bar))
        if entry is None:
            entry = job.entries[id(bar)] = [getattr(bar, "desc", "").rstrip(": "), 0, bar.total]
            job.bars.append(entry)
    return entry


def _drop_bar(job: Job, bar) -> None:
    with job.lock:
        entry = job.entries.pop(id(bar), None)
        job.bars[:] = [b for b in job.bars if b is not entry]


@contextmanager
def following(job: Job) -> Iterator[None]:
    """While inside, every tqdm bar in ``job``'s thread reports to it and stops on cancel.

    The methods show their progress with tqdm, iterated (``desc`` inversion, editing, reconstruction,
    anchors) or updated by hand (generate's chunks, refine's steps); the page follows those same bars
    rather than a second account of the steps.
    """
    from tqdm import std

    original_iter, original_update, original_close = std.tqdm.__iter__, std.tqdm.update, std.tqdm.close

    def __iter__(bar):
        if not _in_job(job):
            yield from original_iter(bar)
            return
        entry = _bar_entry(job, bar)
        try:
            for step, item in enumerate(original_iter(bar)):
                if job.cancel.is_set():
                    raise Cancelled
                entry[1] = step
                yield item
            entry[1] = entry[2] or entry[1]
        finally:
            _drop_bar(job, bar)

    def update(bar, n=1):
        done = original_update(bar, n)
        if _in_job(job):
            _bar_entry(job, bar)[1] = bar.n
            if job.cancel.is_set():
                close(bar)  # the loop that updates it stops here
                raise Cancelled
        return done

    def close(bar):
        if _in_job(job):
            _drop_bar(job, bar)
        return original_close(bar)

    std.tqdm.__iter__, std.tqdm.update, std.tqdm.close = __iter__, update, close
    try:
        yield
    finally:
        std.tqdm.__iter__, std.tqdm.update, std.tqdm.close = original_iter, original_update, original_close


class _JobLog(logging.Handler):
    def __init__(self, job: Job):
        super().__init__(logging.INFO)
        self.job = job
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))

    def emit(self, record):
        if self.job.thread is not None and record.thread == self.job.thread.ident:
            self.job.log.append(self.format(record))


# ---------------------------------------------------------------------------------------------------------
# Inputs: the first frame, painted regions, the i2v first frame

def first_frame(path: str, start: int, size: int) -> tuple[np.ndarray, str]:
    """The first selected frame at the working size, and a line about the clip."""
    from .video import read_clip, resize_frames, working_size

    if int(size) < 64:
        raise UserError(f"--size must be at least 64, got {size}")
    clip = read_clip(path, frames=1, start=int(start))
    w, h = clip.size
    work = working_size(w, h, int(size))
    frame = resize_frames(clip.frames, work)[0] if work != (w, h) else clip.frames[0]
    return frame, f"{Path(path).name}: {w}x{h}, {clip.fps:.3g} fps; working size {work[0]}x{work[1]}"


def enlarged(frame: np.ndarray) -> np.ndarray:
    """``frame`` enlarged by a whole factor so that its short side is at least `PREVIEW_MIN_SIDE` (for painting)."""
    factor = max(1, math.ceil(PREVIEW_MIN_SIDE / min(frame.shape[:2])))
    return frame.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else frame


def editor_value(background: np.ndarray | None) -> dict | None:
    return None if background is None else {"background": background, "layers": [], "composite": None}


def save_layers(editor: dict | None, folder: Path) -> list[Path]:
    """Each painted layer of the region editor as a mask image (inside: painted, alpha > 0)."""
    from PIL import Image

    paths = []
    for i, layer in enumerate((editor or {}).get("layers") or [], start=1):
        layer = np.asarray(layer)
        alpha = layer[..., 3] if layer.ndim == 3 and layer.shape[2] == 4 else np.asarray(layer).any(axis=-1)
        path = folder / f"layer{i}.png"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(((alpha > 0) * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def _inside_folder(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path.is_file() and folder in path.parents


def page_regions(text: str, layers: list[Path], examples: Path | None = None) -> list:
    """Regions from the page's lines, ``NAME=layerN:PROMPT`` or ``NAME=auto:WORD:PROMPT`` (the CLI's
    ``--region`` syntax, with painted layers for mask paths), or a mask of a bundled example (a file of the
    app's ``examples`` folder, named relative to it): the page reads no other file."""
    from .masks import Region, parse_region_arg, validate_regions

    regions = []
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        region = parse_region_arg(line.strip())
        if region.auto_word is None:
            match = REGION_LINE.match(region.mask)
            if not match and examples is not None and _inside_folder(examples / region.mask, examples):
                regions.append(Region(region.name, str(examples / region.mask), region.prompt))
                continue
            if not match:
                raise UserError(f"region {region.name!r}: the page takes painted layers (layer1, layer2, ...), "
                                f"auto:WORD or a bundled example's mask as masks, not {region.mask!r}")
            region = Region(region.name, str(painted_layer(int(match[1]), layers, f"region {region.name!r}")),
                            region.prompt)
        regions.append(region)
    return validate_regions(regions)


def painted_layer(number: int, layers: list[Path], what: str) -> Path:
    """The mask file of painted layer ``number`` (from 1), or a `UserError` naming ``what`` asked for it."""
    if not 1 <= number <= len(layers):
        raise UserError(f"{what}: layer{number} is not painted (the editor has "
                        f"{len(layers)} layer{'s' if len(layers) != 1 else ''})")
    if not _painted(layers[number - 1]):
        raise UserError(f"{what}: layer{number} is empty; paint the region on it")
    return layers[number - 1]


def atlas_takes_auto() -> bool:
    """Whether this videdit's --atlas-mask finds a foreground from a word (auto:WORD), read from its help."""
    return "auto:WORD" in EditOptions.__dataclass_fields__["atlas_mask"].metadata["help"]


def page_atlas_masks(text: str, layers: list[Path], examples: Path | None = None) -> str | list[str] | None:
    """--atlas-mask from the page: one line per foreground layer, ``layerN`` (painted on the first frame, the
    same mask for every frame, as one image is on the command line), ``auto:WORD`` where this videdit takes
    it, or a bundled example's mask; empty: the foreground from motion. The page reads no other file."""
    masks = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        match = REGION_LINE.match(line)
        if match:
            masks.append(str(painted_layer(int(match[1]), layers, "--atlas-mask")))
        elif line.startswith("auto:") and atlas_takes_auto():
            masks.append(line)
        elif examples is not None and _inside_folder(examples / line, examples):
            masks.append(str(examples / line))
        else:
            raise UserError("--atlas-mask: the page takes painted layers (layer1, layer2, ...)"
                            + (", auto:WORD" if atlas_takes_auto() else "") + f" or a bundled example's mask, "
                            f"not {line!r}")
    if len(masks) > 1 and not EditOptions.__dataclass_fields__["atlas_mask"].metadata.get("repeat"):
        raise UserError(f"--atlas-mask: this videdit takes one foreground layer, got {len(masks)} lines")
    return None if not masks else masks[0] if len(masks) == 1 else masks


def _painted(path: Path) -> bool:
    from PIL import Image

    with Image.open(path) as image:
        return bool(np.asarray(image).any())


def composite_frame(editor: dict | None) -> np.ndarray | None:
    """The i2v editor's image (the source's first frame as painted over, or an uploaded one), RGB."""
    if not editor:
        return None
    image = editor.get("composite")
    if image is None:
        image = editor.get("background")
    if image is None:
        return None
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 4:  # flatten on white where transparent
        alpha = image[..., 3:4].astype(np.float32) / 255
        image = (image[..., :3] * alpha + 255 * (1 - alpha)).round().astype(np.uint8)
    return image[..., :3].astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------
# Bundled examples: the ShapesWorld clips, edited by the ShapesWorld models that ship with videdit

def _demo_example(method: str, steps: int = 20) -> dict:
    """The demo's clip (two red circles on sand, the left one asked to turn blue; `videdit.demo`)."""
    from .demo import DEMO_INSTRUCTION, MODELS, demo_clip
    from .shapes import method_options, world

    clip, target = demo_clip(16)
    # as `videdit demo`: no reconstruction (tick it to see the inversion check; it adds a third to the time)
    settings = dict(method=method, model=MODELS[method], steps=steps, frames=16, size=clip.frames.shape[2], seed=0,
                    strength=1.0, reconstruction=False, source_prompt=clip.spec.scene.caption, prompt=target.caption)
    settings.update(method_options(method, steps))  # the checked settings win (grain and invert carry a strength)
    example = dict(frames=clip.frames, settings=settings)
    if method == "anchor":
        settings.update(prompt=DEMO_INSTRUCTION, source_prompt="", strength=0.8)
    if method == "grain":  # one mask per circle, its ground truth in every frame (as `videdit demo`)
        example["masks"] = {f"{side}_circle": clip.masks[:, i] for i, side in enumerate(("left", "right"))}
        example["regions"] = "\n".join(f"{side}_circle={{masks}}/{side}_circle.mp4:{world.object_phrase(obj)}"
                                       for side, obj in zip(("left", "right"), target.objects))
    return example


def _square_example(steps: int = 20) -> dict:
    """Method i2v's check: a red square crossing grass, its first frame re-rendered blue."""
    from .shapes import method_options
    from .shapes.evaluate import square_clips

    source, truth = square_clips(8)
    settings = dict(method="i2v", model="shapes-i2v", steps=steps, inversion_steps=2 * steps, frames=8,
                    reconstruction=False,
                    size=source.frames.shape[2], seed=0, prompt=truth.spec.scene.caption,
                    **method_options("i2v", steps))
    return dict(frames=source.frames, settings=settings, first_frame=truth.frames[0])


def _circle_atlas_example(steps: int = 10) -> dict:
    """Method atlas's check (tests/test_atlas_method.py): a red circle crossing grass, its keyframes 0 and 11
    made blue by shapes-ip2p, the circle's true mask as the foreground (a mask video of the app's examples)."""
    from .shapes import IP2P_GUIDANCE
    from .shapes import world as W

    scene = W.Scene((W.Obj("circle", "red", 0.3, 0.5, 0.15),), "grass", 7)
    clip = W.render_clip(W.ClipSpec(scene, (W.Motion("linear", 0.012, 0.0),), 12, 0.008), 64)
    settings = dict(method="atlas", model="shapes-ip2p", prompt="make the circle blue", source_prompt="", steps=steps,
                    frames=12, size=64, seed=0, strength=1.0, guidance=IP2P_GUIDANCE[0], image_guidance=IP2P_GUIDANCE[1],
                    keyframes="0,11", reconstruction=False, atlas_mask="{masks}/circle.mp4")
    return dict(frames=clip.frames, settings=settings, masks={"circle": clip.masks[:, 0]})


EXAMPLES = {
    "ShapesWorld: two red circles, left one blue (grain, shapes-sd)": lambda: _demo_example("grain"),
    "ShapesWorld: two red circles, left one blue (anchor, shapes-ip2p)": lambda: _demo_example("anchor"),
    "ShapesWorld: two red circles, left one blue (invert, shapes-sd)": lambda: _demo_example("invert"),
    "ShapesWorld: a red square carried blue from its first frame (i2v, shapes-i2v)": _square_example,
    "ShapesWorld: a red circle crossing grass made blue in its atlas (atlas, shapes-ip2p)": _circle_atlas_example,
}


# ---------------------------------------------------------------------------------------------------------
# The app

def _zip_folder(files: list[Path], root: Path, target: Path) -> Path:
    """``files`` (folders recursively) into ``target``, written under a temporary name, then renamed."""
    tmp = target.with_name(target.name + ".part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in files:
            for path in ([item] if item.is_file() else sorted(p for p in item.rglob("*") if p.is_file())):
                archive.write(path, path.relative_to(root))
    os.replace(tmp, target)
    return target


def run_notes(info: dict) -> list[str]:
    """What the terminal says about a run's meaning, for the page: the translation used, the regions found."""
    from .localize import describe_region
    from .translate import translation_line

    lines = [translation_line(SimpleNamespace(translation=info["translation"]))] if info.get("translation") else []
    return lines + [describe_region(name, found) for name, found in (info.get("found_regions") or {}).items()]


def eval_rows(evaluation: dict | None) -> list[list[str]]:
    """`--eval`'s metrics as table rows: metric, value, variant or why unavailable."""
    from .evaluate import LABELS, _format_value, _format_variant

    rows = []
    for name, entry in ((evaluation or {}).get("metrics") or {}).items():
        value = entry.get("value")
        shown = _format_value(name, value) if value is not None else "-"
        note = f"unavailable: {entry['unavailable']}" if entry.get("unavailable") else _format_variant(entry["variant"])
        rows.append([LABELS.get(name, name), shown, note])
    return rows


ATLAS_IMAGES = {"atlas_bg": "background atlas", "atlas_bg_edited": "background atlas, edited",
                "atlas_fg": "foreground atlas", "atlas_fg_edited": "foreground atlas, edited"}


def _existing(path: Path) -> str | None:
    return str(path) if path.is_file() else None


def atlas_images(run_folder: Path) -> list[tuple[str, str]]:
    """Method atlas's layers in the run folder (atlas_bg.png, atlas_fg.png, edited ones, further foreground
    layers atlas_fg2.png, ...), with captions; [] for other methods."""
    shown = []
    for path in sorted(run_folder.glob("atlas_*.png")):
        layer = re.fullmatch(r"atlas_fg(\d+)(_edited)?", path.stem)
        caption = ATLAS_IMAGES.get(path.stem) or (
            f"foreground atlas {layer[1]}" + (", edited" if layer[2] else "") if layer else path.stem)
        shown.append((str(path), caption))
    return shown


class App:
    """The page's state: its work folder (the only folder it serves) and the running job per session."""

    def __init__(self, workdir: str | Path):
        self.workdir = Path(workdir).resolve()
        for sub in ("uploads", "examples", "jobs", "previews"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self.jobs: dict[str, Job] = {}
        self.names = [f.name for f in option_fields()]
        self.generate_names = [f.name for f in generate_fields()]

    # --- input ---------------------------------------------------------------------------------------
    def example_path(self, name: str) -> tuple[Path, dict]:
        from .video import write_video

        if name not in EXAMPLES:
            raise UserError(f"unknown example {name!r}")
        example = EXAMPLES[name]()
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60]
        path = self.workdir / "examples" / f"{slug}.mp4"
        if not path.exists():
            write_video(path, example["frames"], 8)
        for name, masks in example.get("masks", {}).items():  # mask videos, white inside
            mask_path = self.workdir / "examples" / slug / f"{name}.mp4"
            if not mask_path.exists():
                mask_path.parent.mkdir(exist_ok=True)
                write_video(mask_path, np.repeat(masks[..., None] * np.uint8(255), 3, axis=-1), 8)
        if "regions" in example:
            example["regions"] = example["regions"].format(masks=slug)
        if example["settings"].get("atlas_mask"):
            example["settings"]["atlas_mask"] = example["settings"]["atlas_mask"].format(masks=slug)
        return path, example

    def new_folder(self, kind: str) -> Path:
        folder = self.workdir / kind / (time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6])
        folder.mkdir(parents=True)
        return folder

    # --- run -----------------------------------------------------------------------------------------
    def prepare(self, video, region_editor, region_text, i2v_editor, values, folder: Path):
        """Options and extra inputs of one run, validated as the CLI validates them."""
        from .config import make_options

        if not video:
            raise UserError("no input video: upload one or pick an example")
        layer = options_from_values(self.names, values)
        extra = {}
        if layer.get("method") == "grain":
            regions = page_regions(region_text, save_layers(region_editor, folder / "inputs"), self.workdir / "examples")
            if regions:
                extra["regions"] = regions
        if layer.get("method") == "atlas":
            layer["atlas_mask"] = page_atlas_masks(layer.get("atlas_mask"), save_layers(region_editor, folder / "inputs"),
                                                   self.workdir / "examples")
            if layer.get("bg_atlas") and not _inside_folder(Path(layer["bg_atlas"]), self.workdir):
                raise UserError("--bg-atlas: the page reads no file named by path; render an edited atlas with "
                                "videdit atlas render on the command line")
        if layer.get("method") == "i2v" and not layer.get("first_frame_editor"):
            image = composite_frame(i2v_editor)
            if image is None:
                raise UserError("method i2v needs an edited first frame: paint or upload it in the first-frame "
                                "editor, or name a first-frame editor (ip2p) in the i2v options")
            from PIL import Image

            (folder / "inputs").mkdir(exist_ok=True)
            layer["first_frame"] = str(folder / "inputs" / "first_frame.png")
            Image.fromarray(image).save(layer["first_frame"])
        opts, _ = make_options(layer)
        return opts, extra

    @contextmanager
    def job(self, session: str) -> Iterator[Job]:
        """A new job of ``session`` with its folder and its log, forgotten when done."""
        job = Job(self.new_folder("jobs"))
        self.jobs[session] = job
        handler = _JobLog(job)
        log.addHandler(handler)
        if not log.isEnabledFor(logging.INFO):  # as `videdit.api` does for an edit
            log.setLevel(logging.INFO)
        try:
            yield job
        finally:
            log.removeHandler(handler)
            if self.jobs.get(session) is job:
                del self.jobs[session]

    @staticmethod
    def work(job: Job, fn, progress):
        """``fn()`` in ``job``'s worker thread, its bars followed into ``progress``; its result, or its error
        raised here (`Cancelled` when the page's cancel stopped it)."""
        def target():
            try:
                job.result = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the page's thread
                job.error = exc

        job.thread = threading.Thread(target=target, name="videdit-ui-job", daemon=True)
        with following(job):
            job.thread.start()
            progress(0.0, desc="loading the model")
            while job.thread.is_alive():
                job.thread.join(0.25)
                fraction, text = job.fraction_and_text()
                if text:
                    progress(fraction, desc=text)
        if job.error is not None:
            raise job.error
        return job.result

    @staticmethod
    def failed(job: Job, exc: Exception) -> dict:
        """What the page shows for a run that stopped; its folder is removed (nothing half-written stays)."""
        shutil.rmtree(job.folder, ignore_errors=True)
        if isinstance(exc, Cancelled):
            status = "cancelled: nothing was written"
        elif isinstance(exc, UserError):
            status = error_line(exc)
        else:  # shown in the page; the server keeps running
            log.error("run failed", exc_info=exc)
            status = f"videdit: failed: {type(exc).__name__}: {exc}"
        return dict(status=status, log="\n".join(job.log))

    def run(self, session: str, video, region_editor, region_text, i2v_editor, values, progress) -> dict:
        """Run one edit in a worker thread while following its bars; returns what the page shows."""
        from .api import run_edit

        with self.job(session) as job:
            try:
                opts, extra = self.prepare(video, region_editor, region_text, i2v_editor, values, job.folder)
                output = job.folder / "edited.mp4"
                res = self.work(job, lambda: run_edit(video, opts, output, extra=extra), progress)
            except Exception as exc:  # noqa: BLE001 - Cancelled, UserError or a failure, each shown
                return self.failed(job, exc)
            folder, run_folder = job.folder, res.run_folder
            archive = _zip_folder([output, run_folder], folder, folder / f"videdit-{folder.name}.zip")
            shown = {k: (run_folder / f"{k}.mp4") for k in ("source", "edited", "reconstruction")}
            done = (f"done: {len(res.frames)} frames {res.frames.shape[2]}x{res.frames.shape[1]} in "
                    f"{res.info.get('total_s', 0):.1f} s (run {res.info.get('run_id')})")
            return dict(status="\n\n".join([done, *run_notes(res.info)]),  # Markdown: one paragraph each
                        **{k: (str(p) if p.exists() else None) for k, p in shown.items()},
                        output=str(output), archive=str(archive), eval=eval_rows(res.evaluation),
                        atlas=atlas_images(run_folder), atlas_reconstruction=_existing(run_folder /
                                                                                       "atlas_reconstruction.mp4"),
                        log="\n".join(job.log))

    def run_generate(self, session: str, values, progress) -> dict:
        """`videdit generate` (with ``refine`` when ticked) in a worker thread, following its bar over chunks."""
        from .generate.options import GenerateOptions
        from .generate.stream import Plan, generate
        from .video import read_clip

        with self.job(session) as job:
            try:
                opts = GenerateOptions(**coerced(options_from_values(self.generate_names, values, GenerateOptions,
                                                                     GENERATE_FIXED), GenerateOptions)).validate()
                output = job.folder / "generated.mp4"
                chunks = Plan(opts.frames, opts.chunk, opts.overlap).chunks
                started = time.monotonic()

                def run():  # in the job's thread, so that its log reaches the page
                    log.info("generate %d frames with %s: %d chunk(s) of %d frames, each after the first conditioned "
                             "on %d (conditioning %s), %d steps, seed %d", opts.frames, opts.model, chunks, opts.chunk,
                             opts.overlap, opts.conditioning, opts.steps, opts.seed)
                    done = generate(opts, output)
                    log.info("wrote %s and its run folder %s_run", done.name, done.stem)
                    return done

                self.work(job, run, progress)
            except Exception as exc:  # noqa: BLE001 - Cancelled, UserError or a failure, each shown
                return self.failed(job, exc)
            from .api import run_folder_for

            folder, run_folder = job.folder, run_folder_for(output)
            archive = _zip_folder([output, run_folder], folder, folder / f"videdit-{folder.name}.zip")
            clip = read_clip(output)
            w, h = clip.size
            done = (f"done: {len(clip.frames)} frames {w}x{h} in {chunks} chunk{'s' if chunks > 1 else ''}, "
                    f"{time.monotonic() - started:.1f} s" + (f", refined by {opts.refiner}" if opts.refine else ""))
            return dict(status=done, video=str(output), archive=str(archive), log="\n".join(job.log))

    def cancel(self, session: str) -> str:
        job = self.jobs.get(session)
        if job is None:
            return "nothing is running"
        job.cancel.set()
        return "cancelling at the next step..."

    # --- previews ------------------------------------------------------------------------------------
    def region_preview(self, video, region_editor, region_text, values) -> tuple[str | None, str]:
        """The painted regions over the selected clip (auto:WORD regions appear in the run folder)."""
        from .config import make_options
        from .masks import load_mask_source, overlay_masks
        from .video import read_clip, resize_frames, working_size, write_video

        if not video:
            raise UserError("no input video: upload one or pick an example")
        folder = self.new_folder("previews")
        regions = page_regions(region_text, save_layers(region_editor, folder), self.workdir / "examples")
        painted = [r for r in regions if r.auto_word is None]
        if not painted:
            raise UserError("no painted region to preview: paint a layer and add a line NAME=layer1:PROMPT")
        opts, _ = make_options(dict(options_from_values(self.names, values), prompt="preview"))
        clip = read_clip(video, frames=opts.frames, stride=opts.stride, start=opts.start)
        work = working_size(*clip.size, opts.size)
        frames = resize_frames(clip.frames, work)
        masks = [load_mask_source(r.mask, list(range(len(frames))), work) for r in painted]
        path = write_video(folder / "regions.mp4", overlay_masks(frames, masks), clip.fps)
        auto = [r.name for r in regions if r.auto_word is not None]
        note = f"{len(painted)} painted region(s) over {len(frames)} frames" + (
            f"; {', '.join(auto)} (auto) will be found during inversion and written to the run folder" if auto else "")
        return str(path), note


def _named(fn, names: list[str], special: tuple[str, ...] = ()):
    """``fn(*values)`` with a signature naming its inputs, so that the page's API (gradio_client) takes
    ``prompt=..., strength=...`` as keywords; ``special`` leads: ``request`` (gr.Request), ``progress``."""
    import inspect

    params = [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request)
              if name == "request" else
              inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress())
              for name in special]
    params += [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None) for n in names]

    def wrapper(*args):
        return fn(*args)

    wrapper.__signature__ = inspect.Signature(params)
    wrapper.__annotations__ = {"request": gr.Request} if "request" in special else {}
    wrapper.__name__ = fn.__name__
    return wrapper


def generate_tab(app: App) -> None:
    """The page's second tab: `videdit generate`, its controls from `GenerateOptions`' metadata."""
    fields_by_name = {f.name: f for f in generate_fields()}
    groups = generate_groups()
    t2v = {"model": model_presets(("t2v",)), "refiner": model_presets(("t2v",))}
    controls: dict[str, gr.components.Component] = {}

    def add(names):
        for name in names:
            controls[name] = make_control(fields_by_name[name], models=t2v, prefix="gen-")

    gr.Markdown("Long text-to-video, chunk by chunk in bounded memory, with the options of `videdit generate`: "
                "each chunk adds chunk - overlap frames conditioned on the video so far; tick `refine` to pass "
                "the result through a refiner with randomized blending. Real models need a GPU and their weights "
                "(`videdit download ms-t2v`); the ShapesWorld model `shapes-t2v` ships with videdit and runs on a "
                "CPU (64x64, ShapesWorld captions such as \"a red circle moving right on grass\").")
    main = groups["main"]
    add([n for n in main if n in ("prompt", "model")])
    with gr.Row():
        add([n for n in main if n in ("frames", "chunk", "overlap", "size")])
    with gr.Row():
        add([n for n in main if n not in controls])
    with gr.Accordion("refine (randomized blending, videdit refine)", open=False):
        add(groups["refine"])
    with gr.Accordion("advanced options", open=False):
        add(groups["advanced"])
    with gr.Row():
        run_button = gr.Button("Run", variant="primary", elem_id="gen-run")
        cancel_button = gr.Button("Cancel", variant="stop", elem_id="gen-cancel")
    status = gr.Markdown(elem_id="gen-status")
    with gr.Row():
        out_video = gr.Video(label="generated video", interactive=False, height=320, elem_id="gen-result")
        out_zip = gr.File(label="video and run folder (frames, options) as a zip", interactive=False,
                          elem_id="gen-zip")
    out_log = gr.Textbox(label="log", lines=4, max_lines=20, interactive=False, elem_id="gen-log")

    names = app.generate_names
    assert set(names) == set(controls), sorted(set(names) ^ set(controls))  # every option has a widget

    def on_generate(request, progress, *values):
        shown = app.run_generate(request.session_hash, values, progress)
        return [shown.get("status"), shown.get("video"), shown.get("archive"), shown.get("log", "")]

    run_button.click(_named(on_generate, names, ("request", "progress")), [controls[n] for n in names],
                     [status, out_video, out_zip, out_log], api_name="generate", concurrency_id="device",
                     concurrency_limit=1, show_progress_on=[status])
    def on_cancel(request: gr.Request):
        return app.cancel(request.session_hash)

    cancel_button.click(on_cancel, None, [status], api_name=False, concurrency_limit=None, show_progress="hidden")


def build_app(workdir: str | Path) -> gr.Blocks:
    """The page (not launched). Every handler calls `App`, which calls `videdit.api`."""
    app = App(workdir)
    fields_by_name = {f.name: f for f in option_fields()}
    controls: dict[str, gr.components.Component] = {}
    groups = option_groups()

    with gr.Blocks(title="videdit", analytics_enabled=False) as page:
        page.videdit_app = app
        gr.Markdown("# videdit\nEdit a video with diffusion models, without training per video (the same "
                    "methods and options as `videdit edit`), or generate a long one from text (`videdit generate`).")
        with gr.Tab("edit a video", id="edit", elem_id="tab-edit"):
            with gr.Row():
                with gr.Column(scale=1):
                    gr.Markdown("### 1. Input")
                    video = gr.File(label="video (mp4, avi, mov, mkv, webm, gif, or an image)", type="filepath",
                                    elem_id="input-video")
                    example = gr.Dropdown([("(none)", "")] + [(n, n) for n in EXAMPLES], value="",
                                          label="or a bundled example (ShapesWorld models, no download, no GPU)",
                                          elem_id="example")
                    with gr.Row():
                        for name in SELECTION:
                            controls[name] = make_control(fields_by_name[name])
                    clip_info = gr.Markdown(elem_id="clip-info")
                    frame0 = gr.Image(label="first selected frame (working size, enlarged when small)", interactive=False,
                                      elem_id="first-frame", height=280)
                with gr.Column(scale=2):
                    gr.Markdown("### 2. Edit")
                    controls["method"] = gr.Radio(list(METHODS), value=fields_by_name["method"].default,
                                                  label="method", info=fields_by_name["method"].metadata["help"],
                                                  elem_id="opt-method")
                    for name in ("prompt", "source_prompt", "model"):
                        controls[name] = make_control(fields_by_name[name])
                    with gr.Row():
                        for name in ("strength", "steps", "guidance", "seed"):
                            controls[name] = make_control(fields_by_name[name])
                    with gr.Group(visible=False) as paint_box:  # grain's regions and atlas's foreground
                        gr.Markdown("**Masks on the first frame** (grain, atlas): paint each mask on its own layer "
                                    "of the editor (layer1, layer2, ...), then name the layer below.")
                        region_editor = gr.ImageEditor(label="masks on the first frame", type="numpy",
                                                       elem_id="region-editor", height=360,
                                                       brush=gr.Brush(colors=["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"],
                                                                      color_mode="defaults"))
                    with gr.Group(visible=False) as atlas_box:
                        gr.Markdown("**Foreground** (atlas): empty, the foreground is what moves against the "
                                    "background; `layer1`, the mask painted on layer 1 (for every frame, as one "
                                    "image is on the command line: paint where the foreground goes over the clip)"
                                    + ("; `auto:WORD`, from the cross-attention of WORD in the source prompt"
                                       if atlas_takes_auto() else "") + ". One line per foreground layer.")
                        controls["atlas_mask"] = make_control(fields_by_name["atlas_mask"])
                    with gr.Group(visible=False) as grain_box:
                        gr.Markdown("**Regions** (grain): name each painted layer, one line each: "
                                    "`NAME=layer1:PROMPT`, or `NAME=auto:WORD:PROMPT` for a mask from the "
                                    "cross-attention of WORD in the source prompt. Each PROMPT must be part of the prompt.")
                        region_text = gr.Textbox(label="regions", lines=3, elem_id="regions",
                                                 placeholder="left_man=layer1:Spiderman\nground=auto:grass:grass meadow")
                        with gr.Row():
                            preview_regions = gr.Button("preview the regions over the clip", size="sm")
                        region_video = gr.Video(label="regions over the clip", interactive=False, height=240,
                                                elem_id="regions-preview")
                    with gr.Group(visible=False) as i2v_box:
                        gr.Markdown("**Edited first frame** (i2v): paint over the source's first frame or upload an "
                                    "image; it is propagated along the source's motion.")
                        i2v_editor = gr.ImageEditor(label="edited first frame", type="numpy", elem_id="i2v-editor",
                                                    height=360, layers=False)
                        preview_first = gr.Button("preview the first frame at the working size", size="sm")
                        first_preview = gr.Image(label="first frame the clip will be propagated from", interactive=False,
                                                 height=200)
                    boxes = {}
                    for key, names in groups.items():
                        if not key:
                            continue
                        with gr.Accordion(f"{', '.join(key)} options", open=False, visible="invert" in key) as box:
                            for name in names:
                                if name not in controls:  # atlas_mask sits by the editor
                                    controls[name] = make_control(fields_by_name[name])
                        boxes[key] = box
                    with gr.Accordion("advanced options", open=False):
                        for name in groups.get((), []):
                            controls[name] = make_control(fields_by_name[name])
                    with gr.Row():
                        run_button = gr.Button("Run", variant="primary", elem_id="run")
                        cancel_button = gr.Button("Cancel", variant="stop", elem_id="cancel")
                    status = gr.Markdown(elem_id="status")
            gr.Markdown("### 3. Result (working size; the zip holds the output at the input's size and the run folder)")
            with gr.Row():
                out_source = gr.Video(label="source", interactive=False, elem_id="result-source", height=300)
                out_edited = gr.Video(label="edit", interactive=False, elem_id="result-edited", height=300)
                out_recon = gr.Video(label="reconstruction (inversion check)", interactive=False,
                                     elem_id="result-reconstruction", height=300)
            with gr.Row():
                out_output = gr.Video(label="output at the input's size", interactive=False, height=220, visible=False)
                out_zip = gr.File(label="run folder (zip)", interactive=False, elem_id="result-zip")
                out_eval = gr.Dataframe(headers=["metric", "value", "variant"], label="--eval metrics",
                                        interactive=False, elem_id="result-eval")
            with gr.Row():
                out_atlas = gr.Gallery(label="atlas layers (method atlas)", visible=False, columns=4, height=260,
                                       elem_id="result-atlas")
                out_atlas_recon = gr.Video(label="atlas reconstruction (the layers re-rendered, unedited)",
                                           interactive=False, visible=False, height=260,
                                           elem_id="result-atlas-reconstruction")
            out_log = gr.Textbox(label="log", lines=6, max_lines=20, interactive=False, elem_id="log")

            names = app.names
            assert set(names) == set(controls), sorted(set(names) ^ set(controls))  # every option has a widget
            option_inputs = [controls[n] for n in names]

            # --- input and first frame
            # an example's edited first frame (i2v), kept for its clip: choosing the example sets the video, which
            # shows its first frame and resets the editors; this puts the edited one back
            example_firsts = gr.State({})

            def show_first(path, start, size, kept):
                if not path:
                    return None, "", None, None
                try:
                    frame, info = first_frame(path, start if start is not None else 0, size or 512)
                except UserError as exc:
                    return None, error_line(exc), None, None
                big = enlarged(frame)
                first = (kept or {}).get(Path(path).name)
                return big, info, editor_value(big), editor_value(first if first is not None else big)

            first_outputs = [frame0, clip_info, region_editor, i2v_editor]
            for trigger in (video.change, controls["start"].change, controls["size"].change):
                trigger(show_first, [video, controls["start"], controls["size"], example_firsts], first_outputs,
                        api_name=False)

            def pick_example(name, kept):
                if not name:
                    return [gr.update()] * (3 + len(names))
                path, ex = app.example_path(name)
                settings = ex["settings"]
                values = [settings.get(n, fields_by_name[n].default) for n in names]
                values = ["" if v is None and _kind(fields_by_name[n])[0] == "str" else v for n, v in zip(names, values)]
                kept = dict(kept or {})
                if "first_frame" in ex:
                    kept[path.name] = enlarged(ex["first_frame"])
                return [kept, str(path), ex.get("regions", "")] + values

            example.change(pick_example, [example, example_firsts], [example_firsts, video, region_text] + option_inputs,
                           api_name="example")

            def on_method(method):
                return [gr.update(visible=method in key) for key in boxes] + [
                    gr.update(visible=method == "grain"), gr.update(visible=method == "i2v"),
                    gr.update(visible=method == "atlas"), gr.update(visible=method in ("grain", "atlas"))]

            controls["method"].change(on_method, [controls["method"]],
                                      list(boxes.values()) + [grain_box, i2v_box, atlas_box, paint_box], api_name=False)

            # --- previews
            def on_preview_regions(path, editor, text, *values):
                try:
                    return app.region_preview(path, editor, text, list(values))
                except UserError as exc:
                    return None, error_line(exc)

            preview_regions.click(_named(on_preview_regions, ["video", "region_layers", "regions"] + names), [video, region_editor, region_text] + option_inputs,
                                  [region_video, status], api_name="preview_regions")

            def on_preview_first(path, editor, *values):
                from .editors import edit_first_frame

                try:
                    if not path:
                        raise UserError("no input video: upload one or pick an example")
                    opts_layer = options_from_values(names, list(values))
                    source, _ = first_frame(path, opts_layer.get("start", 0), opts_layer.get("size", 512))
                    if opts_layer.get("first_frame_editor"):
                        from .config import make_options

                        opts, _ = make_options(opts_layer)
                        image, origin = edit_first_frame(source, opts)
                    else:
                        from .editors import fit

                        image = composite_frame(editor)
                        if image is None:
                            raise UserError("paint or upload the edited first frame first")
                        image, origin = fit(image, (source.shape[1], source.shape[0]), "painted"), "the editor"
                    return enlarged(image), f"first frame from {origin}, {image.shape[1]}x{image.shape[0]}"
                except UserError as exc:
                    return None, error_line(exc)

            preview_first.click(_named(on_preview_first, ["video", "first_frame_image"] + names), [video, i2v_editor] + option_inputs, [first_preview, status],
                                api_name="preview_first_frame", concurrency_id="device", concurrency_limit=1)

            # --- run and cancel
            result_outputs = [status, out_source, out_edited, out_recon, out_output, out_zip, out_eval, out_log,
                              out_atlas, out_atlas_recon]

            def on_run(request, progress, path, editor, text, i2v, *option_values):
                shown = app.run(request.session_hash, path, editor, text, i2v, option_values, progress)
                return [shown.get("status"), shown.get("source"), shown.get("edited"), shown.get("reconstruction"),
                        shown.get("output"), shown.get("archive"), shown.get("eval") or [], shown.get("log", ""),
                        gr.update(value=shown.get("atlas") or None, visible=bool(shown.get("atlas"))),
                        gr.update(value=shown.get("atlas_reconstruction"),
                                  visible=bool(shown.get("atlas_reconstruction")))]

            run_button.click(_named(on_run, ["video", "region_layers", "regions", "first_frame_image"] + names,
                                    ("request", "progress")), [video, region_editor, region_text, i2v_editor] + option_inputs, result_outputs,
                             api_name="run", concurrency_id="device", concurrency_limit=1, show_progress_on=[status])

            def on_cancel(request: gr.Request):
                return app.cancel(request.session_hash)

            cancel_button.click(on_cancel, None, [status], api_name="cancel", concurrency_limit=None,
                                show_progress="hidden")
        with gr.Tab("generate a long video", id="generate", elem_id="tab-generate"):
            generate_tab(app)
    return page


SHARE_LINE = ("--share: a public https://*.gradio.live address forwards to this page for up to a week; anyone who "
              "has it can upload videos, run edits and generations on this machine's {device} and download results "
              "(the page serves only its work folder {workdir}).")


def launch(host: str = "127.0.0.1", port: int = 7860, share: bool = False, workdir: str | Path | None = None,
           max_upload_mb: float = 500, block: bool = True):
    """Start the page; returns (blocks, url). The work folder is a new temporary one unless given, and only
    it is served (uploads land in it too)."""
    if max_upload_mb <= 0:
        raise UserError(f"--max-upload-mb must be positive, got {max_upload_mb}")
    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="videdit-ui-") if own else workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(workdir / "uploads")  # uploads and served copies stay in the work folder
    page = build_app(workdir)
    page.queue(default_concurrency_limit=1, max_size=32)
    if share:
        import torch

        device = "GPU" if torch.cuda.is_available() else "CPU"
        print(SHARE_LINE.format(device=device, workdir=workdir))
    elif host not in ("127.0.0.1", "localhost", "::1"):
        print(f"listening on {host}: anyone who can reach this machine on port {port} can use the page")
    try:
        _, url, share_url = page.launch(server_name=host, server_port=port, share=share, allowed_paths=[str(workdir)],
                                        max_file_size=f"{max_upload_mb}mb", prevent_thread_lock=True, quiet=True,
                                        ssr_mode=False, show_error=False)
    except OSError as exc:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)
        raise UserError(f"cannot listen on {host}:{port} ({exc})") from None
    if block:
        print(f"videdit ui: {url}" + (f" and {share_url}" if share_url else "") +
              f" (work folder {workdir}; Ctrl+C stops)", flush=True)
        try:
            page.block_thread()
        finally:
            if own:
                shutil.rmtree(workdir, ignore_errors=True)
    return page, url

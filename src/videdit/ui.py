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


def make_control(f: dataclasses.Field, value=dataclasses.MISSING) -> gr.components.Component:
    """A widget for one option: its help as info, its CLI flag named, its default as the value."""
    kind, optional = _kind(f)
    value = f.default if value is dataclasses.MISSING else value
    flag = "--" + f.name.replace("_", "-")
    common = dict(label=f.name.replace("_", " "), info=f"{option_help(f)} ({flag})",
                  elem_id="opt-" + f.name.replace("_", "-"))
    if "choices" in f.metadata:
        return gr.Dropdown(list(f.metadata["choices"]), value=value, **common)
    if f.name == "model":  # a free text option; the presets are offered
        from .models import PRESETS

        return gr.Dropdown([("by method", "")] + [(p, p) for p in PRESETS], value=value or "",
                           allow_custom_value=True, **common)
    if kind == "bool":
        return gr.Checkbox(value=bool(value), **common)
    if kind in ("int", "float") and not optional:
        return gr.Number(value=value, precision=0 if kind == "int" else None, **common)
    if kind in ("int", "float"):  # a number that may stay empty (its default); a Number would send 0
        return gr.Textbox(value="" if value is None else str(value), placeholder="empty: the default", **common)
    return gr.Textbox(value=value or "", lines=2 if f.name.endswith("prompt") else 1, **common)


def options_from_values(names: list[str], values: list) -> dict:
    """Widget values -> option layer for `make_options`: an empty optional field means its default."""
    types = {f.name: f for f in dataclasses.fields(EditOptions)}
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
    return dict(layer, **FIXED)


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


@contextmanager
def following(job: Job) -> Iterator[None]:
    """While inside, every tqdm bar iterated in ``job``'s thread reports to it and stops on cancel.

    The methods show their progress with tqdm (``desc`` inversion, editing, reconstruction, anchors);
    the page follows those same bars rather than a second account of the steps.
    """
    from tqdm import std

    original = std.tqdm.__iter__

    def __iter__(bar):
        if job.thread is None or threading.get_ident() != job.thread.ident:
            yield from original(bar)
            return
        entry = [getattr(bar, "desc", "").rstrip(": "), 0, bar.total]
        with job.lock:
            job.bars.append(entry)
        try:
            for step, item in enumerate(original(bar)):
                if job.cancel.is_set():
                    raise Cancelled
                entry[1] = step
                yield item
            entry[1] = entry[2] or entry[1]
        finally:
            with job.lock:
                job.bars.remove(entry)

    std.tqdm.__iter__ = __iter__
    try:
        yield
    finally:
        std.tqdm.__iter__ = original


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
            number = int(match[1])
            if not 1 <= number <= len(layers):
                raise UserError(f"region {region.name!r}: layer{number} is not painted (the editor has "
                                f"{len(layers)} layer{'s' if len(layers) != 1 else ''})")
            if not _painted(layers[number - 1]):
                raise UserError(f"region {region.name!r}: layer{number} is empty; paint the region on it")
            region = Region(region.name, str(layers[number - 1]), region.prompt)
        regions.append(region)
    return validate_regions(regions)


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


EXAMPLES = {
    "ShapesWorld: two red circles, left one blue (grain, shapes-sd)": lambda: _demo_example("grain"),
    "ShapesWorld: two red circles, left one blue (anchor, shapes-ip2p)": lambda: _demo_example("anchor"),
    "ShapesWorld: two red circles, left one blue (invert, shapes-sd)": lambda: _demo_example("invert"),
    "ShapesWorld: a red square carried blue from its first frame (i2v, shapes-i2v)": _square_example,
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
    from .translate import translation_line

    lines = [translation_line(SimpleNamespace(translation=info["translation"]))] if info.get("translation") else []
    for name, found in (info.get("found_regions") or {}).items():
        lines.append(f"region {name!r}: {100 * found['area']:.0f}% of the frame, frames {found['frames'] or 'none'}")
    return lines


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


class App:
    """The page's state: its work folder (the only folder it serves) and the running job per session."""

    def __init__(self, workdir: str | Path):
        self.workdir = Path(workdir).resolve()
        for sub in ("uploads", "examples", "jobs", "previews"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self.jobs: dict[str, Job] = {}
        self.names = [f.name for f in option_fields()]

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

    def run(self, session: str, video, region_editor, region_text, i2v_editor, values, progress) -> dict:
        """Run one edit in a worker thread while following its bars; returns what the page shows."""
        from .api import run_edit

        folder = self.new_folder("jobs")
        job = Job(folder)
        self.jobs[session] = job
        handler = _JobLog(job)
        try:
            opts, extra = self.prepare(video, region_editor, region_text, i2v_editor, values, folder)
            output = folder / "edited.mp4"

            def work():
                try:
                    job.result = run_edit(video, opts, output, extra=extra)
                except BaseException as exc:  # noqa: BLE001 - handed to the page's thread
                    job.error = exc

            log.addHandler(handler)
            job.thread = threading.Thread(target=work, name="videdit-ui-job", daemon=True)
            with following(job):
                job.thread.start()
                progress(0.0, desc="loading the model and reading the clip")
                while job.thread.is_alive():
                    job.thread.join(0.25)
                    fraction, text = job.fraction_and_text()
                    if text:
                        progress(fraction, desc=text)
            if job.error is not None:
                raise job.error
            res = job.result
            run_folder = res.run_folder
            archive = _zip_folder([output, run_folder], folder, folder / f"videdit-{folder.name}.zip")
            shown = {k: (run_folder / f"{k}.mp4") for k in ("source", "edited", "reconstruction")}
            done = (f"done: {len(res.frames)} frames {res.frames.shape[2]}x{res.frames.shape[1]} in "
                    f"{res.info.get('total_s', 0):.1f} s (run {res.info.get('run_id')})")
            return dict(status="\n\n".join([done, *run_notes(res.info)]),  # Markdown: one paragraph each
                        **{k: (str(p) if p.exists() else None) for k, p in shown.items()},
                        output=str(output), archive=str(archive), eval=eval_rows(res.evaluation),
                        log="\n".join(job.log))
        except Cancelled:
            shutil.rmtree(folder, ignore_errors=True)
            return dict(status="cancelled: nothing was written", log="\n".join(job.log))
        except UserError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            return dict(status=error_line(exc), log="\n".join(job.log))
        except Exception as exc:  # noqa: BLE001 - shown in the page; the server keeps running
            shutil.rmtree(folder, ignore_errors=True)
            log.exception("run failed")
            return dict(status=f"videdit: failed: {type(exc).__name__}: {exc}", log="\n".join(job.log))
        finally:
            log.removeHandler(handler)
            if self.jobs.get(session) is job:
                del self.jobs[session]

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


def build_app(workdir: str | Path) -> gr.Blocks:
    """The page (not launched). Every handler calls `App`, which calls `videdit.api`."""
    app = App(workdir)
    fields_by_name = {f.name: f for f in option_fields()}
    controls: dict[str, gr.components.Component] = {}
    groups = option_groups()

    with gr.Blocks(title="videdit", analytics_enabled=False) as page:
        page.videdit_app = app
        gr.Markdown("# videdit\nEdit a video with diffusion models, without training per video: the same "
                    "methods and options as `videdit edit`.")
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
                with gr.Group(visible=False) as grain_box:
                    gr.Markdown("**Regions** (grain): paint each region on its own layer, then name it, one line "
                                "each: `NAME=layer1:PROMPT`, or `NAME=auto:WORD:PROMPT` for a mask from the "
                                "cross-attention of WORD in the source prompt. Each PROMPT must be part of the prompt.")
                    region_editor = gr.ImageEditor(label="regions on the first frame", type="numpy",
                                                   elem_id="region-editor", height=360,
                                                   brush=gr.Brush(colors=["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"],
                                                                  color_mode="defaults"))
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
                gr.update(visible=method == "grain"), gr.update(visible=method == "i2v")]

        controls["method"].change(on_method, [controls["method"]], list(boxes.values()) + [grain_box, i2v_box],
                                  api_name=False)

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
        result_outputs = [status, out_source, out_edited, out_recon, out_output, out_zip, out_eval, out_log]

        def on_run(request, progress, path, editor, text, i2v, *option_values):
            shown = app.run(request.session_hash, path, editor, text, i2v, option_values, progress)
            return [shown.get("status"), shown.get("source"), shown.get("edited"), shown.get("reconstruction"),
                    shown.get("output"), shown.get("archive"), shown.get("eval") or [], shown.get("log", "")]

        run_button.click(_named(on_run, ["video", "region_layers", "regions", "first_frame_image"] + names,
                                ("request", "progress")), [video, region_editor, region_text, i2v_editor] + option_inputs, result_outputs,
                         api_name="run", concurrency_id="device", concurrency_limit=1, show_progress_on=[status])

        def on_cancel(request: gr.Request):
            return app.cancel(request.session_hash)

        cancel_button.click(on_cancel, None, [status], api_name="cancel", concurrency_limit=None,
                            show_progress="hidden")
    return page


SHARE_LINE = ("--share: a public https://*.gradio.live address forwards to this page for up to a week; anyone who "
              "has it can upload "
              "videos, run edits on this machine's {device} and download results (the page serves only its work "
              "folder {workdir}).")


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

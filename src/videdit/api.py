"""The Python API: ``videdit.edit(video, prompt=..., method=..., ...)``. The CLI calls the same functions.

files -> frames -> latents -> edited latents -> frames -> files: reading and sizing happen here,
the method works on frames at the working size, and writing (atomic, with the run folder) happens here.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import EditOptions, make_options
from .errors import UserError

log = logging.getLogger("videdit")

_MODEL_CACHE: dict[tuple, Any] = {}


@dataclass
class EditResult:
    frames: np.ndarray                 # (T, H, W, 3) uint8 at the output size
    fps: float
    source: np.ndarray                 # the source frames at the working size
    edited_working: np.ndarray         # the edited frames at the working size
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)  # name -> write(path): other files for the run folder
    options: EditOptions | None = None
    output: Path | None = None
    run_folder: Path | None = None
    evaluation: dict | None = None     # `videdit eval` of the result, with --eval


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_model(opts: EditOptions, kind: str = "sd"):
    """Load (or reuse, within one process) the model an edit needs."""
    from .models import check_method_fits, load_sd

    if kind == "sd" and opts.method == "i2v":
        kind = "i2v"
    check_method_fits(opts.method, opts.model, opts.allow_pickle)  # before any weights load
    key = (kind, opts.model, opts.device, opts.dtype, opts.allow_pickle, opts.control, opts.control_model,
           opts.cpu_offload, opts.vae_tiling)
    if key not in _MODEL_CACHE:
        _MODEL_CACHE.clear()  # keep one model in memory at a time
        if kind == "i2v":  # method i2v: an image-to-video model (videdit.i2v)
            from .i2v import load_i2v

            _MODEL_CACHE[key] = load_i2v(opts.model, opts.device, opts.dtype, opts.allow_pickle, opts.cpu_offload,
                                         opts.vae_tiling)
        else:
            _MODEL_CACHE[key] = load_sd(opts.model, opts.device, opts.dtype, opts.allow_pickle, opts.control,
                                        opts.control_model, opts.cpu_offload, opts.vae_tiling)
    return _MODEL_CACHE[key]


def run_folder_for(output: Path) -> Path:
    """``clip.mp4`` -> ``clip_run/`` beside it."""
    return output.with_name(output.stem + "_run") if output.suffix else output.with_name(output.name + "_run")


def load_input(video, opts: EditOptions):
    """A Clip from a path, a Clip, or an array of frames (T, H, W, 3) uint8 (fps 8)."""
    from .video import Clip, read_clip

    if isinstance(video, Clip):
        clip = video
    elif isinstance(video, np.ndarray):
        arr = video if video.ndim == 4 else video[None]
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise UserError("frames must be a (T, H, W, 3) uint8 array")
        clip = Clip(frames=arr, fps=8.0, frame_indices=list(range(len(arr))))
    else:
        return read_clip(video, frames=opts.frames, stride=opts.stride, start=opts.start)
    from .video import select

    idx = [i for i, _ in select(range(len(clip.frames)), opts.frames, opts.stride, opts.start)]
    if not idx:
        raise UserError("the frame selection is empty")
    return Clip(frames=clip.frames[idx], fps=clip.fps, frame_indices=[clip.frame_indices[i] for i in idx],
                path=clip.path)


def edit(video, prompt: str | None = None, method: str = "invert", output: str | os.PathLike | None = None,
         model=None, regions=None, translator=None, **options) -> EditResult:
    """Edit ``video`` (a path, a `videdit.video.Clip` or frames) so that it shows ``prompt``.

    ``model`` is a preset name, repository id or folder (default ``sd15``), or an already loaded
    `videdit.models.DiffusionModel` to reuse. ``options`` are the other fields of
    `videdit.config.EditOptions` (strength, steps, guidance, seed, ...). With ``output``, the edited
    video and its run folder are written there.
    ``regions`` (method grain): ``NAME=MASK:PROMPT`` strings, ``{name, mask, prompt}`` mappings or
    `videdit.masks.Region` objects.
    ``first_frame_editor`` (method i2v) may be any callable ``PIL.Image -> PIL.Image``: it edits the
    source's first frame (`videdit.editors`).
    ``translator`` may be any callable ``list[str] -> list[str]`` into English (`videdit.translate`).
    """
    loaded = None
    if model is not None and not isinstance(model, (str, os.PathLike)):
        loaded, model = model, str(model.path)
    if callable(options.get("first_frame_editor")):  # method i2v: any callable PIL.Image -> PIL.Image
        from .editors import register_callable

        options["first_frame_editor"] = register_callable(options["first_frame_editor"])
    opts, _ = make_options(dict(options, prompt=prompt, method=method, model=None if model is None else str(model)))
    extra = dict({"regions": regions} if regions else {}, **({"translator": translator} if translator else {}))
    return run_edit(video, opts, output, model=loaded, extra=extra or None)


def run_edit(video, opts: EditOptions, output=None, model=None, extra: dict | None = None) -> EditResult:
    """Edit ``video`` with validated options; ``extra`` holds method inputs that are not options
    (``regions`` of method grain, a ``translator`` callable)."""
    from .methods import get_method
    from .prompts import plan_edit
    from .translate import prepare_prompts
    from .fsutil import check_writable
    from .video import check_output_path, resize_frames, working_size

    from .parallel import init_distributed

    dist = init_distributed(opts.device)  # None unless launched by torchrun / accelerate launch
    if dist is not None:
        if opts.method != "anchor":
            raise UserError(f"parallel runs (torchrun, accelerate launch) support --method anchor only, not {opts.method}")
        opts = dataclasses.replace(opts, device=dist.device)
    main = dist is None or dist.rank == 0  # only rank 0 writes
    out_path = Path(output) if output is not None else None
    if out_path is not None:
        check_output_path(out_path, opts.overwrite)
        if opts.run_folder:
            check_writable(run_folder_for(out_path), opts.overwrite)
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    handlers = _start_logging(opts, run_id)
    try:
        t_start = time.perf_counter()
        method_run = get_method(opts.method)
        clip = load_input(video, opts)
        src_w, src_h = clip.size
        work = working_size(src_w, src_h, opts.size)
        source = resize_frames(clip.frames, work) if work != (src_w, src_h) else clip.frames
        plan = plan_edit(opts.prompt, opts.source_prompt)
        inputs = {}
        if (extra or {}).get("regions"):  # method grain: regions, and the frame numbers their mask folders use
            if opts.method != "grain":
                raise UserError(f"regions are for --method grain, not {opts.method}")
            inputs = dict(regions=extra["regions"], frame_indices=list(clip.frame_indices))
        if opts.method == "atlas":  # mask folders are numbered by original frame; layers keep the frame rate
            inputs = dict(frame_indices=list(clip.frame_indices), fps=clip.fps)
        log.info("run %s: %d frames %dx%d -> working %dx%d, method %s", run_id, len(source), src_w, src_h,
                 work[0], work[1], opts.method)
        log.info("source prompt %r -> target prompt %r", plan.source_prompt, plan.target_prompt)
        model = model or get_model(opts)
        plan, regions = prepare_prompts(plan, inputs.get("regions"), opts, model.tokenizer, (extra or {}).get("translator"))
        if regions is not None:
            inputs["regions"] = regions
        seed_everything(opts.seed)
        result = method_run(model, source, opts, plan, **inputs)
        frames = result.frames
        if not opts.keep_working_size and len(frames) and frames.shape[2:0:-1] != (src_w, src_h):
            frames = resize_frames(frames, (src_w, src_h))
        info = dict(result.info, run_id=run_id, total_s=time.perf_counter() - t_start,
                    source_prompt=plan.source_prompt, target_prompt=plan.target_prompt,
                    **({"translation": plan.translation} if plan.translation else {}))
        log.info("done in %.1f s: %s", info["total_s"], {k: (round(v, 3) if isinstance(v, float) else v)
                                                       for k, v in result.info.items()})
        res = EditResult(frames=frames, fps=clip.fps, source=source, edited_working=result.frames,
                         extras=result.extras, info=info, files=result.files, options=opts)
        if opts.eval and main:
            res.evaluation = _evaluate(res, plan, opts)
        if out_path is not None and main:
            _write_outputs(res, out_path, opts, handlers)
            res.output, res.run_folder = out_path, (run_folder_for(out_path) if opts.run_folder else None)
        return res
    finally:
        for h in handlers:
            log.removeHandler(h)
            h.close()


def _evaluate(res: EditResult, plan, opts: EditOptions) -> dict:
    """The quality metrics of the edit at the working size (CLIP metrics unavailable offline)."""
    from .evaluate import evaluate_video, format_table

    result = evaluate_video(res.edited_working, source=res.source, prompt=plan.target_prompt,
                            source_prompt=plan.source_prompt or None, clip_model=opts.clip_model)
    log.info("evaluation:\n%s", format_table(result))
    return result


def _start_logging(opts: EditOptions, run_id: str) -> list[logging.Handler]:
    log.setLevel(logging.INFO)
    handlers: list[logging.Handler] = []
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    if opts.verbose:
        Path("logs").mkdir(exist_ok=True)
        fh = logging.FileHandler(Path("logs") / f"{run_id}.log", encoding="utf-8")
        sh = logging.StreamHandler()
        for h in (fh, sh):
            h.setFormatter(fmt)
            log.addHandler(h)
            handlers.append(h)
    else:  # warnings and the lines a user must see (`videdit.notices`)
        from .notices import terminal_handler

        handlers.append(terminal_handler())
        log.addHandler(handlers[-1])
    # Always keep the run's log in memory, for the run folder.
    mem = _MemoryHandler()
    mem.setFormatter(fmt)
    log.addHandler(mem)
    handlers.append(mem)
    return handlers


class _MemoryHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


def _write_outputs(res: EditResult, out_path: Path, opts: EditOptions, handlers) -> None:
    """The run folder is built under a temporary name and renamed into place after the output is
    written (atomically); a failure before that leaves neither."""
    import contextlib

    from .fsutil import atomic_target
    from .video import write_video

    run_target = atomic_target(run_folder_for(out_path), opts.overwrite) if opts.run_folder \
        else contextlib.nullcontext(None)
    with run_target as tmp_run:
        if tmp_run is not None:
            _write_run_folder(res, out_path, opts, handlers, tmp_run)
        write_video(out_path, res.frames, res.fps, overwrite=opts.overwrite)


def _write_run_folder(res: EditResult, out_path: Path, opts: EditOptions, handlers, tmp_run: Path) -> None:
    """source, edited, extras, side by side, config, info, evaluation and log of one run."""
    import yaml

    from .video import side_by_side, write_video

    tmp_run.mkdir()
    write_video(tmp_run / "source.mp4", res.source, res.fps)
    write_video(tmp_run / "edited.mp4", res.edited_working, res.fps)
    for name, clip in res.extras.items():
        if clip.ndim == 4 and len(clip) == len(res.source):
            write_video(tmp_run / f"{name}.mp4", clip, res.fps)
        elif clip.ndim == 3:  # a single image, e.g. i2v's edited first frame
            from PIL import Image

            Image.fromarray(clip).save(tmp_run / f"{name}.png")
    for name, write in res.files.items():  # e.g. method atlas's layers, maps.npz
        write(tmp_run / name)
    sbs = side_by_side(res.source, res.edited_working)
    write_video(tmp_run / "side_by_side.mp4", sbs, res.fps)
    write_video(tmp_run / "side_by_side.gif", sbs, res.fps)
    config = dict(opts.to_dict(), output=str(out_path))
    (tmp_run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    info = {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in res.info.items()}
    (tmp_run / "info.yaml").write_text(yaml.safe_dump(info, sort_keys=False, allow_unicode=True), encoding="utf-8")
    if res.evaluation is not None:
        from .evaluate import format_table, to_json

        (tmp_run / "eval.json").write_text(to_json(res.evaluation), encoding="utf-8")
        (tmp_run / "eval.txt").write_text(format_table(res.evaluation) + "\n", encoding="utf-8")
    mem = next(h for h in handlers if isinstance(h, _MemoryHandler))
    (tmp_run / "run.log").write_text("\n".join(mem.lines) + "\n", encoding="utf-8")

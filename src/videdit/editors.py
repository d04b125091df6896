"""First-frame image editors for method ``i2v``: whatever edits an image edits the video.

An editor is any callable ``PIL.Image -> PIL.Image``. Where one comes from:
- ``--first-frame PATH``: an image the user made (any editor, a paint program); no callable.
- ``--first-frame-editor ip2p --instruction TEXT``: the built-in InstructPix2Pix editor, through the
  instruction editor of method ``anchor`` (one frame is one anchor, denoised alone).
- ``--first-frame-editor NAME``: a third-party editor registered under the entry-point group
  ``videdit.image_editors``; the entry point is a factory ``(instruction: str, options: EditOptions)
  -> (PIL.Image -> PIL.Image)``, so that it may load its model once.
- Python API: ``videdit.edit(video, prompt, method="i2v", first_frame_editor=callable)``.

Whatever the editor returns is resized to the working size of the clip.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .errors import UserError

log = logging.getLogger("videdit")

ENTRY_POINT_GROUP = "videdit.image_editors"
ImageEditor = Callable[["PIL.Image.Image"], "PIL.Image.Image"]  # noqa: F821

_PYTHON_EDITORS: dict[str, ImageEditor] = {}


def register_callable(editor: ImageEditor) -> str:
    """Register a Python callable for this process; returns the name that options carry
    (``python:<qualified name>:<id>``, as it appears in the run folder's config.yaml)."""
    name = f"python:{getattr(editor, '__qualname__', type(editor).__name__)}:{id(editor):x}"
    _PYTHON_EDITORS[name] = editor
    return name


def instruct_pix2pix(instruction: str, opts) -> ImageEditor:
    """The built-in editor: InstructPix2Pix (``--editor-model``, default ``ip2p``) by the sampler of method anchor."""
    from PIL import Image

    try:
        from .methods.anchor import edit_latents
    except ImportError:
        raise UserError("the built-in ip2p first-frame editor needs method anchor, which this version of videdit "
                        "lacks; edit the first frame yourself and pass --first-frame PATH") from None
    from .config import GUIDANCE_DEFAULT, STEPS_DEFAULT
    from .diffusion import vae_decode
    from .models import load_sd

    model = load_sd(opts.editor_model, opts.device, opts.dtype, opts.allow_pickle)
    if model.unet.config.in_channels != 8:
        raise UserError(f"--editor-model {opts.editor_model!r} is not an instruction editor (InstructPix2Pix class)")
    edit_opts = dataclasses.replace(opts, method="anchor", model=opts.editor_model, anchors=1,
                                    steps=STEPS_DEFAULT.get("anchor", 10), guidance=GUIDANCE_DEFAULT.get("anchor", 7.5))

    def edit(image: Image.Image) -> Image.Image:
        frame = np.asarray(image.convert("RGB"))[None]
        latents, _ = edit_latents(model, frame, instruction, edit_opts)
        return Image.fromarray(vae_decode(model, latents[0][None].to(model.dtype))[0])

    return edit


BUILT_IN = {"ip2p": instruct_pix2pix}


def available() -> list[str]:
    from importlib.metadata import entry_points

    return sorted({*BUILT_IN, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})


def check_editor_name(name: str) -> None:
    """A `UserError` now, before any model loads, for an editor name that nothing provides."""
    if name not in _PYTHON_EDITORS and name not in available():
        raise UserError(f"unknown first-frame editor {name!r} (available: {', '.join(available())})")


def make_editor(name: str, instruction: str, opts) -> ImageEditor:
    """The editor called ``name``: a registered Python callable, a built-in, or an entry point."""
    from importlib.metadata import entry_points

    if name in _PYTHON_EDITORS:
        return _PYTHON_EDITORS[name]
    if name in BUILT_IN:
        return BUILT_IN[name](instruction, opts)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            try:
                factory = ep.load()
            except Exception as exc:  # a broken third-party package
                raise UserError(f"image editor {name!r} ({ep.value}) cannot be loaded: {exc}") from None
            return factory(instruction, opts)
    raise UserError(f"unknown first-frame editor {name!r} (available: {', '.join(available())})")


def read_first_frame(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """The edited first frame from an image file, resized to ``size`` = (width, height)."""
    from .video import read_image

    p = Path(path)
    if not p.is_file():
        raise UserError(f"first frame not found: {p}")
    return fit(read_image(p), size, str(p))


def fit(image: np.ndarray, size: tuple[int, int], what: str) -> np.ndarray:
    """(H, W, 3) uint8 resized to ``size``; a warning when the aspect ratio differs (the frame is stretched)."""
    from .video import resize_frames

    h, w = image.shape[:2]
    if abs(w / h - size[0] / size[1]) > 0.01 * size[0] / size[1]:
        log.warning("first frame %s is %dx%d, the clip %dx%d: stretched to the clip's aspect ratio",
                    what, w, h, size[0], size[1])
    return resize_frames(image, size)


def edit_first_frame(source_first: np.ndarray, opts) -> tuple[np.ndarray, str]:
    """The edited first frame at the working size of ``source_first`` (H, W, 3) uint8, and where it came from."""
    from PIL import Image

    size = (source_first.shape[1], source_first.shape[0])
    if opts.first_frame:
        return read_first_frame(opts.first_frame, size), str(opts.first_frame)
    instruction = (opts.instruction or opts.prompt).strip()
    editor = make_editor(opts.first_frame_editor, instruction, opts)
    out = editor(Image.fromarray(source_first))
    if isinstance(out, Image.Image):
        out = np.asarray(out.convert("RGB"))
    out = np.asarray(out)
    if out.ndim != 3 or out.shape[2] != 3 or out.dtype != np.uint8:
        raise UserError(f"first-frame editor {opts.first_frame_editor!r} returned {type(out).__name__} "
                        f"{getattr(out, 'shape', '')}, not an RGB image")
    origin = f"editor {opts.first_frame_editor}: {instruction}"
    return fit(out, size, f"from editor {opts.first_frame_editor!r}"), origin

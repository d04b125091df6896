"""Editing methods. Each module reads top to bottom like a short paper: ``run(model, frames, opts, plan)``."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class MethodResult:
    frames: np.ndarray                                             # (T, H, W, 3) uint8 at working size
    extras: dict[str, np.ndarray] = field(default_factory=dict)    # other clips for the run folder
    info: dict = field(default_factory=dict)                       # numbers worth logging
    files: dict = field(default_factory=dict)  # name -> write(path): files for the run folder (maps.npz)


def get_method(name: str):
    """The ``run`` function of a method by name."""
    from ..errors import UserError

    if name == "invert":
        from .invert import run
        return run
    if name == "anchor":
        from .anchor import run
        return run
    if name == "grain":
        from .grain import run
        return run
    if name == "i2v":
        from .i2v import run
        return run
    if name == "atlas":
        from .atlas import run
        return run
    raise UserError(f"unknown method {name!r}: use one of invert, grain, anchor, i2v, atlas")

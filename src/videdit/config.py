"""Options of an edit: one dataclass, the single source of truth for names, defaults and help.

The CLI builds its flags from these fields, a YAML config (``--config run.yaml``) may set any of
them (flags given on the command line win), and the Python API takes them as keyword arguments.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import UserError

METHODS = ("invert", "grain", "anchor", "i2v")
FRAME_ATTENTION = ("full", "sparse")
CONTROLS = ("none", "canny", "depth", "openpose")


def _opt(default, help: str, **meta):
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class EditOptions:
    prompt: str = _opt("", "target description, or an instruction such as 'replace the car with a Porsche'")
    source_prompt: str = _opt("", "description of the source clip (default: empty, or parsed from an instruction)")
    method: str = _opt("invert", "editing method", choices=METHODS)
    model: str = _opt("sd15", "preset name, Hugging Face repository id or local folder in diffusers layout")
    strength: float = _opt(0.8, "how far back the edit starts: 0 returns the source, 1 starts from full noise")
    steps: int = _opt(50, "DDIM steps of inversion and sampling")
    guidance: float = _opt(7.5, "classifier-free guidance scale")
    seed: int = _opt(0, "random seed")
    frames: int | None = _opt(None, "number of frames to edit (default: all)")
    stride: int = _opt(1, "take every S-th frame")
    start: int = _opt(0, "first frame to take")
    size: int = _opt(512, "long side of the working size, rounded to multiples of 8")
    control: str = _opt("none", "ControlNet conditioning", choices=CONTROLS)
    control_model: str | None = _opt(None, "ControlNet preset, repository or folder (default: by --control)")
    control_scale: float = _opt(1.0, "ControlNet conditioning scale")
    frame_attention: str = _opt("full", "cross-frame self-attention: all frames, or the first and previous",
                                choices=FRAME_ATTENTION)
    attention_chunk: int | None = _opt(None, "queries per attention chunk (default: by a memory budget)")
    device: str | None = _opt(None, "cuda, cuda:1, mps or cpu (default: the best available)")
    dtype: str | None = _opt(None, "fp16, bf16 or fp32 (default: fp16 on GPUs, fp32 on CPU)")
    allow_pickle: bool = _opt(False, "allow loading pickle checkpoints (.bin/.ckpt/.pth); unpickling runs code")
    cpu_offload: bool = _opt(False, "keep weights in CPU memory and stream them to the GPU layer by layer")
    vae_tiling: bool = _opt(False, "decode and encode large frames in tiles")
    vae_chunk: int = _opt(8, "frames per VAE encode/decode call")
    no_cache: bool = _opt(False, "do not read or write the inversion cache")
    keep_working_size: bool = _opt(False, "write the output at the working size instead of the input's size")
    reconstruction: bool = _opt(True, "also regenerate the source prompt into the run folder (checks inversion)")
    run_folder: bool = _opt(True, "write the run folder beside the output")
    verbose: bool = _opt(False, "log to the terminal and to logs/<run-id>.log")
    progress: bool = _opt(True, "show progress bars")
    overwrite: bool = _opt(False, "replace an existing output")

    def validate(self) -> "EditOptions":
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise UserError("empty prompt: say what the edited video should show, e.g. --prompt 'a cat'")
        if not 0.0 <= float(self.strength) <= 1.0:
            raise UserError(f"--strength must be in [0, 1], got {self.strength}")
        if int(self.steps) < 1:
            raise UserError(f"--steps must be at least 1, got {self.steps}")
        if self.frames is not None and int(self.frames) < 1:
            raise UserError(f"--frames must be at least 1, got {self.frames}")
        if int(self.stride) < 1:
            raise UserError(f"--stride must be at least 1, got {self.stride}")
        if int(self.start) < 0:
            raise UserError(f"--start must be 0 or more, got {self.start}")
        if int(self.size) < 64:
            raise UserError(f"--size must be at least 64, got {self.size}")
        if float(self.guidance) < 0:
            raise UserError(f"--guidance must be 0 or more, got {self.guidance}")
        if int(self.vae_chunk) < 1:
            raise UserError(f"--vae-chunk must be at least 1, got {self.vae_chunk}")
        for name in ("method", "control", "frame_attention"):
            choices = EditOptions.__dataclass_fields__[name].metadata["choices"]
            if getattr(self, name) not in choices:
                raise UserError(f"--{name.replace('_', '-')} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


OPTION_NAMES = tuple(f.name for f in fields(EditOptions))


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    """Options from a YAML mapping; keys may use dashes or underscores."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"config file {p} is not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {p} must hold a mapping of option names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def make_options(*layers: dict[str, Any], extra_ok: tuple[str, ...] = ()) -> tuple[EditOptions, dict[str, Any]]:
    """Merge option layers (later wins; ``None`` values do not override) into validated options.

    Keys that are not options are returned separately when listed in ``extra_ok`` (e.g. ``regions``),
    and are an error otherwise.
    """
    merged: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if value is None:
                continue
            if key in OPTION_NAMES:
                merged[key] = value
            elif key in extra_ok:
                extra[key] = value
            else:
                raise UserError(f"unknown option {key!r}")
    types = {f.name: f.type for f in fields(EditOptions)}
    for key, value in merged.items():
        merged[key] = _coerce(key, value, types[key])
    return EditOptions(**merged).validate(), extra


def _coerce(key: str, value: Any, type_name: str) -> Any:
    kind = type_name.split("|")[0].strip()
    try:
        if kind == "int":
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError
            return int(float(value))
        if kind == "float":
            return float(value)
        if kind == "bool":
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if kind == "str":
            return str(value)
    except (TypeError, ValueError):
        raise UserError(f"option {key} expects {kind}, got {value!r}") from None
    return value

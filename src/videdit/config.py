"""Options of an edit: one dataclass, the single source of truth for names, defaults and help.

The CLI builds its flags from these fields, a YAML config (``--config run.yaml``) may set any of
them (flags given on the command line win), and the Python API takes them as keyword arguments.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import UserError

METHODS = ("invert", "grain", "anchor", "i2v", "atlas")
FRAME_ATTENTION = ("full", "sparse")
CONTROLS = ("none", "canny", "depth", "openpose")
ANCHOR_CACHE = ("memory", "recompute")
ANCHOR_SHARE = ("every-rank", "broadcast")
# sampling steps when --steps is not given, by method (others: 50)
STEPS_DEFAULT = {"invert": 50, "anchor": 10, "atlas": 20}
# model when --model is not given, by method (others: sd15)
MODEL_DEFAULT = {"anchor": "ip2p", "i2v": "i2vgen-xl"}
# guidance when --guidance is not given, by method (others: 7.5)
GUIDANCE_DEFAULT = {"i2v": 9.0, "atlas": 9.0}
LONG_CLIP = ("auto", "direct", "chunked")  # method i2v
SEED_MAX = 2**63 - 1  # torch generators take 64-bit seeds; derived per-frame seeds wrap modulo 2^64
SIZE_MAX = 4096  # long side of the working size: 8 times the 512 px that SD 1.5 was trained at
I2V_NEGATIVE_PROMPT = ("Distorted, discontinuous, Ugly, blurry, low resolution, motionless, static, disfigured, "
                       "disconnected limbs, Ugly faces, incomplete arms")


def _opt(default, help: str, **meta):
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class EditOptions:
    prompt: str = _opt("", "target description, or an instruction such as 'replace the car with a Porsche'")
    source_prompt: str = _opt("", "description of the source clip (default: empty, or parsed from an instruction)")
    method: str = _opt("invert", "editing method", choices=METHODS)
    model: str | None = _opt(None, "preset name, Hugging Face repository id or local folder in diffusers layout "
                             "(None: by method, sd15; ip2p for anchor, i2vgen-xl for i2v)")
    strength: float = _opt(0.8, "how far back the edit starts: 0 returns the source, 1 starts from full noise",
                           range=(0.0, 1.0))
    steps: int | None = _opt(None, "sampling steps (None: by method, 50 DDIM steps for invert, "
                                   "10 Euler ancestral steps for anchor)", range=(1, 1000))
    guidance: float | None = _opt(None, "classifier-free guidance scale; 1 or less turns guidance off, as in diffusers "
                                  "(None: by method, 7.5; 9 for i2v)", range=(0.0, 100.0))
    guidance_rescale: float = _opt(0.0, "invert, grain: guidance rescale phi in [0, 1] for zero-terminal-SNR "
                                   "v-prediction models (0: off; 0.7 as its paper suggests)", range=(0.0, 1.0))
    seed: int = _opt(0, "random seed", range=(0, SEED_MAX))
    frames: int | None = _opt(None, "number of frames to edit (default: all)", range=(1, 10**6))
    stride: int = _opt(1, "take every S-th frame", range=(1, 10**6))
    start: int = _opt(0, "first frame to take", range=(0, 10**7))
    size: int = _opt(512, "long side of the working size, rounded to multiples of 8", range=(64, SIZE_MAX))
    control: str = _opt("none", "ControlNet conditioning", choices=CONTROLS)
    control_model: str | None = _opt(None, "ControlNet preset, repository or folder (default: by --control)")
    control_scale: float = _opt(1.0, "ControlNet conditioning scale", range=(0.0, 10.0))
    frame_attention: str = _opt("full", "cross-frame self-attention: all frames, or the first and previous",
                                choices=FRAME_ATTENTION)
    attention_chunk: int | None = _opt(None, "queries per attention chunk (default: none where torch's fused "
                                             "attention kernel runs, else by a memory budget)",
                                       range=(1, 2**31 - 1))
    device: str | None = _opt(None, "cuda, cuda:1, mps or cpu (default: the best available)")
    dtype: str | None = _opt(None, "fp16, bf16 or fp32 (default: fp16 on GPUs, fp32 on CPU)")
    allow_pickle: bool = _opt(False, "allow loading pickle checkpoints (.bin/.ckpt/.pth); unpickling runs code")
    cpu_offload: bool = _opt(False, "keep weights in CPU memory and stream them to the GPU layer by layer")
    vae_tiling: bool = _opt(False, "decode and encode large frames in tiles")
    vae_chunk: int = _opt(8, "frames per VAE encode/decode call", range=(1, 4096))
    no_cache: bool = _opt(False, "do not read or write the inversion cache")
    keep_working_size: bool = _opt(False, "write the output at the working size instead of the input's size")
    reconstruction: bool = _opt(True, "also regenerate the source prompt into the run folder (checks inversion)")
    run_folder: bool = _opt(True, "write the run folder beside the output")
    eval: bool = _opt(False, "compute the quality metrics of the result (videdit eval) into the run folder")
    clip_model: str = _opt("clip-l14", "CLIP model for --eval (preset, repository or folder)")
    verbose: bool = _opt(False, "log to the terminal and to logs/<run-id>.log")
    progress: bool = _opt(True, "show progress bars")
    overwrite: bool = _opt(False, "replace an existing output")
    # --- prompts the text encoder cannot read, and instructions that find their own region
    translate: str = _opt("auto", "translate a prompt into English when the text encoder's tokenizer lacks its "
                          "script (Chinese, Korean, Japanese with CLIP); off: keep it, with a warning",
                          choices=("auto", "off"))
    translation_model: str | None = _opt(None, "MarianMT model for --translate (preset, repository or folder; "
                                         "default: by language, translate-zh, translate-ko or translate-ja)")
    localize: bool = _opt(False, "invert: edit only the region the instruction's source word finds in its "
                          "cross-attention during inversion; outside it the source latents are blended back")
    paste_feather: int = _opt(2, "localized edits (a region found from the instruction: grain without --region, "
                              "invert --localize): outside the found region the output is the source's own pixels, "
                              "and the edit fades in over this many pixels inside its edge; -1: the decoder's pixels "
                              "everywhere (latent blending only)", range=(-1, 4096))
    # --- method "anchor" (instruction editing with anchor-based cross-frame attention)
    anchors: int = _opt(3, "anchor: number of anchor frames, spaced uniformly over the clip", range=(1, 1000))
    chunk: int = _opt(8, "anchor: frames denoised together per UNet batch after the anchors", range=(1, 4096))
    anchor_cache: str = _opt("memory", "anchor: keep the anchors' keys/values of every step, or run the anchors "
                             "again beside every chunk", choices=ANCHOR_CACHE)
    anchor_share: str = _opt("every-rank", "anchor, parallel runs: every rank computes the anchors itself, or rank 0 "
                             "computes them and broadcasts their keys/values", choices=ANCHOR_SHARE)
    image_guidance: float = _opt(1.5, "anchor: image guidance scale of the instruction editor", range=(0.0, 100.0))

    # --- method "grain" (multi-grained editing: region prompts, ST-Layout attention)
    layout_steps: float = _opt(0.3, "grain: fraction of the editing steps with ST-Layout attention modulation",
                               range=(0.0, 1.0))
    layout_cross: float = _opt(1.0, "grain: strength (lambda) of the cross-attention modulation", range=(0.0, 1000.0))
    layout_self: float = _opt(0.3, "grain: strength (lambda) of the self-attention modulation", range=(0.0, 1000.0))
    layout_self_branch: str = _opt("cond", "grain: guidance half that gets the self-attention modulation "
                                   "(uncond: as the original code)", choices=("cond", "uncond"))
    layout_self_sigma: str = _opt("clip", "grain: self-attention region-size term 1 - |region|/(F hw), or "
                                  "1 - |region|/(F^2 hw) as the original code", choices=("clip", "frames2"))
    layout_factors: str = _opt("2,4,8", "grain: UNet levels with ST-Layout attention, as latent downsampling "
                               "factors (SD 1.5 at 512 px: 2,4,8 = 32x32, 16x16, 8x8)")
    layout_background: bool = _opt(True, "add a background region of the pixels outside every mask "
                                   "(grain; it takes part in self-attention only)")
    blend_from: float = _opt(0.0, "grain: from this fraction of the editing steps on, keep the source latents "
                             "outside the union of region masks (1: no blending)", range=(0.0, 1.0))
    inject_steps: int = _opt(0, "invert, grain: inject the source's residual features and self-attention "
                             "queries/keys in the first N editing steps (plug-and-play)", range=(0, 1000))
    auto_threshold: float = _opt(0.3, "grain, atlas: threshold of automatic masks (auto:WORD) on normalised attention",
                                 range=(0.0, 1.0))
    save_attention: bool = _opt(False, "grain: write each region's cross-attention maps into the run folder")

    # --- method "i2v" (edit the first frame with any image editor, propagate with an image-to-video model)
    first_frame: str | None = _opt(None, "i2v: the edited first frame (an image file); resized to the working size")
    first_frame_editor: str | None = _opt(None, "i2v: make the first frame with this image editor instead: ip2p "
                                          "(built in) or a name registered under the entry-point group "
                                          "videdit.image_editors")
    instruction: str | None = _opt(None, "i2v: instruction for --first-frame-editor (default: --prompt)")
    editor_model: str = _opt("ip2p", "i2v: model of the built-in ip2p first-frame editor")
    negative_prompt: str = _opt(I2V_NEGATIVE_PROMPT, "i2v: negative prompt of classifier-free guidance")
    inversion_steps: int = _opt(100, "i2v: DDIM inversion steps, every latent kept (more is more faithful, "
                                "up to about 500)", range=(1, 1000))
    start_step: int = _opt(0, "i2v: sampling step at which editing starts from the inverted latent (higher "
                           "follows the source motion more and drifts more)", range=(0, 999))
    tau_conv: float = _opt(0.2, "i2v: fraction of the sampling steps with residual-feature injection", range=(0.0, 1.0))
    tau_sa: float = _opt(0.2, "i2v: fraction of the sampling steps with spatial self-attention query/key injection",
                         range=(0.0, 1.0))
    tau_ta: float = _opt(0.5, "i2v: fraction of the sampling steps with temporal attention query/key injection",
                         range=(0.0, 1.0))
    fps_condition: int = _opt(8, "i2v: frame-rate micro-condition of the image-to-video model", range=(1, 240))
    long_clip: str = _opt("auto", "i2v: a clip longer than --chunk-frames is inverted and sampled as one long "
                          "latent (direct) or in overlapping chunks, each started from the previous chunk's output "
                          "(chunked); auto: direct up to 128 frames", choices=LONG_CLIP)
    chunk_frames: int = _opt(16, "i2v: frames per chunk with --long-clip chunked", range=(2, 4096))
    chunk_overlap: int = _opt(4, "i2v: frames shared by consecutive chunks (cross-faded)", range=(1, 4095))

    # --- method "atlas" (edit layered atlases, re-render every frame; videdit.atlas, methods/atlas.py)
    atlas_backend: str = _opt("mosaic", "atlas: layers built here without training (mosaic) or read from a Neural "
                              "Layered Atlas checkpoint (nla)", choices=("mosaic", "nla"))
    atlas_checkpoint: str | None = _opt(None, "atlas, nla: folder with 'checkpoint' (pickle: needs --allow-pickle) "
                                        "and 'config.json'")
    atlas_mask: list[str] | str | None = _opt(None, "atlas: foreground masks, one layer each (repeat the flag for "
                                              "more): a folder of per-frame images numbered by frame, a video, one "
                                              "image, or auto:WORD (the cross-attention of WORD in the source prompt); "
                                              "default: what moves against the background", repeat=True)
    keyframe_interval: int = _opt(8, "atlas, mosaic: frames between the keyframes that motion is chained through",
                                  range=(1, 10**6))
    keyframes: str = _opt("auto", "atlas: foreground keyframes to edit, e.g. 20,40,60 (the first is edited from "
                          "noise or --strength, the others from the edits so far); auto: frames that together "
                          "cover the foreground atlas; none: keep the foreground")
    propagation_strength: float = _opt(0.8, "atlas: noise level each next keyframe starts from (its edit carried "
                                       "through the atlas); above 0", range=(0.0, 1.0))
    fg_margin: float = _opt(0.2, "atlas: margin around a keyframe's mask in its crop, as a share of the mask's size",
                            range=(0.0, 10.0))
    fg_prompt: list[str] | str | None = _opt(None, "atlas: the prompt of one foreground layer's keyframes, in the order "
                                             "of --atlas-mask (repeat the flag for more layers); default: --prompt "
                                             "for every layer", repeat=True)
    bg_prompt: str = _opt("", "atlas: background edit (an instruction for instruction editors); empty: keep")
    bg_editor: str | None = _opt(None, "atlas: edit the background atlas with this image editor (ip2p, or a name "
                                 "registered under videdit.image_editors) and --bg-prompt")
    bg_atlas: str | None = _opt(None, "atlas: an edited background atlas image (from videdit atlas, same size)")

    def validate(self) -> "EditOptions":
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise UserError("empty prompt: say what the edited video should show, e.g. --prompt 'a cat'")
        for name in ("method", "control", "frame_attention", "anchor_cache", "anchor_share", "long_clip", "translate"):
            choices = EditOptions.__dataclass_fields__[name].metadata["choices"]
            if getattr(self, name) not in choices:
                raise UserError(f"--{name.replace('_', '-')} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        if self.steps is None:
            self.steps = STEPS_DEFAULT.get(self.method, 50)
        if self.model is None:
            self.model = MODEL_DEFAULT.get(self.method, "sd15")
        if self.guidance is None:
            self.guidance = GUIDANCE_DEFAULT.get(self.method, 7.5)
        for f in fields(self):
            if "range" in f.metadata and getattr(self, f.name) is not None:
                check_range(f.name, getattr(self, f.name), *f.metadata["range"])
        if self.method == "i2v":
            self._validate_i2v()
        if self.method == "atlas":
            from .methods.atlas import validate_options

            validate_options(self)
        if self.method != "i2v" and (self.first_frame is not None or self.first_frame_editor is not None):
            raise UserError(f"--first-frame and --first-frame-editor belong to --method i2v (this run's method is "
                            f"{self.method}); add --method i2v")
        return self

    def _validate_i2v(self) -> None:
        if self.first_frame is None and self.first_frame_editor is None:
            raise UserError("method i2v needs an edited first frame: --first-frame PATH, or "
                            "--first-frame-editor ip2p --instruction TEXT")
        if self.first_frame is not None and self.first_frame_editor is not None:
            raise UserError("give either --first-frame or --first-frame-editor, not both")
        if self.first_frame is not None and not Path(str(self.first_frame)).is_file():
            raise UserError(f"first frame not found: {self.first_frame}")
        if self.first_frame_editor is not None:
            from .editors import check_editor_name

            check_editor_name(str(self.first_frame_editor))
        if not 0 <= int(self.start_step) < int(self.steps):
            raise UserError(f"--start-step must be in [0, --steps), got {self.start_step}")
        if not 1 <= int(self.chunk_overlap) < int(self.chunk_frames):
            raise UserError(f"--chunk-overlap must be in [1, --chunk-frames), got {self.chunk_overlap}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


OPTION_NAMES = tuple(f.name for f in fields(EditOptions))


def option_help(f) -> str:
    """An option's help with its range, as the CLI's --help and the web UI show it."""
    if "range" not in f.metadata:
        return f.metadata["help"]
    low, high = f.metadata["range"]
    return f"{f.metadata['help']} [{_number(low)} to {_number(high)}]"


def _number(x) -> str:
    """A range bound as a person writes it: 0 and 1, not 0.0 and 1.0; whole ints in full."""
    return str(x) if isinstance(x, int) else f"{x:g}"


def check_range(name: str, value, low, high) -> None:
    """A `UserError` unless ``value`` is a finite number in [low, high] (``name`` is the option's field name)."""
    flag = "--" + name.replace("_", "-")
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{flag} must be a finite number, got {value}")
    if not low <= value <= high:
        raise UserError(f"{flag} must be in [{_number(low)}, {_number(high)}], got {value}")


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
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, int):
                return value
            if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
                return int(value)  # exact, however large (a float would round it)
            if float(value) != int(float(value)):
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
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"option {key} expects {kind}, got {value!r}") from None
    return value

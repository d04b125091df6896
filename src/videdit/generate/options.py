"""Options of `videdit generate` and `videdit refine`: one dataclass, the single source of truth for
names, defaults, ranges and help; the CLI builds its flags from it, the Python API takes it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields

from ..config import SEED_MAX, check_range
from ..errors import UserError

CONDITIONINGS = ("auto", "cam", "free", "none")
BLENDS = ("random", "none")
# Working size (width, height) by preset: what each model was trained at.
PRESET_SIZES = {"ms-t2v": (256, 256), "zeroscope": (576, 320), "zeroscope-xl": (1024, 576)}


def _opt(default, help: str, group: str = "generate", **meta):
    return field(default=default, metadata={"help": help, "group": group, **meta})


@dataclass
class GenerateOptions:
    prompt: str = _opt("", "what the video shows", group="common")
    model: str = _opt("ms-t2v", "text-to-video model (UNet3D): preset (ms-t2v, zeroscope), repository or folder")
    frames: int = _opt(80, "frames to generate", range=(1, 10**6))
    chunk: int = _opt(16, "frames per chunk (the base model's clip length)", range=(2, 1024))
    overlap: int = _opt(8, "frames of the video so far that each new chunk is conditioned on; it adds chunk - overlap",
                        range=(1, 1023))
    conditioning: str = _opt("auto", "how a chunk sees the frames before it: cam (the trained CAM and APM modules), "
                             "free (no training: overlap replaced and reconstruction guidance), none (independent "
                             "chunks); auto: cam when the model has streaming modules (unless their config.json says "
                             "\"auto\": \"free\"), else free", choices=CONDITIONINGS)
    modules: str | None = _opt(None, "folder of CAM/APM weights (default: the model's streaming/ folder)")
    reconstruction_guidance: float = _opt(1.0, "free: weight w_r of reconstruction guidance (0: off)", range=(0.0, 1000.0))
    shared_noise: bool = _opt(True, "free: start the overlap from the noise the previous chunk started it from")
    free_start: float = _opt(0.6, "free: the new frames start from the last known frame diffused this far (a "
                             "fraction of the schedule, as SDEdit); 1: from pure noise", range=(0.0, 1.0))
    steps: int = _opt(50, "DDIM steps", group="common", range=(1, 1000))
    guidance: float = _opt(7.5, "classifier-free guidance scale (1 or less: off)", group="common", range=(0.0, 100.0))
    eta: float = _opt(1.0, "DDIM eta (0: deterministic, 1: as DDPM)", group="common", range=(0.0, 1.0))
    negative_prompt: str = _opt("", "negative prompt of classifier-free guidance", group="common")
    seed: int = _opt(0, "random seed", group="common", range=(0, SEED_MAX))
    fps: float = _opt(8.0, "frame rate of the output", range=(0.1, 240.0))
    size: str | None = _opt(None, "working size WIDTHxHEIGHT or one side, multiples of 64 (default: the model's "
                            "own: ms-t2v 256x256, zeroscope 576x320)")
    refine: bool = _opt(False, "refine the generated video with randomized blending (see videdit refine)")
    refiner: str = _opt("zeroscope-xl", "refine: text-to-video model (UNet3D) that refines", group="refine")
    refine_strength: float = _opt(0.6, "refine: how far the video is noised, as a fraction of the diffusion "
                                  "(0.6: t = 600 of 1000)", group="refine", range=(0.0, 1.0))
    refine_steps: int = _opt(50, "refine: DDIM steps of the full schedule", group="refine", range=(1, 1000))
    refine_chunk: int = _opt(24, "refine: frames per chunk C", group="refine", range=(2, 1024))
    refine_overlap: int = _opt(8, "refine: frames O shared by consecutive chunks", group="refine", range=(1, 1023))
    refine_blend: str = _opt("random", "refine: random: each chunk after the first writes from a random offset r "
                             "in [0, O-1], drawn per chunk and step; none: r = 0", group="refine", choices=BLENDS)
    refine_size: str | None = _opt(None, "refine: working size WIDTHxHEIGHT or one side (default: the refiner's "
                                   "own, zeroscope-xl 1024x576)", group="refine")
    resume: bool = _opt(False, "continue a stopped run from its last finished chunk (state in the run folder)")
    device: str | None = _opt(None, "cuda, mps or cpu (default: the best available)", group="common")
    dtype: str | None = _opt(None, "fp16, bf16 or fp32 (default: fp16 on GPUs, fp32 on CPU)", group="common")
    allow_pickle: bool = _opt(False, "allow loading pickle checkpoints; unpickling runs code", group="common")
    vae_chunk: int = _opt(8, "frames per VAE encode/decode call", group="common", range=(1, 4096))
    progress: bool = _opt(True, "show progress with an estimate of the time left", group="common")
    overwrite: bool = _opt(False, "replace an existing output (and its run folder)", group="common")

    def validate(self) -> "GenerateOptions":
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise UserError("empty prompt: say what the video should show, e.g. --prompt 'a red circle moving right'")
        for f in fields(self):
            value = getattr(self, f.name)
            if "choices" in f.metadata and value not in f.metadata["choices"]:
                raise UserError(f"--{f.name.replace('_', '-')} must be one of {', '.join(f.metadata['choices'])}, "
                                f"got {value!r}")
            if "range" in f.metadata and value is not None:
                check_range(f.name, value, *f.metadata["range"])
        if not self.overlap < self.chunk:
            raise UserError(f"--overlap must be smaller than --chunk, got {self.overlap} and {self.chunk}")
        if not self.refine_overlap < self.refine_chunk:
            raise UserError(f"--refine-overlap must be smaller than --refine-chunk, got {self.refine_overlap} "
                            f"and {self.refine_chunk}")
        for name in ("size", "refine_size"):
            if getattr(self, name) is not None:
                parse_size(getattr(self, name), "--" + name.replace("_", "-"))
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def parse_size(text, flag: str = "--size") -> tuple[int, int]:
    """'256' -> (256, 256); '576x320' -> (576, 320); multiples of 64 (three UNet downsamplings of a 1/8 latent)."""
    parts = str(text).lower().replace("*", "x").split("x")
    try:
        w, h = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else (0, 0)
    except ValueError:
        raise UserError(f"{flag} must be WIDTHxHEIGHT or one side in pixels, got {text!r}") from None
    if w < 64 or h < 64 or w % 64 or h % 64 or max(w, h) > 4096:
        raise UserError(f"{flag} must be multiples of 64 from 64 to 4096, got {text!r}")
    return w, h


def option_fields(groups: tuple[str, ...]):
    """The fields of ``groups`` ("common", "generate", "refine"), in declaration order."""
    return [f for f in fields(GenerateOptions) if f.metadata["group"] in groups]

"""Long text-to-video, chunk by chunk, in memory that does not grow with the length.

After StreamingT2V (arXiv 2403.14773, section 4): the first chunk is F = 16 frames of the base model;
each new chunk of F frames is conditioned on the last O = 8 frames of the video so far, and its last
F - O frames are appended. How a chunk sees those frames (``--conditioning``):

- ``cam``: the paper's CAM and APM modules (`videdit.generate.modules`): the 8 frames through the CAM
  branch into every skip connection, the anchor (frame 0) as image tokens in the cross-attention.
- ``free``, without training, on any text-to-video model: the chunk's first O latents are the known
  ones, z^a, noised to each step (the replacement method, Ho et al. 2022 "Video Diffusion Models",
  section 3.1), with reconstruction guidance for the rest, z^b (same section, eq. 7):

      x~^b(z_t) = x^b(z_t) - (w_r alpha_t / 2) grad_{z^b_t} || z^a - x^a(z_t) ||^2,

  alpha_t = sqrt(abar_t), x(z_t) = (z_t - sigma_t eps(z_t)) / alpha_t the model's clean estimate; and
  z^a_t = alpha_t z^a + sigma_t eps^a with the noise eps^a the previous chunk started those frames
  from (noise shared across the overlap, as FreeNoise, arXiv 2310.15169, shares it between windows).
  With ``--free-start s`` < 1 the new frames do not start from pure noise but from the last known
  frame's latent diffused to step t_s = s T (SDEdit, Meng et al. 2022, section 3), and the chunk runs
  the last s of the schedule: z^b_{t_s} = alpha_{t_s} z^a_{O-1} + sigma_{t_s} eps^b.
- ``none``: independent chunks with the same seeds (the baseline the others are measured against).

Each finished chunk's new frames are decoded and written as PNGs into the run folder with the state
the next chunk needs (the overlap's latents and noise); the output is encoded from them at the end.
So memory holds one chunk, and ``--resume`` continues after the last finished chunk, with the same
frames as a run never stopped (every chunk draws from its own generator, seeded by (seed, chunk)).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..diffusion import encode_text, vae_decode
from ..errors import UserError, printable
from ..models import DiffusionModel
from .io import check_stream_output, encode_stream, frame_path, read_frames, read_png, write_png
from .options import PRESET_SIZES, GenerateOptions, parse_size
from .sample import ddim_sample, guided_eps, initial_noise, make_scheduler

# Options that must be the same for --resume to continue a run (--frames may grow).
RESUME_KEYS = ("prompt", "negative_prompt", "model", "conditioning", "chunk", "overlap", "steps", "guidance", "eta",
               "seed", "size", "reconstruction_guidance", "shared_noise", "free_start")


def chunk_seed(seed: int, index: int) -> int:
    """The seed of chunk ``index``: the run's seed for the first (so a 16-frame run is the base model's
    sample), a distinct 63-bit value for each later one."""
    return seed if index == 0 else (seed + index * 0x9E3779B97F4A7C15) % (2**63)


def text_context(model: DiffusionModel, prompt: str, negative: str, guidance: float) -> torch.Tensor:
    """(2, L, D) [negative, prompt] embeddings with guidance, (1, L, D) without."""
    if guidance > 1.0:
        return encode_text(model, [negative, prompt]).float()
    return encode_text(model, [prompt]).float()


def latent_shape(model: DiffusionModel, frames: int, size: tuple[int, int]) -> tuple:
    w, h = size
    return (1, model.unet.config.in_channels, frames, h // model.vae_scale, w // model.vae_scale)


def sample_clip(model: DiffusionModel, prompt: str, frames: int = 16, size: tuple[int, int] = (256, 256),
                steps: int = 50, guidance: float = 7.5, eta: float = 1.0, seed: int = 0,
                negative_prompt: str = "") -> torch.Tensor:
    """One clip of the base model: latents (1, C, F, h, w), as diffusers' TextToVideoSDPipeline samples them."""
    scheduler = make_scheduler(model.scheduler_config, steps)
    generator = torch.Generator().manual_seed(seed)
    x = initial_noise(latent_shape(model, frames, size), generator, scheduler).to(model.device)
    eps_fn = guided_eps(model.unet, text_context(model, prompt, negative_prompt, guidance), guidance)
    return ddim_sample(eps_fn, x, scheduler, eta, generator)


def reconstruction_guided(eps_fn, known: torch.Tensor, alphas_cumprod: torch.Tensor, weight: float):
    """eps~ from Ho et al.'s reconstruction guidance (module docstring) for known first frames z^a = ``known``."""
    n = known.shape[2]

    def fn(x: torch.Tensor, t) -> torch.Tensor:
        abar = alphas_cumprod[int(t)].to(x.dtype)
        alpha, sigma = abar.sqrt(), (1 - abar).sqrt()
        with torch.enable_grad():
            z = x.detach().requires_grad_(True)
            eps = eps_fn(z, t)
            x0 = (z - sigma * eps) / alpha
            error = ((known - x0[:, :, :n]) ** 2).sum()
            grad = torch.autograd.grad(error, z)[0]
        grad[:, :, :n] = 0  # the gradient acts on the unknown frames z^b only
        x0 = x0.detach() - (weight * alpha / 2) * grad
        return (x - alpha * x0) / sigma

    return fn


@dataclass
class Plan:
    """How ``frames`` frames are cut: chunk 0 gives ``chunk`` frames, each later one chunk - overlap."""

    frames: int
    chunk: int
    overlap: int

    @property
    def chunks(self) -> int:
        return 1 + math.ceil(max(0, self.frames - self.chunk) / (self.chunk - self.overlap))

    def first_new(self, index: int) -> int:
        """Index in the video of chunk ``index``'s first new frame."""
        return 0 if index == 0 else self.chunk + (index - 1) * (self.chunk - self.overlap)


class StreamRun:
    """The run folder of one generation: frames/ (PNG), state.json and state.safetensors, written after
    each finished chunk (state last, each file replaced atomically)."""

    def __init__(self, folder: Path):
        self.folder, self.frames = folder, folder / "frames"

    def save(self, done: int, frames: int, key: dict, tensors: dict[str, torch.Tensor]) -> None:
        from safetensors.torch import save_file

        tmp = self.folder / ".state.safetensors.tmp"
        save_file({k: v.detach().float().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
        os.replace(tmp, self.folder / "state.safetensors")
        tmp = self.folder / ".state.json.tmp"
        tmp.write_text(json.dumps(dict(chunks_done=done, frames_done=frames, options=key), indent=1), encoding="utf-8")
        os.replace(tmp, self.folder / "state.json")

    def load(self, key: dict) -> tuple[int, int, dict[str, torch.Tensor]]:
        from safetensors.torch import load_file

        path = self.folder / "state.json"
        if not path.is_file():
            return 0, 0, {}
        state = json.loads(path.read_text(encoding="utf-8"))
        changed = [k for k in RESUME_KEYS if state["options"].get(k) != key.get(k)]
        if changed:
            raise UserError(f"cannot resume {self.folder}: --{changed[0].replace('_', '-')} differs from the stopped run "
                            f"({state['options'].get(changed[0])!r}); use the same options or --overwrite")
        return state["chunks_done"], state["frames_done"], load_file(str(self.folder / "state.safetensors"))


def prepare_run(folder: Path, opts: GenerateOptions) -> StreamRun:
    """The run folder: continued with --resume, replaced with --overwrite, else a `UserError` if it exists."""
    if folder.exists() and not opts.resume and not opts.overwrite:
        raise UserError(f"run folder {printable(folder)} exists: pass --resume to continue it or --overwrite to "
                        "start again")
    return StreamRun(folder)


def open_run(run: StreamRun, opts: GenerateOptions) -> None:
    """Create the run folder (replacing an old one with --overwrite); called once the inputs are checked."""
    import shutil

    if run.folder.exists() and not opts.resume:
        shutil.rmtree(run.folder)
    run.frames.mkdir(parents=True, exist_ok=True)


class Streamer:
    """Samples chunk ``index`` of a stream given the state the previous chunk left."""

    def __init__(self, model: DiffusionModel, opts: GenerateOptions, size: tuple[int, int], conditioning: str,
                 modules=(None, None)):
        self.model, self.opts, self.size, self.conditioning = model, opts, size, conditioning
        self.cam, self.apm = modules
        self.context = text_context(model, opts.prompt, opts.negative_prompt, opts.guidance)
        self.image_context = None  # text + anchor tokens (APM), made once the anchor exists

    def _scheduler(self):
        return make_scheduler(self.model.scheduler_config, self.opts.steps, self.model.device)

    def sample(self, index: int, state: dict, frames_folder: Path, step_callback=None) -> tuple[torch.Tensor, dict]:
        """(latents (1, C, F, h, w) of chunk ``index``, the state for the next chunk)."""
        o, scheduler = self.opts.overlap, self._scheduler()
        generator = torch.Generator().manual_seed(chunk_seed(self.opts.seed, index))
        noise = initial_noise(latent_shape(self.model, self.opts.chunk, self.size), generator, scheduler)
        noise = noise.to(self.model.device)
        eps_fn, before, timesteps = guided_eps(self.model.unet, self.context, self.opts.guidance), None, None
        x_start = noise
        if index > 0 and self.conditioning == "free":
            known = state["latents"].to(noise)
            if self.opts.shared_noise:
                noise[:, :, :o] = state["noise"].to(noise)
            eps_a = noise[:, :, :o].clone()
            abar = scheduler.alphas_cumprod.to(noise)
            if self.opts.free_start < 1:  # SDEdit start of z^b from the last known frame
                k = max(1, round(self.opts.steps * self.opts.free_start))
                timesteps = scheduler.timesteps[self.opts.steps - k:]
                a = abar[int(timesteps[0])]
                x_start = noise.clone()
                x_start[:, :, o:] = a.sqrt() * known[:, :, -1:] + (1 - a).sqrt() * noise[:, :, o:]

            def before(i, t, x):  # z^a_t = alpha_t z^a + sigma_t eps^a
                x = x.clone()
                x[:, :, :o] = abar[int(t)].sqrt() * known + (1 - abar[int(t)]).sqrt() * eps_a
                return x

            if self.opts.reconstruction_guidance > 0:
                eps_fn = reconstruction_guided(eps_fn, known, abar, self.opts.reconstruction_guidance)
        elif index > 0 and self.conditioning == "cam":
            eps_fn = self._cam_eps(frames_folder, state)
        x = ddim_sample(eps_fn, x_start, scheduler, self.opts.eta, generator,
                        before_step=before, timesteps=timesteps, step_callback=step_callback)
        return x, {"latents": x[:, :, -o:], "noise": noise[:, :, -o:]}

    def _cam_eps(self, frames_folder: Path, state: dict):
        from ..diffusion import frames_to_tensor

        o, model = self.opts.overlap, self.model
        done = int(state["frames_done"].item())
        cond = frames_to_tensor(read_frames(frames_folder, done - o, done), model.device, torch.float32)[None]
        text = self.context
        if self.apm is not None and self.image_context is None:
            self.image_context = self._image_context(read_png(frame_path(frames_folder, 0)))
        context = self.image_context if self.apm is not None else text
        cam = self.cam

        def branch(xb, t, _context):
            frames = cond.expand(xb.shape[0], *cond.shape[1:])
            return cam.merge_fn(cam.branch(xb.to(cam.dtype), t, text.to(cam.dtype), frames))

        return guided_eps(model.unet, context, self.opts.guidance, branch=branch if cam is not None else None)

    def _image_context(self, anchor: np.ndarray) -> torch.Tensor:
        """[text_u, tokens(zero image)], [text_c, tokens(anchor)]: 77 + 16 tokens per branch (APM)."""
        from ..i2v import encode_image

        embeds = [encode_image(self.model, np.zeros_like(anchor)), encode_image(self.model, anchor)]
        tokens = torch.cat([self.apm.tokens(e[:, 0].to(self.apm.resampler[0].weight.dtype)) for e in embeds])
        tokens = tokens[-self.context.shape[0]:].to(self.context)
        return torch.cat([self.context, tokens], dim=1)


def resolve_size(opts: GenerateOptions, model: DiffusionModel) -> tuple[int, int]:
    from .t2v import native_size

    if opts.size is not None:
        return parse_size(opts.size)
    return PRESET_SIZES.get(opts.model, (native_size(model),) * 2)


def load_streaming(model: DiffusionModel, opts: GenerateOptions) -> tuple[str, tuple]:
    """The conditioning this run uses and its modules: ``auto`` is cam when the model (or --modules) has
    streaming modules, else free; modules whose config says ``"auto": "free"`` (measured to do worse than
    free on their model, as shapes-t2v's) leave auto at free, and serve ``--conditioning cam`` only."""
    folder = Path(opts.modules) if opts.modules else model.path / "streaming"
    has = (folder / "config.json").is_file()
    conditioning = opts.conditioning
    if conditioning == "auto":
        conditioning = json.loads((folder / "config.json").read_text("utf-8")).get("auto", "cam") if has else "free"
    if conditioning != "cam":
        return conditioning, (None, None)
    if not has:
        raise UserError(f"--conditioning cam needs CAM/APM weights: none in {folder} (give --modules DIR, convert the "
                        "released ones with videdit convert streamingt2v, or use --conditioning free)")
    from .modules import load_modules

    cam, apm = load_modules(folder, model.unet)
    if apm is not None:
        load_image_encoder(model)
    if cam is not None and cam.cond_frames != opts.overlap:
        raise UserError(f"these CAM weights condition on {cam.cond_frames} frames: use --overlap {cam.cond_frames}")
    return conditioning, (cam, apm)


def load_image_encoder(model: DiffusionModel) -> None:
    """The APM's image encoder (CLIP vision, pooled and projected) from the model's ``image_encoder/``."""
    from transformers import CLIPVisionModelWithProjection

    from ..models import check_component

    check_component(model.path, "image_encoder", False)
    encoder = CLIPVisionModelWithProjection.from_pretrained(model.path / "image_encoder", torch_dtype=model.dtype,
                                                            use_safetensors=True)
    processor = {}
    if (model.path / "feature_extractor" / "preprocessor_config.json").is_file():
        processor = json.loads((model.path / "feature_extractor" / "preprocessor_config.json").read_text("utf-8"))
    crop = processor.get("crop_size", encoder.config.image_size)
    model.extras.update(image_encoder=encoder.requires_grad_(False).eval().to(model.device),
                        image_size=(crop["height"], crop["width"]) if isinstance(crop, dict) else (int(crop),) * 2,
                        image_mean=processor.get("image_mean", [0.48145466, 0.4578275, 0.40821073]),
                        image_std=processor.get("image_std", [0.26862954, 0.26130258, 0.27577711]))


def generate(opts: GenerateOptions, output, on_chunk: Callable[[int, int], None] | None = None,
             model: DiffusionModel | None = None) -> Path:
    """Generate ``opts.frames`` frames into ``output``, chunk by chunk; see the module docstring.

    ``on_chunk(done, total)`` is called after each finished chunk (its state saved)."""
    from tqdm.auto import tqdm

    from ..api import run_folder_for
    from .t2v import load_t2v

    opts.validate()
    target = check_stream_output(output, opts.overwrite)
    run = prepare_run(run_folder_for(target), opts)
    if model is None:
        model = load_t2v(opts.model, opts.device, opts.dtype, opts.allow_pickle)
    size = resolve_size(opts, model)
    conditioning, modules = load_streaming(model, opts)
    open_run(run, opts)
    key = {k: getattr(opts, k) for k in RESUME_KEYS} | {"conditioning": conditioning, "size": list(size)}
    done, written, state = run.load(key) if opts.resume else (0, 0, {})
    plan = Plan(opts.frames, opts.chunk, opts.overlap)
    streamer = Streamer(model, opts, size, conditioning, modules)
    (run.folder / "options.json").write_text(json.dumps(opts.to_dict(), indent=1), encoding="utf-8")
    bar = tqdm(total=plan.chunks, initial=min(done, plan.chunks), unit="chunk", desc="generating",
               disable=not opts.progress)
    started = time.monotonic()
    for index in range(done, plan.chunks):
        state["frames_done"] = torch.tensor(written)
        x, state = streamer.sample(index, state, run.frames)
        new = x[:, :, -(opts.chunk if index == 0 else opts.chunk - opts.overlap):]
        pixels = vae_decode(model, new[0].permute(1, 0, 2, 3).to(model.dtype), chunk=opts.vae_chunk)
        for i, frame in enumerate(pixels):
            write_png(frame_path(run.frames, written + i), frame)
        written += len(pixels)
        run.save(index + 1, written, key, state)
        bar.update(1)
        if on_chunk is not None:
            on_chunk(index + 1, plan.chunks)
    bar.close()
    frames = (read_png(frame_path(run.frames, i)) for i in range(opts.frames))
    if opts.refine:
        from .refine import refine_frames

        return refine_frames(frames, opts.frames, opts, target)
    encode_stream(target, frames, opts.fps, opts.overwrite)
    if opts.progress:
        print(f"{opts.frames} frames in {time.monotonic() - started:.0f} s", flush=True)
    return target

"""Refinement with randomized blending (StreamingT2V, arXiv 2403.14773, section 4.3).

The video is upscaled to the refiner's size, encoded, and diffused with ONE noise tensor for the whole
video to t_k = strength x T (600 of 1000 by default). Every sampling step denoises chunks of C = 24
frames overlapping by O = 8; chunk i starts at i (C - O). Where chunks i - 1 and i overlap, chunk i
writes its prediction from a random offset r in [0, O - 1], drawn fresh per chunk and step, and the
frames before it keep chunk i - 1's prediction:

    eps_t[i(C-O) + r : i(C-O) + C] = eps_t^(i)[r : C],   r ~ U{0, ..., O - 1}

so no frame border is a seam at every step. (A DDIM step acts on each frame alone, so blending the
predictions is blending the next latents.) The video is padded, by repeating its last frame, to the
next length k(C - O) + O, and the output trimmed back to the input's length.

The latents of the whole video stay in memory (4 channels at 1/8 size: ~150 kB a frame at 1024x576);
frames are read and written one at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from ..diffusion import vae_decode, vae_encode
from ..models import DiffusionModel
from .io import check_stream_output, encode_stream, iter_video
from .options import PRESET_SIZES, GenerateOptions, parse_size
from .sample import guided_eps, make_scheduler, variance_noise
from .stream import text_context


def padded_length(frames: int, chunk: int, overlap: int) -> int:
    """The least k (C - O) + O >= frames, k >= 1."""
    stride = chunk - overlap
    k = max(1, -(-(frames - overlap) // stride))
    return k * stride + overlap


def blend_offsets(chunks: int, overlap: int, generator: torch.Generator | None) -> list[int]:
    """r for each chunk: 0 for the first; U{0, ..., O - 1} for the others, or 0 without a generator."""
    if generator is None:
        return [0] * chunks
    return [0] + torch.randint(0, overlap, (chunks - 1,), generator=generator).tolist()


def blend_chunks(predictions: list[torch.Tensor], stride: int, offsets: list[int]) -> torch.Tensor:
    """One (1, C, L, h, w) prediction from per-chunk ones: chunk i (starting at i * stride) writes from
    its offset r_i on, over what the chunks before it wrote."""
    c = predictions[0].shape[2]
    out = predictions[0].new_empty((*predictions[0].shape[:2], stride * (len(predictions) - 1) + c,
                                    *predictions[0].shape[3:]))
    for i, (pred, r) in enumerate(zip(predictions, offsets)):
        out[:, :, i * stride + r:i * stride + c] = pred[:, :, r:]
    return out


@torch.no_grad()
def refine_latents(model: DiffusionModel, z0: torch.Tensor, opts: GenerateOptions, progress=None) -> torch.Tensor:
    """Randomized-blending refinement of latents z0 (1, C, L, h, w), L = k (C - O) + O."""
    c, o = opts.refine_chunk, opts.refine_overlap
    stride, chunks = c - o, (z0.shape[2] - o) // (c - o)
    scheduler = make_scheduler(model.scheduler_config, opts.refine_steps, model.device)
    k = int(opts.refine_steps * opts.refine_strength)
    timesteps = scheduler.timesteps[opts.refine_steps - k:]
    if k == 0:
        return z0
    generator = torch.Generator().manual_seed(opts.seed)
    blend = torch.Generator().manual_seed(opts.seed + 1) if opts.refine_blend == "random" else None
    noise = torch.randn(z0.shape, generator=generator).to(z0)
    x = scheduler.add_noise(z0, noise, timesteps[:1])  # x_{t_k} = sqrt(abar) z0 + sqrt(1 - abar) eps
    eps_fn = guided_eps(model.unet, text_context(model, opts.prompt, opts.negative_prompt, opts.guidance), opts.guidance)
    for t in timesteps:
        eps = blend_chunks([eps_fn(x[:, :, i * stride:i * stride + c], t) for i in range(chunks)], stride,
                           blend_offsets(chunks, o, blend))
        z = variance_noise(tuple(x.shape), generator, x.dtype).to(x.device) if opts.eta > 0 else None
        x = scheduler.step(eps, t, x, eta=opts.eta, variance_noise=z).prev_sample
        if progress is not None:
            progress()
    return x


def refiner_size(opts: GenerateOptions, model: DiffusionModel) -> tuple[int, int]:
    from .t2v import native_size

    if opts.refine_size is not None:
        return parse_size(opts.refine_size, "--refine-size")
    return PRESET_SIZES.get(opts.refiner, (native_size(model),) * 2)


def refine_frames(frames: Iterable[np.ndarray], count: int, opts: GenerateOptions, output,
                  model: DiffusionModel | None = None) -> Path:
    """Refine ``count`` frames (read one at a time) into ``output``."""
    from tqdm.auto import tqdm

    from ..video import resize_frames
    from .t2v import load_t2v

    target = check_stream_output(output, opts.overwrite)
    if model is None:
        model = load_t2v(opts.refiner, opts.device, opts.dtype, opts.allow_pickle)
    size = refiner_size(opts, model)
    parts, batch = [], []
    for frame in frames:
        batch.append(resize_frames(frame[None], size)[0])
        if len(batch) == opts.vae_chunk:
            parts.append(vae_encode(model, np.stack(batch), chunk=opts.vae_chunk).float())
            batch = []
    if batch:
        parts.append(vae_encode(model, np.stack(batch), chunk=opts.vae_chunk).float())
    z0 = torch.cat(parts).permute(1, 0, 2, 3)[None]  # (1, C, N, h, w)
    n = z0.shape[2]
    length = padded_length(n, opts.refine_chunk, opts.refine_overlap)
    z0 = torch.cat([z0, z0[:, :, -1:].expand(-1, -1, length - n, -1, -1)], dim=2)
    bar = tqdm(total=int(opts.refine_steps * opts.refine_strength), desc="refining", unit="step",
               disable=not opts.progress)
    x = refine_latents(model, z0, opts, progress=lambda: bar.update(1))
    bar.close()

    def decoded() -> Iterator[np.ndarray]:
        for i in range(0, n, opts.vae_chunk):
            z = x[0, :, i:min(i + opts.vae_chunk, n)].permute(1, 0, 2, 3).to(model.dtype)
            yield from vae_decode(model, z, chunk=opts.vae_chunk)

    return encode_stream(target, decoded(), opts.fps, opts.overwrite)


def refine_video(video, opts: GenerateOptions, output, model: DiffusionModel | None = None) -> Path:
    """`videdit refine`: refine the video file ``video`` into ``output`` (its frame rate kept)."""
    from ..errors import UserError
    from ..video import read_clip

    opts.validate()
    if not Path(video).is_file():
        raise UserError(f"video not found: {video}")
    check_stream_output(output, opts.overwrite)
    info = read_clip(video, frames=1)
    count = sum(1 for _ in iter_video(video))
    opts.fps = float(info.fps)
    return refine_frames(iter_video(video), count, opts, output, model=model)

"""Method ``anchor``: fast instruction editing with anchor-based cross-frame attention.

After Fairy ("Fast Parallelized Instruction-Guided Video-to-Video Synthesis", CVPR 2024, section 3),
on an instruction editor of the InstructPix2Pix kind (8-channel UNet: noisy latent + source image).

1. The image condition c_I of every frame is the VAE posterior mode of the source frame, unscaled
   (InstructPix2Pix conditions on it so).
2. K anchor frames, spaced uniformly over the clip, are denoised first, together, with full
   cross-frame attention among themselves; the keys and values of every self-attention layer at
   every step and guidance branch are kept (`videdit.attention.anchor`).
3. Every other frame is denoised in chunks of ``--chunk``, in any order (and on any number of
   processes: `videdit.parallel`); its self-attention reads its own keys/values and the anchors'.
   ``--anchor-cache recompute`` keeps no cache: the anchors run again beside every chunk.
4. Three-branch guidance (InstructPix2Pix, Brooks et al. 2023, section 3.2.1):

       eps = eps(z, 0, 0) + s_T (eps(z, c_I, c_T) - eps(z, c_I, 0)) + s_I (eps(z, c_I, 0) - eps(z, 0, 0))

   s_T: --guidance (7.5), s_I: --image-guidance (1.5); 0 is the empty prompt or a zero image. As in
   diffusers' InstructPix2Pix pipeline, guidance is on only when s_T > 1 and s_I >= 1; otherwise
   eps = eps(z, c_I, c_T), one branch.
5. Euler ancestral sampling, 10 steps by default. All frames start from the same noise, and the
   noise added at each step is the same for all frames too: two frames that show the same thing
   then take the same path, so the sampler adds no flicker of its own (with noise drawn per frame,
   each frame gets its own fresh details at every step, which anchor attention only partly pulls
   back together; benchmarks/anchor_shapes.py measures both). The price is that the noise is tied
   to the screen, not to the content: textures that the noise seeds stay put while objects move.

Why our own sampler function (in the style of k-diffusion's ``sample_euler_ancestral``) rather
than diffusers' ``EulerAncestralDiscreteScheduler.step``: that step draws its noise with the shape
of the batch from a generator and counts steps inside the scheduler, so the noise a frame gets
would depend on the chunk's size and on how many chunks ran before it. Here each step's noise is
drawn once, (1, C, h, w), and handed to every chunk: the same for every frame, chunk, order and
rank. The noise levels themselves come from diffusers' scheduler (same sigmas and timesteps as the
InstructPix2Pix pipeline).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import parallel
from ..attention.anchor import AnchorCache, AnchorState, anchor_attention_processors
from ..config import EditOptions
from ..diffusion import encode_text, vae_decode, vae_encode
from ..errors import UserError
from ..models import DiffusionModel
from ..prompts import EditPlan
from . import MethodResult

log = logging.getLogger("videdit")

Denoiser = Callable[[torch.Tensor, int], torch.Tensor]
"""(x at noise level sigmas[i], i) -> the denoised estimate of x_0."""


def anchor_frames(num_frames: int, k: int) -> list[int]:
    """K anchors spaced uniformly: the middle frame of each of K equal parts of the clip."""
    k = max(1, min(int(k), num_frames))
    return [int((i + 0.5) * num_frames / k) for i in range(k)]


def euler_ancestral_schedule(model: DiffusionModel, steps: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(sigmas (steps + 1,), ending in 0; timesteps (steps,); the initial noise scale) of diffusers'
    Euler ancestral scheduler on the model's noise schedule. sigma = sqrt((1 - abar_t) / abar_t).

    The sampler starts from x_T = init_noise_sigma * noise, as diffusers' InstructPix2Pix pipeline does:
    sqrt(sigma_0^2 + 1) under ``leading`` spacing, sigma_0 under ``linspace`` and ``trailing``."""
    from diffusers import EulerAncestralDiscreteScheduler

    scheduler = EulerAncestralDiscreteScheduler.from_config(model.scheduler_config)
    if scheduler.config.prediction_type not in ("epsilon", "v_prediction"):
        raise UserError(f"--method anchor needs an epsilon- or v-prediction model; {model.name} predicts "
                        f"{scheduler.config.prediction_type}")
    scheduler.set_timesteps(steps, device="cpu")
    return scheduler.sigmas.double(), scheduler.timesteps.float(), float(scheduler.init_noise_sigma)


@torch.no_grad()
def sample_euler_ancestral(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, noise: torch.Tensor,
                           progress: bool = False, desc: str = "") -> torch.Tensor:
    """Euler ancestral sampling (eta = 1) from x = x_T at sigmas[0] down to sigmas[-1] = 0.

    ``noise[i]`` is the fresh noise added after step i (broadcast over the batch). Each step splits
    the move to sigma_next into a deterministic Euler step down to sigma_down and fresh noise of
    standard deviation sigma_up, with sigma_down^2 + sigma_up^2 = sigma_next^2.
    """
    for i in tqdm(range(len(sigmas) - 1), desc=desc, disable=not progress, leave=False):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoise(x, i)
        s_up = min(s_next, math.sqrt(s_next**2 * (s**2 - s_next**2) / s**2))
        s_down = math.sqrt(s_next**2 - s_up**2)
        d = (x - denoised) / s  # dx/dsigma of the probability-flow ODE
        x = x + d * (s_down - s)
        if s_next > 0:
            x = x + noise[i] * s_up
    return x


class AnchorEditor:
    """Everything one edit shares across chunks: conditioning, noise levels, noise, attention state."""

    def __init__(self, model: DiffusionModel, frames: np.ndarray, instruction: str, opts: EditOptions,
                 shared_noise: bool = True) -> None:
        channels = model.unet.config.in_channels
        if channels != 2 * model.latent_channels:
            raise UserError(f"--method anchor needs an instruction editor of the InstructPix2Pix kind (a UNet with "
                            f"{2 * model.latent_channels} input channels); {model.name} has {channels}: "
                            "use --model ip2p or a folder of such a model")
        self.model, self.frames, self.opts = model, frames, opts
        self.anchors = anchor_frames(len(frames), opts.anchors)
        cache = AnchorCache(keep_steps=opts.anchor_cache == "memory")
        self.state = AnchorState(self.anchors, cache, chunk_size=opts.attention_chunk)
        # Guidance as diffusers' InstructPix2Pix pipeline: three branches only when s_T > 1 and s_I >= 1;
        # otherwise one branch, eps(z, c_I, c_T).
        self.guided = opts.guidance > 1.0 and opts.image_guidance >= 1.0
        self.text = encode_text(model, [instruction, ""])[[0, 1, 1] if self.guided else [0]]  # c_T, 0, 0
        self.sigmas, self.timesteps, self.init_sigma = euler_ancestral_schedule(model, opts.steps)
        self.v_prediction = model.scheduler_config.get("prediction_type") == "v_prediction"
        h, w = frames.shape[1] // model.vae_scale, frames.shape[2] // model.vae_scale
        self.latent_shape = (model.latent_channels, h, w)
        self.shared_noise = shared_noise
        self._image: dict[int, torch.Tensor] = {}
        self._shared: torch.Tensor | None = None
        self.unet_calls = 0

    # -- conditioning and noise ------------------------------------------------------------
    def image_condition(self, idx: list[int]) -> torch.Tensor:
        """c_I of the listed frames: the unscaled VAE posterior mode, encoded once per frame."""
        todo = [f for f in idx if f not in self._image]
        if todo:
            z = vae_encode(self.model, self.frames[todo], self.opts.vae_chunk) / self.model.vae.config.scaling_factor
            self._image.update(zip(todo, z))
        return torch.stack([self._image[f] for f in idx])

    def noise(self, idx: list[int]) -> torch.Tensor:
        """(steps + 1, 1 or len(idx), C, h, w): [0] starts x_T = init_sigma * noise[0], [i + 1] is added
        after step i. Shared: one draw for all frames. Otherwise one draw per frame, seeded by its index."""
        steps = len(self.sigmas) - 1
        shape = (steps + 1, 1, *self.latent_shape)
        if self.shared_noise:
            if self._shared is None:  # drawn once, then the same for every chunk
                self._shared = torch.randn(shape, generator=torch.Generator().manual_seed(self.opts.seed))
            n = self._shared
        else:
            seeds = [(self.opts.seed * 100003 + f) % 2**64 for f in idx]  # a 64-bit seed per frame
            n = torch.cat([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds], dim=1)
        return n.to(self.model.device)

    # -- one guided prediction ---------------------------------------------------------------
    def predict_x0(self, x: torch.Tensor, i: int, idx: list[int], record: bool) -> torch.Tensor:
        """The denoised estimate for frames ``idx`` (clip indices), one UNet call over the 3 branches.

        With x = z_0 + sigma eps and the UNet input z_t = x / sqrt(sigma^2 + 1): x - sigma eps_hat for
        epsilon prediction, (z_t - sigma v_hat) / sqrt(sigma^2 + 1) for v prediction (v = sqrt(abar) eps
        - sqrt(1 - abar) z_0, with sqrt(abar) = 1 / sqrt(sigma^2 + 1)). Both are affine in the prediction,
        so guiding the predictions equals guiding the estimates."""
        model, opts = self.model, self.opts
        sigma, t = float(self.sigmas[i]), self.timesteps[i].to(model.device)
        n = len(idx)
        self.state.set(idx, i, record)
        x_in = (x / math.sqrt(sigma**2 + 1)).to(model.dtype)  # the UNet sees unit-variance input
        image = self.image_condition(idx)
        if self.guided:
            branches_x = torch.cat([x_in, x_in, x_in])
            branches_image = torch.cat([image, image, torch.zeros_like(image)])  # c_I, c_I, 0
        else:
            branches_x, branches_image = x_in, image
        emb = self.text.repeat_interleave(n, dim=0)  # c_T, 0, 0, each for n frames: branch-major
        pred = model.unet(torch.cat([branches_x, branches_image], dim=1), t, encoder_hidden_states=emb,
                          return_dict=False)[0].float()
        self.unet_calls += 1
        if self.guided:
            p_text, p_image, p_uncond = pred.chunk(3)  # eps or v of each branch
            pred = p_uncond + opts.guidance * (p_text - p_image) + opts.image_guidance * (p_image - p_uncond)
        if self.v_prediction:
            return (x / math.sqrt(sigma**2 + 1) - sigma * pred) / math.sqrt(sigma**2 + 1)
        return x - sigma * pred

    # -- passes ----------------------------------------------------------------------------
    def denoise_anchors(self) -> torch.Tensor:
        """Latents of the anchors, denoised together with full cross-frame attention; the cache fills."""
        idx = self.anchors
        noise = self.noise(idx)
        x = self.init_sigma * noise[0].expand(len(idx), *self.latent_shape)
        return sample_euler_ancestral(lambda x, i: self.predict_x0(x, i, idx, record=True), x, self.sigmas,
                                      noise[1:], self.opts.progress, desc="anchors")

    def denoise_chunk(self, idx: list[int]) -> torch.Tensor:
        """Latents of frames ``idx``, reading the anchors' keys/values. With ``--anchor-cache recompute``
        the anchors ride along in the same sampler (same noise, same steps) and refill the cache at each step."""
        K = len(self.anchors)
        recompute = not self.state.cache.keep_steps
        rows = (self.anchors + idx) if recompute else idx
        noise = self.noise(rows)
        x = self.init_sigma * noise[0].expand(len(rows), *self.latent_shape)

        def denoise(x, i):
            if not recompute:
                return self.predict_x0(x, i, idx, record=False)
            anchors = self.predict_x0(x[:K], i, self.anchors, record=True)
            return torch.cat([anchors, self.predict_x0(x[K:], i, idx, record=False)])

        out = sample_euler_ancestral(denoise, x, self.sigmas, noise[1:])
        return out[K:] if recompute else out

    def denoise_frames(self, frames: list[int], chunk: int, desc: str = "frames") -> dict[int, torch.Tensor]:
        """Latents of ``frames`` (in the order given), ``chunk`` at a time."""
        out: dict[int, torch.Tensor] = {}
        chunks = [frames[i:i + chunk] for i in range(0, len(frames), chunk)]
        for idx in tqdm(chunks, desc=desc, disable=not self.opts.progress, leave=False):
            out.update(zip(idx, self.denoise_chunk(idx)))
        return out


def edit_latents(model: DiffusionModel, frames: np.ndarray, instruction: str, opts: EditOptions,
                 order: list[int] | None = None, shared_noise: bool = True) -> tuple[dict[int, torch.Tensor], dict]:
    """Latents of every frame of a single-process edit: anchors first, then the others in ``order``
    (default: clip order), ``opts.chunk`` at a time. Returns ({frame: latent}, info)."""
    editor = AnchorEditor(model, frames, instruction, opts, shared_noise)
    anchors = editor.anchors
    others = [f for f in range(len(frames)) if f not in anchors]
    if order is not None:
        if sorted(order) != others:
            raise ValueError("order must list every non-anchor frame once")
        others = list(order)
    with anchor_attention_processors(model.unet, editor.state):
        t0 = time.perf_counter()
        latents = dict(zip(anchors, editor.denoise_anchors()))
        t1 = time.perf_counter()
        cache_mb = editor.state.cache.nbytes / 2**20
        latents.update(editor.denoise_frames(others, opts.chunk))
        t2 = time.perf_counter()
    info = dict(anchors=anchors, anchors_s=t1 - t0, frames_s=t2 - t1, anchor_cache_mb=cache_mb)
    return latents, info


def run(model: DiffusionModel, frames: np.ndarray, opts: EditOptions, plan: EditPlan) -> MethodResult:
    """Edit ``frames`` by the instruction ``opts.prompt``; in a parallel launch, this rank's share.

    On rank 0 (and in a single process) the result holds every frame; on other ranks it is empty.
    """
    dist = parallel.current()
    instruction = opts.prompt.strip()
    if dist is None:
        latents, info = edit_latents(model, frames, instruction, opts)
        edited = vae_decode(model, torch.stack([latents[f] for f in range(len(frames))]).to(model.dtype),
                            opts.vae_chunk)
        info.update(seconds_per_frame=(info["anchors_s"] + info["frames_s"]) / len(frames))
        return MethodResult(edited, {}, info)
    return _run_parallel(model, frames, instruction, opts, dist)


def _run_parallel(model, frames, instruction, opts, dist) -> MethodResult:
    """Rank r edits a contiguous share of the non-anchor frames; rank 0 also owns the anchors.

    The anchors' cache reaches every rank either by computing it on every rank (``--anchor-share
    every-rank``, default) or by computing it on rank 0 and broadcasting it (``broadcast``).
    Which is cheaper (benchmarks/anchor_speed.py, section 4): with one GPU per rank, computing the
    anchors on every rank takes the same wall time as on rank 0 alone (the others would only wait),
    while a broadcast adds the transfer of the whole cache: 2.9 GiB (3.1 GB) for SD 1.5 at 512x384 (3 anchors
    x 10 steps x 3 branches x 34.7 MB), seconds over a network between machines. Ranks that share
    CPU cores (the 2-process gloo run on one small machine) are the exception: there computing twice
    costs real time and a small cache is cheap to send, so ``broadcast`` wins. ``broadcast`` also
    guarantees bit-identical anchors on ranks of different hardware.
    """
    editor = AnchorEditor(model, frames, instruction, opts)
    anchors = editor.anchors
    others = [f for f in range(len(frames)) if f not in anchors]
    mine = parallel.share(others, dist.rank, dist.world_size)
    main = dist.rank == 0
    broadcast = opts.anchor_share == "broadcast" and opts.anchor_cache == "memory"
    latents: dict[int, torch.Tensor] = {}
    with anchor_attention_processors(model.unet, editor.state):
        t0 = time.perf_counter()
        if main or (opts.anchor_cache == "memory" and not broadcast):
            z = editor.denoise_anchors()
            if main:
                latents.update(zip(anchors, z))
        if broadcast:
            flat = {(*key, j): t for key, pair in editor.state.cache.entries.items() for j, t in enumerate(pair)}
            flat = parallel.broadcast_tensors(flat if main else None, model.device)
            editor.state.cache.entries = {(layer, step): (flat[(layer, step, 0)], flat[(layer, step, 1)])
                                          for layer, step, j in flat if j == 0}
        t1 = time.perf_counter()
        latents.update(editor.denoise_frames(mine, opts.chunk, desc=f"frames (rank {dist.rank})"))
        t2 = time.perf_counter()
    order = sorted(latents)
    decoded = (vae_decode(model, torch.stack([latents[f] for f in order]).to(model.dtype), opts.vae_chunk)
               if order else np.zeros((0, *frames.shape[1:]), np.uint8))  # more ranks than frames
    parts = parallel.gather_to_main((order, decoded, t1 - t0, t2 - t1))
    info = dict(anchors=anchors, ranks=dist.world_size, backend=dist.backend, anchor_share=opts.anchor_share,
                anchors_s=t1 - t0, frames_s=t2 - t1, anchor_cache_mb=editor.state.cache.nbytes / 2**20)
    if not main:
        return MethodResult(np.zeros((0, *frames.shape[1:]), np.uint8), {}, info)
    edited = np.empty_like(frames)
    for idx, part, _, _ in parts:
        edited[idx] = part
    info.update(anchors_s_by_rank=[p[2] for p in parts], frames_s_by_rank=[p[3] for p in parts])
    return MethodResult(edited, {}, info)

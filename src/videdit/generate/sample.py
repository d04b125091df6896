"""The base sampling loop of a text-to-video UNet3D: DDIM with eta, classifier-free guidance.

What streaming adds (overlap latents replaced before a step, a CAM branch, reconstruction guidance)
comes in as an ``eps_fn`` and a ``before_step`` hook; the loop itself is the sampler alone.
"""

from __future__ import annotations

from typing import Callable

import torch

from .t2v import unet_forward

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# branch(x_batched, t, context_batched) -> merge function for unet_forward (the CAM) or None
Branch = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], object]


def guided_eps(unet, context: torch.Tensor, guidance: float, branch: Branch | None = None) -> EpsFn:
    """eps_hat(x, t) = eps(x, t, c_u) + w (eps(x, t, c) - eps(x, t, c_u))  (classifier-free guidance).

    ``context`` is (2, L, D) [unconditional, conditional] with guidance, (1, L, D) without: as in
    diffusers, w <= 1 means one conditional batch and no guidance.
    """
    guided = context.shape[0] == 2

    def eps_fn(x: torch.Tensor, t) -> torch.Tensor:
        xb = torch.cat([x, x]) if guided else x
        merge = branch(xb, t, context) if branch is not None else None
        eps = unet_forward(unet, xb.to(unet.dtype), t, context, merge).to(x.dtype)
        if not guided:
            return eps
        eps_u, eps_c = eps.chunk(2)
        return eps_u + guidance * (eps_c - eps_u)

    return eps_fn


def variance_noise(shape: tuple, generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    """DDIM's fresh noise for one step of a (B, C, F, h, w) latent, drawn frame-major as diffusers'
    text-to-video pipeline draws it (it steps on (B F, C, h, w)), so that a seed means the same video."""
    b, c, f, h, w = shape
    noise = torch.randn((b * f, c, h, w), generator=generator, dtype=dtype)
    return noise.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)


@torch.no_grad()
def ddim_sample(eps_fn: EpsFn, x: torch.Tensor, scheduler, eta: float, generator: torch.Generator,
                before_step: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                timesteps=None, step_callback: Callable[[int], None] | None = None) -> torch.Tensor:
    """x_{t-1} = DDIM(x_t, eps_fn(x_t, t), eta) over the scheduler's timesteps (Song et al. 2021, eq. 12):

        x_{t-1} = sqrt(abar_{t-1}) x0_hat + sqrt(1 - abar_{t-1} - sigma_t^2) eps_hat + sigma_t z,
        sigma_t = eta sqrt((1 - abar_{t-1}) / (1 - abar_t)) sqrt(1 - abar_t / abar_{t-1}),  z ~ N(0, I).

    ``before_step(i, t, x)`` may replace x_t before the prediction (conditioning on known frames).
    """
    for i, t in enumerate(scheduler.timesteps if timesteps is None else timesteps):
        if before_step is not None:
            x = before_step(i, t, x)
        eps = eps_fn(x, t)
        z = variance_noise(tuple(x.shape), generator, x.dtype).to(x.device) if eta > 0 else None
        x = scheduler.step(eps, t, x, eta=eta, variance_noise=z).prev_sample
        if step_callback is not None:
            step_callback(i)
    return x


def initial_noise(shape: tuple, generator: torch.Generator, scheduler) -> torch.Tensor:
    """x_T ~ N(0, sigma_init^2 I) of shape (B, C, F, h, w), drawn as diffusers' pipeline draws it."""
    return torch.randn(shape, generator=generator, dtype=torch.float32) * scheduler.init_noise_sigma


def make_scheduler(config: dict, steps: int, device=None):
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(config)
    scheduler.set_timesteps(steps, device=device)
    return scheduler

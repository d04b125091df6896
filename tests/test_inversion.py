"""DDIM inversion followed by DDIM sampling under the same prompt returns the source latents."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videdit.diffusion import ddim_sample, encode_text, vae_encode
from videdit.inversion import invert, start_index
from videdit.models import load_sd


@pytest.fixture(scope="module")
def model(tiny_sd):
    return load_sd(str(tiny_sd))


def _latents(model, t=3, size=64):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, (t, size, size, 3), dtype=np.uint8)
    return vae_encode(model, frames)


def roundtrip_error(model, steps: int) -> float:
    """Relative L2 error of z_0 -> DDIM inversion (N steps) -> DDIM sampling (N steps), guidance 1."""
    z0 = _latents(model)
    emb = encode_text(model, ["a cat"]).expand(len(z0), -1, -1)
    traj = invert(model, z0, emb, steps, progress=False)
    back = ddim_sample(model, traj[-1], steps, steps, emb, None, 1.0, progress=False)
    return float((back - z0).norm() / z0.norm())


def test_inversion_roundtrip_is_close_and_improves_with_steps(model):
    errors = {n: roundtrip_error(model, n) for n in (10, 25, 50)}
    print("relative latent error by steps:", errors)
    assert errors[50] < 0.05
    assert errors[50] < errors[25] < errors[10]


def test_trajectory_keeps_every_step(model):
    z0 = _latents(model)
    emb = encode_text(model, [""]).expand(len(z0), -1, -1)
    traj = invert(model, z0, emb, 10, progress=False)
    assert traj.shape == (11, *z0.shape)
    assert torch.equal(traj[0], z0)
    assert all(not torch.equal(traj[i], traj[i + 1]) for i in range(10))
    # Sampling the last k steps from z_k lands near z_0 for every k, not only k = N.
    for k in (3, 7):
        back = ddim_sample(model, traj[k], k, 10, emb, None, 1.0, progress=False)
        assert float((back - z0).norm() / z0.norm()) < 0.1


@pytest.mark.parametrize("strength,steps,k", [(0.0, 50, 0), (1.0, 50, 50), (0.8, 50, 40), (0.5, 10, 5), (0.33, 10, 3)])
def test_start_index(strength, steps, k):
    assert start_index(strength, steps) == k

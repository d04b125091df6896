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


def test_cache_key_follows_the_weights_and_the_controlnet(tmp_path):
    """A model rewritten in place, or another ControlNet, must not reuse a cached trajectory."""
    from videdit.inversion import cache_key
    from videdit.tiny import write_tiny_model

    frames = np.zeros((2, 64, 64, 3), np.uint8)
    folder = write_tiny_model("sd15", tmp_path / "m", with_controlnet=True)
    plain, canny = load_sd(str(folder)), load_sd(str(folder), control="canny")
    key = cache_key(frames, plain, "a cat", 10, "none")
    assert key == cache_key(frames, load_sd(str(folder)), "a cat", 10, "none")
    assert key != cache_key(frames, plain, "a dog", 10, "none")
    assert cache_key(frames, canny, "a cat", 10, "canny") != key
    write_tiny_model("sd15", folder, seed=1, with_controlnet=True, overwrite=True)
    assert cache_key(frames, load_sd(str(folder)), "a cat", 10, "none") != key

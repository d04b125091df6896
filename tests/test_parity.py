"""The real code paths compute what diffusers' own pipelines and schedulers compute (tiny models, fp32, 1e-4).

Real weights cannot run on the machines this project is built on, so each sampling loop is checked
against the diffusers pipeline that does the same computation, on tiny random models of the real classes.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from videdit.config import make_options
from videdit.diffusion import ddim_sample, ddim_scheduler, encode_text
from videdit.models import load_sd

pytestmark = pytest.mark.usefixtures("one_thread")

TOL = 1e-4


@pytest.fixture(scope="module")
def sd(tiny_sd):
    return load_sd(str(tiny_sd), device="cpu")


@pytest.fixture(scope="module")
def ip2p(tmp_path_factory):
    from videdit.tiny import write_tiny_model

    return load_sd(str(write_tiny_model("ip2p", tmp_path_factory.mktemp("tiny") / "ip2p")), device="cpu")


def _frame(seed: int = 0, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (1, size, size, 3), dtype=np.uint8)


def _sd_pipeline(model, scheduler):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(vae=model.vae, text_encoder=model.text_encoder, tokenizer=model.tokenizer,
                                   unet=model.unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ----------------------------------------------------------------------------- invert / grain sampling

@pytest.mark.parametrize("guidance,rescale", [(7.5, 0.0), (7.5, 0.7), (1.0, 0.0), (0.5, 0.0)])
def test_ddim_sampling_matches_stable_diffusion_pipeline(sd, guidance, rescale):
    """The editing loop from pure noise is StableDiffusionPipeline with DDIM (eta 0): guidance <= 1 is no
    guidance, and guidance rescale (Lin et al. 2024, section 3.4) is diffusers' ``guidance_rescale``."""
    from diffusers import DDIMScheduler

    steps = 4
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    cond, uncond = encode_text(sd, ["a red circle"]), encode_text(sd, [""])
    ours = ddim_sample(sd, noise, steps, steps, cond, uncond, guidance, progress=False, guidance_rescale=rescale)
    pipe = _sd_pipeline(sd, DDIMScheduler.from_config(sd.scheduler_config))
    ref = pipe("a red circle", num_inference_steps=steps, guidance_scale=guidance, guidance_rescale=rescale,
               latents=noise.clone(), output_type="latent", height=64, width=64).images
    assert (ours - ref).abs().max() < TOL


def test_guidance_at_most_one_runs_one_branch(sd):
    """w <= 1 runs the UNet on the conditional batch only (diffusers: no classifier-free guidance)."""
    calls = []
    hook = sd.unet.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    try:
        noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        cond, uncond = (encode_text(sd, [p]).expand(2, -1, -1) for p in ("a cat", ""))
        ddim_sample(sd, noise, 1, 2, cond, uncond, 1.0, progress=False)
        ddim_sample(sd, noise, 1, 2, cond, uncond, 1.01, progress=False)
    finally:
        hook.remove()
    assert calls == [2, 4]


# ----------------------------------------------------------------------------- inversion schedulers

@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_inversion_walks_the_samplers_timesteps_back_for_any_spacing(sd, spacing):
    """Every spacing a model's config may have works, and each inversion step undoes the DDIM sampling
    step at the same timestep exactly (same eps); for leading and trailing the inverse scheduler is
    diffusers' DDIMInverseScheduler itself."""
    from diffusers import DDIMInverseScheduler

    config = dict(sd.scheduler_config, timestep_spacing=spacing)
    steps = 7
    sampler, inverse = ddim_scheduler(config, steps), ddim_scheduler(config, steps, inverse=True)
    assert torch.equal(inverse.timesteps, sampler.timesteps.flip(0))
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    for t in inverse.timesteps:
        eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(int(t)))
        x_up = inverse.step(eps, t, x).prev_sample
        back = sampler.step(eps, t, x_up).prev_sample
        assert (back - x).abs().max() < 1e-4, int(t)
        x = x_up
    if spacing != "linspace":
        theirs = DDIMInverseScheduler.from_config(config)
        theirs.set_timesteps(steps)
        assert torch.equal(theirs.timesteps, inverse.timesteps)


def test_linspace_model_inverts_and_edits(tiny_sd, tmp_path):
    """A model whose scheduler config says ``linspace`` edits end to end (it used to raise in inversion)."""
    import json
    import shutil

    import videdit

    folder = tmp_path / "linspace"
    shutil.copytree(tiny_sd, folder)
    cfg_path = folder / "scheduler" / "scheduler_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["timestep_spacing"] = "linspace"
    cfg_path.write_text(json.dumps(cfg))
    res = videdit.edit(np.repeat(_frame(2), 2, 0), "a cat", model=str(folder), size=64, steps=5, progress=False,
                       device="cpu")
    assert res.frames.shape == (2, 64, 64, 3)


# ----------------------------------------------------------------------------- the inversion cache

def test_inversion_cache_follows_the_scheduler_config(sd, tmp_path, monkeypatch):
    """A cached trajectory is not reused after the model's scheduler config changes: the second run
    computes, and equals a run without the cache."""
    from videdit.inversion import invert_cached

    monkeypatch.setenv("VIDEDIT_CACHE_DIR", str(tmp_path))
    frames = np.repeat(_frame(3), 2, 0)
    from videdit.diffusion import vae_encode

    z0 = vae_encode(sd, frames)
    emb = encode_text(sd, ["a cat"]).expand(2, -1, -1)
    first = invert_cached(sd, frames, z0, "a cat", emb, 6, "none", None, progress=False)
    again = invert_cached(sd, frames, z0, "a cat", emb, 6, "none", None, progress=False)
    assert not first.from_cache and again.from_cache and torch.equal(first.latents, again.latents)
    trailing = dataclasses.replace(sd, scheduler_config=dict(sd.scheduler_config, timestep_spacing="trailing"))
    changed = invert_cached(trailing, frames, z0, "a cat", emb, 6, "none", None, progress=False)
    fresh = invert_cached(trailing, frames, z0, "a cat", emb, 6, "none", None, use_cache=False, progress=False)
    assert not changed.from_cache
    assert (changed.latents - fresh.latents).abs().max() < TOL
    assert (changed.latents - first.latents).abs().max() > 1e-2  # the stale one was really another trajectory
    # another prompt embedding for the same prompt text (e.g. another text encoder) is another trajectory too
    other = invert_cached(sd, frames, z0, "a cat", emb * 1.01, 6, "none", None, progress=False)
    assert not other.from_cache
    assert not list(tmp_path.rglob("*.tmp*"))  # nothing half-written stays in the cache


def test_cache_key_covers_scheduler_embedding_and_control(sd):
    from videdit.inversion import cache_key

    frames = np.zeros((2, 64, 64, 3), np.uint8)
    emb = encode_text(sd, ["a cat"])
    key = cache_key(frames, sd, "a cat", 10, "none", prompt_embedding=emb)
    assert key == cache_key(frames, sd, "a cat", 10, "none", prompt_embedding=emb.clone())
    for cfg in (dict(timestep_spacing="trailing"), dict(prediction_type="v_prediction"), dict(beta_end=0.02)):
        other = dataclasses.replace(sd, scheduler_config=dict(sd.scheduler_config, **cfg))
        assert cache_key(frames, other, "a cat", 10, "none", prompt_embedding=emb) != key, cfg
    assert cache_key(frames, sd, "a cat", 10, "none", prompt_embedding=emb + 1e-3) != key
    assert cache_key(frames[:1], sd, "a cat", 10, "none", prompt_embedding=emb) != key
    maps = torch.zeros(2, 3, 64, 64)
    with_maps = cache_key(frames, sd, "a cat", 10, "canny", prompt_embedding=emb, control_maps=maps)
    assert with_maps != cache_key(frames, sd, "a cat", 10, "canny", prompt_embedding=emb, control_maps=maps + 1)
    assert cache_key(frames, sd, "a cat", 10, "none", {"frame_attention": "sparse"}, emb) != key


# ----------------------------------------------------------------------------- anchor (InstructPix2Pix)

@pytest.mark.parametrize("guidance,image_guidance", [(7.5, 1.5), (1.0, 1.5), (7.5, 0.5)])
def test_anchor_on_one_frame_matches_instruct_pix2pix_pipeline(ip2p, guidance, image_guidance):
    """One frame edited by method anchor is diffusers' StableDiffusionInstructPix2PixPipeline with Euler
    ancestral: the start x_T = init_noise_sigma * noise, the same noise stream, three-branch guidance only
    when s_T > 1 and s_I >= 1."""
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline
    from PIL import Image

    from videdit.methods.anchor import edit_latents

    frame = _frame(4)
    opts, _ = make_options(dict(prompt="make it blue", method="anchor", steps=4, seed=3, guidance=guidance,
                                image_guidance=image_guidance, anchors=1, progress=False, device="cpu"))
    ours = edit_latents(ip2p, frame, "make it blue", opts)[0][0]
    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=ip2p.vae, text_encoder=ip2p.text_encoder, tokenizer=ip2p.tokenizer, unet=ip2p.unet,
        scheduler=EulerAncestralDiscreteScheduler.from_config(ip2p.scheduler_config), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    ref = pipe("make it blue", image=Image.fromarray(frame[0]), num_inference_steps=4, guidance_scale=guidance,
               image_guidance_scale=image_guidance, generator=torch.Generator().manual_seed(3),
               output_type="latent").images[0]
    assert (ours - ref).abs().max() < TOL


"""videdit generate: the UNet3D loop against diffusers, streaming, resume, refine (tiny random models)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_t2v(tmp_path_factory):
    from videdit.generate.tiny import write_tiny_t2v

    return write_tiny_t2v(tmp_path_factory.mktemp("t2v") / "tiny")


@pytest.fixture(scope="module")
def model(tiny_t2v):
    from videdit.generate.t2v import load_t2v

    return load_t2v(str(tiny_t2v), device="cpu")


def test_unet_forward_is_the_unets_own(model):
    from videdit.generate.t2v import unet_forward

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 5, 8, 8, generator=g)
    text = torch.randn(2, 77, 32, generator=g)
    with torch.no_grad():
        ours = unet_forward(model.unet, x, torch.tensor(501), text)
        theirs = model.unet(x, torch.tensor(501), encoder_hidden_states=text, return_dict=False)[0]
    assert torch.equal(ours, theirs)


def test_sampling_matches_diffusers_text_to_video_pipeline(model):
    """DDIM with eta 1 and guidance 7.5, 16 frames: the same latents as TextToVideoSDPipeline (fp32, 1e-4)."""
    diffusers = pytest.importorskip("diffusers")
    pipe_cls = getattr(diffusers, "TextToVideoSDPipeline", None)
    if pipe_cls is None:
        pytest.skip("this diffusers has no TextToVideoSDPipeline")
    from videdit.generate.stream import sample_clip

    scheduler = diffusers.DDIMScheduler.from_config(model.scheduler_config)
    pipe = pipe_cls(vae=model.vae, text_encoder=model.text_encoder, tokenizer=model.tokenizer, unet=model.unet,
                    scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe("a red circle on grass", num_frames=16, height=64, width=64, num_inference_steps=4,
                    guidance_scale=7.5, eta=1.0, generator=torch.Generator().manual_seed(3), output_type="latent").frames
    ours = sample_clip(model, "a red circle on grass", frames=16, size=(64, 64), steps=4, guidance=7.5, eta=1.0, seed=3)
    assert ours.shape == expected.shape
    assert torch.allclose(ours, expected, atol=1e-4), float((ours - expected).abs().max())


def _frames(run_folder):
    from videdit.generate.io import read_png

    return np.stack([read_png(p) for p in sorted((run_folder / "frames").glob("*.png"))])


def _opts(**kw):
    from videdit.generate.options import GenerateOptions

    base = dict(prompt="a red circle moving right on grass", frames=32, steps=2, size="64", progress=False)
    return GenerateOptions(**(base | kw))


@pytest.mark.parametrize("conditioning", ["free", "cam"])
def test_stream_writes_every_frame_chunk_by_chunk(tmp_path, tiny_t2v, model, conditioning):
    from videdit.generate.stream import generate
    from videdit.video import read_clip

    seen = []
    out = generate(_opts(model=str(tiny_t2v), frames=36, conditioning=conditioning), tmp_path / "long.mp4",
                   model=model, on_chunk=lambda done, total: seen.append((done, total, len(list(
                       (tmp_path / "long_run" / "frames").glob("*.png"))))))
    # 16 + 8 + 8 + 8 >= 36: four chunks, each one's frames on disk when it finishes
    assert seen == [(1, 4, 16), (2, 4, 24), (3, 4, 32), (4, 4, 40)]
    assert len(read_clip(out).frames) == 36


def test_resume_gives_the_frames_of_an_uninterrupted_run(tmp_path, tiny_t2v, model):
    from videdit.generate.stream import generate

    generate(_opts(model=str(tiny_t2v), conditioning="cam"), tmp_path / "whole.mp4", model=model)

    def stop(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(_opts(model=str(tiny_t2v), conditioning="cam"), tmp_path / "parts.mp4", model=model, on_chunk=stop)
    assert not (tmp_path / "parts.mp4").exists() and len(_frames(tmp_path / "parts_run")) == 24
    from videdit.errors import UserError

    with pytest.raises(UserError, match="--seed differs"):
        generate(_opts(model=str(tiny_t2v), conditioning="cam", resume=True, seed=1), tmp_path / "parts.mp4",
                 model=model)
    with pytest.raises(UserError, match="pass --resume"):
        generate(_opts(model=str(tiny_t2v), conditioning="cam"), tmp_path / "parts.mp4", model=model)
    generate(_opts(model=str(tiny_t2v), conditioning="cam", resume=True), tmp_path / "parts.mp4", model=model)
    whole, parts = _frames(tmp_path / "whole_run"), _frames(tmp_path / "parts_run")
    assert whole.shape == parts.shape == (32, 64, 64, 3)
    assert np.array_equal(whole, parts)


def test_fresh_modules_are_the_identity_and_the_tiny_ones_act(model, tiny_t2v):
    """Zero-initialised CAM outputs and APM alpha = 0 leave the base UNet's prediction unchanged; the tiny
    model's non-zero ones change it; installed APM processors are removed again afterwards."""
    from videdit.generate.modules import APM, CAM, load_modules
    from videdit.generate.t2v import unet_forward

    g = torch.Generator().manual_seed(0)
    x, frames = torch.randn(1, 4, 16, 8, 8, generator=g), torch.rand(1, 8, 3, 64, 64, generator=g) * 2 - 1
    text, image = torch.randn(1, 77, 32, generator=g), torch.randn(1, 16, 32, generator=g)
    t = torch.tensor(400)
    before = dict(model.unet.attn_processors)
    with torch.no_grad():
        plain = unet_forward(model.unet, x, t, text)
        for cam, apm in [(CAM(model.unet, frame_channels=(8, 8, 16, 16)), APM(model.unet, image_dim=32, hidden=40)),
                         load_modules(tiny_t2v / "streaming", model.unet)]:
            with apm.installed(model.unet):
                out = unet_forward(model.unet, x, t, torch.cat([text, image], 1),
                                   cam.merge_fn(cam.branch(x, t, text, frames)))
            if cam.mergers[0].proj_out.weight.abs().sum() == 0:
                assert torch.allclose(out, plain, atol=1e-6)
            else:
                assert (out - plain).abs().max() > 1e-3
    assert {k: type(v) for k, v in model.unet.attn_processors.items()} == {k: type(v) for k, v in before.items()}

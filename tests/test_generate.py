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


def test_free_start_continues_from_the_last_known_frame(tmp_path, tiny_t2v, model):
    """--free-start s: a later chunk runs the last round(s T) steps from the last known frame's latent
    diffused to t_s; at s = 0.1 of 10 steps (t = 1) its new frames are that frame, unlike at s = 1."""
    from videdit.generate import stream

    calls = []
    real = stream.ddim_sample
    stream.ddim_sample = lambda *a, **k: calls.append(k["timesteps"]) or real(*a, **k)
    try:
        for start in (0.1, 1.0):
            stream.generate(_opts(model=str(tiny_t2v), frames=24, steps=10, conditioning="free", free_start=start),
                            tmp_path / f"s{start}.mp4", model=model)
    finally:
        stream.ddim_sample = real
    assert calls[0] is None and calls[2] is None and calls[3] is None  # chunk 0 always, s = 1: the whole schedule
    assert [int(t) for t in calls[1]] == [1]
    near, far = (np.abs(_frames(tmp_path / f"s{s}_run")[16:].astype(float) - _frames(tmp_path / f"s{s}_run")[15])
                 .mean() for s in (0.1, 1.0))
    assert near < 2 and far > 4 * near, (near, far)


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


def test_randomized_blending_writes_each_chunk_from_its_offset():
    from videdit.generate.refine import blend_chunks, blend_offsets, padded_length

    assert [padded_length(n, 24, 8) for n in (10, 24, 25, 40, 41, 240)] == [24, 24, 40, 40, 56, 248]
    preds = [torch.full((1, 1, 24, 1, 1), float(i)) for i in range(3)]
    out = blend_chunks(preds, 16, [0, 3, 7])[0, 0, :, 0, 0].tolist()
    assert out == [0.0] * 19 + [1.0] * 20 + [2.0] * 17  # chunk 1 from 16 + 3, chunk 2 from 32 + 7
    g = torch.Generator().manual_seed(0)
    draws = [blend_offsets(4, 8, g) for _ in range(50)]
    assert all(d[0] == 0 and all(0 <= r <= 7 for r in d) for d in draws)
    assert len({tuple(d) for d in draws}) > 10  # fresh per step
    assert blend_offsets(4, 8, None) == [0, 0, 0, 0]


def test_refine_real_footage_keeps_length_and_rate(tmp_path, videos, tiny_t2v, model):
    from videdit.generate.refine import refine_video
    from videdit.video import read_clip, write_video

    source = read_clip(videos / "woman-running.mp4", frames=30)
    clip = write_video(tmp_path / "in.mp4", source.frames, source.fps)
    opts = _opts(refiner=str(tiny_t2v), refine_size="64", refine_steps=4, refine_chunk=12, refine_overlap=4)
    out = {}
    for blend in ("random", "none"):
        opts.refine_blend = blend
        out[blend] = read_clip(refine_video(clip, opts, tmp_path / f"{blend}.mp4", model=model))
    assert out["random"].frames.shape == out["none"].frames.shape == (30, 64, 64, 3)
    assert out["random"].fps == source.fps
    assert not np.array_equal(out["random"].frames, out["none"].frames)


def test_cli_generate_with_refine_and_clean_stops(tmp_path, tiny_t2v, capsys):
    from videdit.cli import main
    from videdit.video import read_clip

    common = ["--prompt", "a red circle", "--model", str(tiny_t2v), "--steps", "2", "--size", "64", "--no-progress"]
    assert main(["generate", *common, "--frames", "20", "--refine", "--refiner", str(tiny_t2v), "--refine-steps",
                 "4", "--refine-size", "64", "-o", str(tmp_path / "a.mp4")]) == 0
    assert read_clip(tmp_path / "a.mp4").frames.shape == (20, 64, 64, 3)
    for bad, says in [(["--frames", "20", "-o", str(tmp_path / "a.gif")], "frame by frame"),
                      (["--size", "100", "-o", str(tmp_path / "b.mp4")], "multiples of 64"),
                      (["--conditioning", "cam", "--modules", str(tmp_path), "-o", str(tmp_path / "c.mp4")],
                       "needs CAM/APM weights")]:
        capsys.readouterr()
        assert main(["generate", *common, *bad]) == 2
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1
    assert not (tmp_path / "a.gif").exists() and not (tmp_path / "c.mp4").exists()
    assert not (tmp_path / "c_run").exists()


def released_state(unet) -> dict:
    """A state dict in the released StreamingT2V layout (names of its public code) from random weights."""
    from videdit.generate.modules import APM, CAM

    cam, apm = CAM(unet, frame_channels=(8, 8, 16, 16)), APM(unet, image_dim=24, hidden=40)
    n = len(cam.mergers)
    state = {f"base_model.{k}": v for k, v in unet.state_dict().items()}
    for k, v in cam.state_dict().items():
        if k.startswith("frame_embedding."):
            state["unet.controlnet_cond_embedding." + k[len("frame_embedding."):]] = v
        elif k.startswith("mergers."):
            i, rest = k.split(".", 2)[1:]
            block = f"cross_attention_merger_down_blocks.{i}" if int(i) < n - 1 else "cross_attention_merger_mid_block"
            state[f"base_model.{block}.temporal_transformer.{rest}"] = v
        else:
            state["unet." + k] = v
    for layer in apm.layers:  # e.g. down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor
        mixer = apm.mixers[layer.removesuffix(".processor").replace(".", "_")]
        path = "base_model." + layer.removesuffix(".processor")
        state |= {f"{path}.conv.weight": mixer.conv.weight, f"{path}.conv.bias": mixer.conv.bias,
                  f"{path}.conv_ln.weight": mixer.norm.weight, f"{path}.conv_ln.bias": mixer.norm.bias,
                  f"{path}.alpha": mixer.alpha}
    state |= {f"resampler.context_embedding.{k}": v for k, v in apm.resampler.state_dict().items()}
    state["vae.encoder.conv_in.weight"] = torch.zeros(1)  # frozen copies: skipped
    return {k: torch.randn_like(v) for k, v in state.items()}


def test_convert_streamingt2v_maps_every_released_weight(tmp_path, tiny_t2v, model, capsys):
    from safetensors.torch import load_file

    from videdit.cli import main
    from videdit.generate.modules import load_modules

    state = released_state(model.unet)
    ckpt = tmp_path / "streaming_t2v.ckpt"
    torch.save({"state_dict": state, "epoch": 3}, ckpt)
    assert main(["convert", "streamingt2v", str(ckpt), "-o", str(tmp_path / "out"), "--base", str(tiny_t2v)]) == 2
    err = capsys.readouterr().err
    assert "--allow-pickle" in err and err.count("\n") == 1 and not (tmp_path / "out").exists()
    assert main(["convert", "streamingt2v", str(ckpt), "-o", str(tmp_path / "out"), "--base", str(tiny_t2v),
                 "--allow-pickle"]) == 0
    cam, apm = load_modules(tmp_path / "out" / "streaming", model.unet)  # strict: no missing or unexpected key
    assert torch.equal(cam.frame_embedding.conv_out.weight, state["unet.controlnet_cond_embedding.conv_out.weight"])
    assert torch.equal(cam.mergers[-1].attention.to_k.weight,
                       state["base_model.cross_attention_merger_mid_block.temporal_transformer.attention.to_k.weight"])
    assert torch.equal(apm.resampler[2].bias, state["resampler.context_embedding.2.bias"])
    unet = load_file(str(tmp_path / "out" / "unet" / "diffusion_pytorch_model.safetensors"))
    assert set(unet) == set(model.unet.state_dict())
    assert torch.equal(unet["conv_out.weight"], state["base_model.conv_out.weight"])
    state["base_model.cross_attention_merger_down_blocks.99.temporal_transformer.proj_in.weight"] = torch.zeros(1)
    torch.save({"state_dict": state}, ckpt)
    assert main(["convert", "streamingt2v", str(ckpt), "-o", str(tmp_path / "bad"), "--base", str(tiny_t2v),
                 "--allow-pickle"]) == 2
    assert "unexpected" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_frame_embedding_meets_the_latent_size_of_any_vae_downsampling(tmp_path):
    """The CAM's frame embedding halves the frames as often as the base's VAE does (8: the paper's three
    stride-2 pairs; 4: ShapesWorld's VAE), and a saved CAM is rebuilt with its own downsampling."""
    from videdit.generate.modules import CAM, FrameEmbedding, load_modules, save_modules
    from videdit.generate.tiny import tiny_unet3d_config
    from diffusers import UNet3DConditionModel

    frames = torch.randn(2, 3, 64, 64)
    assert FrameEmbedding(32)(frames).shape == (2, 32, 8, 8)
    assert FrameEmbedding(32, downsample=4)(frames).shape == (2, 32, 16, 16)
    assert FrameEmbedding(32, downsample=1)(frames).shape == (2, 32, 64, 64)
    for bad in (3, 16):
        with pytest.raises(ValueError):
            FrameEmbedding(32, downsample=bad)
    unet = UNet3DConditionModel(**tiny_unet3d_config())
    save_modules(tmp_path, CAM(unet, frame_channels=(8, 8, 16, 16), downsample=4), None)
    cam, _ = load_modules(tmp_path, unet)
    assert cam.downsample == 4 and cam.frame_embedding(frames).shape[-1] == 16

"""Method ``anchor``: anchor attention maths, chunk/order independence, parallel = single process."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from videdit.attention.anchor import AnchorCache, AnchorState, anchor_attention, anchor_attention_processors
from videdit.attention.frames import frame_attention, gather_frames
from videdit.config import make_options
from videdit.errors import UserError

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "videdit" / "shapes" / "weights" / "shapes-ip2p"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_ip2p(tmp_path_factory) -> Path:
    from videdit.tiny import write_tiny_model

    return write_tiny_model("ip2p", tmp_path_factory.mktemp("tiny") / "ip2p")


@pytest.fixture(scope="module")
def model(tiny_ip2p):
    from videdit.models import load_sd

    return load_sd(str(tiny_ip2p), device="cpu")


def clip(n: int = 10, seed: int = 0) -> np.ndarray:
    """A small moving pattern: a bright square sliding over a gradient, 64x64."""
    y, x = np.mgrid[0:64, 0:64]
    frames = []
    for t in range(n):
        img = np.stack([x * 3, y * 3, np.full_like(x, 80)], -1).astype(np.float64)
        x0 = 8 + 3 * t
        img[20:36, x0:x0 + 16] = (240, 60, 40)
        frames.append(img)
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- the formula

def dense_reference(q, k, v, k_anc, v_anc, num_frames, is_anchor, scale):
    """softmax(Q_f [K_f, K_anc]^T * s) [V_f, V_anc], written out in float64, one frame and branch at a time."""
    B = q.shape[0] // num_frames
    out = torch.empty(q.shape[:-1] + (v.shape[-1],), dtype=torch.float64)
    for b in range(B):
        for f in range(num_frames):
            i = b * num_frames + f
            keys = k_anc[b] if is_anchor[f] else torch.cat([k[i], k_anc[b]], -2)
            values = v_anc[b] if is_anchor[f] else torch.cat([v[i], v_anc[b]], -2)
            logits = q[i].double() @ keys.double().transpose(-1, -2) * scale
            out[i] = torch.softmax(logits, -1) @ values.double()
    return out


def test_anchor_attention_matches_dense_reference():
    g = torch.Generator().manual_seed(0)
    B, F, H, N, d, K = 3, 5, 2, 6, 8, 2
    q, k, v = (torch.randn(B * F, H, N, d, generator=g) for _ in range(3))
    k_anc, v_anc = (torch.randn(B, H, K * N, d, generator=g) for _ in range(2))
    is_anchor = [False, True, False, False, True]
    for chunk in (None, 1, 4):
        out = anchor_attention(q, k, v, k_anc, v_anc, F, is_anchor, chunk_size=chunk, scale=d**-0.5)
        ref = dense_reference(q, k, v, k_anc, v_anc, F, is_anchor, d**-0.5)
        assert (out.double() - ref).abs().max() < 1e-5
    # the frame's own keys matter: without them the output changes
    plain = anchor_attention(q, k, v, k_anc, v_anc, F, [True] * F, scale=d**-0.5)
    assert (plain - out).abs().max() > 1e-2


def test_all_frames_as_anchors_is_full_cross_frame_attention():
    g = torch.Generator().manual_seed(1)
    B, F, H, N, d = 2, 4, 2, 5, 8
    q, k, v = (torch.randn(B * F, H, N, d, generator=g) for _ in range(3))
    every = list(range(F))
    k_anc = gather_frames(k.unflatten(0, (B, F)), every)
    v_anc = gather_frames(v.unflatten(0, (B, F)), every)
    out = anchor_attention(q, k, v, k_anc, v_anc, F, [True] * F, chunk_size=3)
    full = frame_attention(q, k, v, F, "full")
    assert (out - full).abs().max() < 1e-5


def _anchor_run(unet, frames: int, seed: int):
    """Random latents of `frames` frames and a prompt embedding; returns the anchor state (anchors 0
    and 2), eps(frames, record, rows) that sets the state and runs the UNet on those rows, and the
    same UNet call without touching the state."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(frames, 8, 8, 8, generator=g)
    emb = torch.randn(1, 77, unet.config.cross_attention_dim, generator=g)
    t = torch.tensor(500.0)
    state = AnchorState(anchors=[0, 2], cache=AnchorCache())

    def plain_eps(rows):
        return unet(x[rows], t, encoder_hidden_states=emb.expand(len(rows), -1, -1)).sample

    def eps(idx, record, rows):
        state.set(idx, 0, record)
        return plain_eps(rows)

    return state, eps, plain_eps


def test_processors_record_then_read_the_same_keys(model):
    """In a UNet: anchors denoised together (record) and the same frames read back from the cache
    (attend) give the same noise prediction; a non-anchor frame depends only on itself and the anchors."""
    unet = model.unet
    state, eps, _ = _anchor_run(unet, frames=5, seed=2)
    with anchor_attention_processors(unet, state):
        recorded = eps([0, 2], True, [0, 2])
        read = eps([0, 2], False, [0, 2])
        alone = eps([3], False, [3])
        together = eps([1, 3, 4], False, [1, 3, 4])
    assert (recorded - read).abs().max() < 1e-5
    assert (alone[0] - together[1]).abs().max() < 1e-5
    assert len(state.cache.entries) > 0
    assert all(type(p).__name__ != "AnchorAttnProcessor" for p in unet.attn_processors.values())


def test_injection_wrapped_around_anchor_processors_keeps_anchor_attention(model):
    """Injection (mode "off": q and k pass unchanged) wrapped around the anchor processors runs their
    attention through `AnchorAttnProcessor.attend`, so a non-anchor frame still sees only itself
    and the cached anchors; plain attention there would give a different prediction."""
    from videdit.attention.injection import InjectionState, feature_injection

    unet = model.unet
    state, eps, plain_eps = _anchor_run(unet, frames=4, seed=3)
    with anchor_attention_processors(unet, state):
        eps([0, 2], True, [0, 2])
        alone = eps([3], False, [3])
        with feature_injection(unet, InjectionState(mode="off")) as used:
            wrapped = eps([3], False, [3])
    plain = plain_eps([3])
    assert used["attentions"]
    assert (wrapped - alone).abs().max() < 1e-5
    assert (plain - alone).abs().max() > 1e-3


# ----------------------------------------------------------------------------- the method

def _opts(**kw):
    base = dict(prompt="make it a watercolour", method="anchor", steps=4, anchors=3, chunk=4, progress=False,
                device="cpu")
    return make_options(dict(base, **kw))[0]


def test_defaults_by_method():
    opts = _opts(steps=None)
    assert opts.steps == 10 and opts.model == "ip2p" and opts.image_guidance == 1.5 and opts.anchors == 3
    invert = make_options({"prompt": "a cat"})[0]
    assert invert.steps == 50 and invert.model == "sd15"
    with pytest.raises(UserError):
        _opts(anchor_cache="disk")
    with pytest.raises(UserError):
        _opts(anchors=0)


def test_chunk_size_and_order_do_not_change_frames(model):
    from videdit.methods.anchor import edit_latents

    frames = clip(10)
    ref, info = edit_latents(model, frames, "make it a watercolour", _opts(chunk=4))
    others = [f for f in range(10) if f not in info["anchors"]]
    runs = {
        "chunk 1": edit_latents(model, frames, "make it a watercolour", _opts(chunk=1))[0],
        "chunk 7 reversed": edit_latents(model, frames, "make it a watercolour", _opts(chunk=7), order=others[::-1])[0],
        "recompute": edit_latents(model, frames, "make it a watercolour", _opts(chunk=3, anchor_cache="recompute"))[0],
    }
    for name, lat in runs.items():
        diff = max((lat[f] - ref[f]).abs().max().item() for f in range(10))
        assert diff < 1e-5, name
    # the frames are edited (not the source) and differ from each other where the source does
    assert (ref[1] - ref[9]).abs().max() > 1e-3
    # another instruction gives other frames: the text reaches the UNet
    other, _ = edit_latents(model, frames, "make it a cartoon", _opts(chunk=4))
    assert (other[1] - ref[1]).abs().max() > 1e-4


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_denoised_estimate_follows_the_prediction_type(model, prediction):
    """A UNet that predicts exactly (eps or v of a known z_0) gives back z_0 at every noise level."""
    import dataclasses

    from diffusers import DDPMScheduler

    from videdit.methods.anchor import AnchorEditor

    config = dict(model.scheduler_config, prediction_type=prediction)
    abar = DDPMScheduler.from_config(config).alphas_cumprod.double()
    z0 = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)).double()

    def oracle(sample, t, encoder_hidden_states=None, return_dict=False):
        a = abar[int(t)]
        z_t = sample[:, :4].double()
        eps = (z_t - a.sqrt() * z0.repeat(3, 1, 1, 1)) / (1 - a).sqrt()
        out = eps if prediction == "epsilon" else a.sqrt() * eps - (1 - a).sqrt() * z0.repeat(3, 1, 1, 1)
        return (out.float(),)

    unet = type("Oracle", (), {"config": model.unet.config, "__call__": staticmethod(oracle)})()
    fake = dataclasses.replace(model, scheduler_config=config, unet=unet)
    editor = AnchorEditor(fake, clip(2), "make it blue", _opts(steps=6))
    for i in range(len(editor.sigmas) - 1):
        sigma = float(editor.sigmas[i])
        x = z0 + sigma * torch.randn(z0.shape, generator=torch.Generator().manual_seed(i)).double()
        x0 = editor.predict_x0(x.float(), i, [0, 1], record=False)
        assert (x0 - z0).abs().max() < 1e-3 * max(1.0, sigma), (prediction, i, sigma)


def test_sd_model_is_refused(tiny_sd):
    import videdit

    with pytest.raises(UserError, match="Stable Diffusion kind.*--method anchor takes an instruction editor.*use --method invert"):
        videdit.edit(clip(3), "make it blue", method="anchor", model=str(tiny_sd), size=64, steps=1,
                     progress=False, device="cpu")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_worker(rank: int, world: int, port: int, model_dir: str, out_dir: str) -> None:
    """One rank of a 2-process run, found by the launcher's environment variables as torchrun sets them."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), HF_HUB_OFFLINE="1")
    torch.set_num_threads(1)
    import videdit

    for share in ("every-rank", "broadcast"):
        out = Path(out_dir) / f"{share}.gif"
        res = videdit.edit(clip(10), "make it a watercolour", method="anchor", model=model_dir, size=64, steps=4,
                           chunk=2, anchor_share=share, progress=False, device="cpu", output=out, run_folder=False)
        if rank == 0:
            np.save(Path(out_dir) / f"{share}.npy", res.edited_working)
        else:
            assert res.output is None and len(res.frames) == 0
    import torch.distributed as dist

    dist.destroy_process_group()


def test_two_processes_give_the_same_frames_as_one(tiny_ip2p, tmp_path):
    """What a parallel run guarantees: the frames of one process, up to the order of float reductions.

    Frames are independent given the anchors, so splitting them over ranks changes no formula; what it
    changes is the batches each UNet call sees (here chunks of 3 in one process, of 2 on each rank) and,
    in general, each process's thread count, and both change the order in which floats are summed. The
    thread count alone already moves a decoded pixel by up to 7/255 on a tiny random model (one process
    at 1 thread against 2 threads), so both sides here run at one thread, and the tolerance that is left
    is that of other batch shapes: at most 1/255 per pixel, under 1% of pixels off by that much."""
    import torch.multiprocessing as mp

    import videdit

    single = videdit.edit(clip(10), "make it a watercolour", method="anchor", model=str(tiny_ip2p), size=64, steps=4,
                          chunk=3, progress=False, device="cpu")
    # fork: the children start with the libraries already imported (spawn re-imports them: ~10 s each)
    mp.start_processes(_rank_worker, args=(2, _free_port(), str(tiny_ip2p), str(tmp_path)), nprocs=2,
                       start_method="fork")
    for share in ("every-rank", "broadcast"):
        parallel = np.load(tmp_path / f"{share}.npy")
        assert parallel.shape == single.edited_working.shape
        diff = np.abs(parallel.astype(int) - single.edited_working.astype(int))
        assert diff.max() <= 1 and diff.mean() < 0.01, share
        assert (tmp_path / f"{share}.gif").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".gif") == ["broadcast.gif", "every-rank.gif"]


# ----------------------------------------------------------------------------- meaning (ShapesWorld)

@pytest.mark.skipif(not (WEIGHTS / "model_index.json").is_file(),
                    reason=f"ShapesWorld instruction editor not trained yet ({WEIGHTS} is missing); "
                           "benchmarks/anchor_shapes.py measures the acceptance once it lands")
def test_shapes_circle_turns_blue_and_stays_stable():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from anchor_shapes import edit_moving_circle

    result = edit_moving_circle(n_frames=16, anchors=3)
    assert result["blue_fraction"] >= 0.9
    assert result["object_delta_e_anchor"] < result["object_delta_e_per_frame"]
    assert result["background_psnr_anchor"] > result["background_psnr_per_frame"]


# ----------------------------------------------------------------------------- equivariant finetuning

def test_random_affine_stays_within_limits_and_moves_both_images_alike():
    from videdit.finetune import random_affine, transform_pair

    rng = np.random.default_rng(0)
    for _ in range(200):
        m = random_affine(rng, 64, 48)
        linear = m[:, :2]
        # scale 0.95-1.05 with shear <= 5 deg: singular values stay near 1; det = s^2
        assert 0.95**2 - 1e-9 <= np.linalg.det(linear) <= 1.05**2 + 1e-9
        sv = np.linalg.svd(linear, compute_uv=False)
        assert 0.85 < sv.min() and sv.max() < 1.15
        centre = m @ np.array([31.5, 23.5, 1.0])
        assert abs(centre[0] - 31.5) <= 0.05 * 64 + 1e-9 and abs(centre[1] - 23.5) <= 0.05 * 48 + 1e-9
    img = clip(1)[0]
    a, b = transform_pair(np.random.default_rng(1), img, img.copy())
    assert np.array_equal(a, b) and not np.array_equal(a, img)


def test_finetune_equivariant_on_a_folder_of_triples(tiny_ip2p, tmp_path):
    import json

    from PIL import Image

    from videdit.cli import main
    from videdit.models import load_sd

    data = tmp_path / "triples"
    data.mkdir()
    frames = clip(4)
    with open(data / "metadata.jsonl", "w") as f:
        for i in range(2):
            Image.fromarray(frames[i]).save(data / f"s{i}.png")
            Image.fromarray(frames[i + 2][..., ::-1].copy()).save(data / f"t{i}.png")
            f.write(json.dumps({"source": f"s{i}.png", "target": f"t{i}.png", "instruction": "make it blue"}) + "\n")
    out = tmp_path / "finetuned"
    assert main(["finetune-equivariant", str(tiny_ip2p), str(data), "-o", str(out), "--steps", "2", "--batch", "2",
                 "--resolution", "64"]) == 0
    tuned, base = load_sd(str(out), device="cpu"), load_sd(str(tiny_ip2p), device="cpu")
    changed = any((p - q).abs().max() > 0 for p, q in zip(tuned.unet.parameters(), base.unet.parameters()))
    assert changed and tuned.unet.config.in_channels == 8
    (data / "metadata.jsonl").write_text('{"source": "missing.png", "target": "t0.png", "instruction": "x"}\n')
    assert main(["finetune-equivariant", str(tiny_ip2p), str(data), "-o", str(tmp_path / "x"), "--steps", "1"]) == 2

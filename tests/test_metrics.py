"""Metrics of `videdit eval` on clips with known motion, a tiny random CLIP, and real footage."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from videdit import metrics as M
from videdit.errors import UserError
from videdit.evaluate import add_eval_arguments, evaluate_video, format_table, run_eval, to_json

VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "videos"
SHIFT = 2  # pixels per frame of the synthetic clips
NOISE_AT = 16  # frame replaced by noise: late enough for PySceneDetect's 15-frame minimum scene length


def texture(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth random colour texture (bicubic upsampling of coarse noise), so flow is well defined."""
    coarse = np.random.default_rng(seed).integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def moving_clip(frames: int = 24, h: int = 64, w: int = 96, shift: int = SHIFT, seed: int = 0) -> np.ndarray:
    """A window sliding right by ``shift`` pixels per frame over a wider texture: flow is -shift in x."""
    tex = texture(h, w + shift * frames, seed)
    return np.stack([tex[:, shift * t:shift * t + w] for t in range(frames)])


def with_noise_frame(clip: np.ndarray, at: int = NOISE_AT) -> np.ndarray:
    out = clip.copy()
    out[at] = np.random.default_rng(1).integers(0, 256, out[at].shape, dtype=np.uint8)
    return out


def flicker(frames: np.ndarray, amount: float = 0.25, seed: int = 0) -> np.ndarray:
    """Per-frame brightness jitter: each frame times a gain drawn from [1 - amount, 1 + amount]."""
    gain = np.random.default_rng(seed).uniform(1 - amount, 1 + amount, len(frames))
    return np.clip(frames.astype(np.float32) * gain[:, None, None, None], 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return moving_clip()


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory) -> Path:
    from videdit.tiny_clip import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


@pytest.fixture(scope="module")
def tiny_clip(tiny_clip_dir) -> M.Clip:
    return M.load_clip(str(tiny_clip_dir), device="cpu")


def write_frames(folder: Path, frames: np.ndarray) -> Path:
    """A lossless frame folder (PNG), readable by `videdit.video.read_clip`."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i:05d}.png")
    return folder


# ------------------------------------------------------------------------ flow and warp error


def test_flow_recovers_the_known_motion(clip):
    flow = M.dis_flow(clip[3], clip[4])
    inner = flow[8:-8, 8:-8]
    assert np.median(inner[..., 0]) == pytest.approx(-SHIFT, abs=0.2)
    assert np.median(inner[..., 1]) == pytest.approx(0, abs=0.2)


def test_warp_error_of_the_source_against_itself_is_near_zero(clip):
    flows = M.video_flows(clip)
    result = M.warp_error(clip, flows)
    assert result.value < 1e-4
    assert result.variant["flow"] == "dis" and result.variant["flow_on"] == "source"
    assert len(result.detail["per_pair"]) == len(clip) - 1
    assert all(p.valid.mean() > 0.8 for p in flows)  # most pixels are visible in both frames


def test_occlusion_marks_inconsistent_flow():
    forward = np.zeros((8, 8, 2), np.float32)
    backward = np.zeros((8, 8, 2), np.float32)
    backward[2:4, 2:4] = 3.0  # the way back disagrees with the way there: |F_f + w(F_b)|^2 = 18 > 0.5 + ...
    valid = M.non_occluded(forward, backward)
    assert not valid[2:4, 2:4].any() and valid[5:, 5:].all()


def test_a_noise_frame_raises_warp_error_and_adds_exactly_one_cut(clip):
    noisy = with_noise_frame(clip)
    flows = M.video_flows(clip)
    clean, broken = M.warp_error(clip, flows).value, M.warp_error(noisy, flows).value
    assert broken > 50 * clean and broken > 0.01
    assert M.scene_cuts(noisy).value == M.scene_cuts(clip).value + 1
    assert M.scene_cuts(noisy).detail["cuts"] == [NOISE_AT]
    assert M.scene_cuts(noisy).variant["detector"] == "content"


def test_scene_detectors_on_a_real_cut_and_a_flash(clip):
    slow = moving_clip(shift=1)  # the adaptive detector wants a cut well above the usual change of frames
    cut = np.concatenate([slow[:NOISE_AT], moving_clip(shift=1, seed=5)[:8]])
    for detector in M.DETECTORS:
        assert M.scene_cuts(cut, detector).detail["cuts"] == [NOISE_AT]
        assert M.scene_cuts(slow, detector).value == 0
    # The adaptive detector (StreamingT2V's SCuts) compares a score with its neighbours': one odd
    # frame is no cut there. With a short minimum scene length the content detector sees two.
    assert M.scene_cuts(with_noise_frame(clip), "adaptive").value == 0
    assert M.scene_cuts(with_noise_frame(clip), "content", min_scene_len=1).detail["cuts"] == [NOISE_AT, NOISE_AT + 1]


def test_mawe_penalises_inconsistency_and_standstill(clip):
    smooth = M.mawe(clip, size=None)
    broken = M.mawe(with_noise_frame(clip), size=None)
    assert 0 <= smooth.value < broken.value
    assert smooth.variant["c"] == 9.5 and smooth.variant["flow_on"] == "itself"
    assert np.mean(smooth.detail["motion"]) == pytest.approx(SHIFT, abs=0.3)
    still = np.repeat(clip[:1], 4, axis=0)
    assert math.isinf(M.mawe(still, size=None).value)
    assert M.mawe(clip[:4], size=128).variant["size"] == "128x128"


# ------------------------------------------------------------------------ PSNR and SSIM


def test_psnr_and_ssim_are_perfect_for_identical_frames(clip):
    assert math.isinf(M.psnr(clip, clip).value)
    assert M.ssim(clip, clip).value == pytest.approx(1.0)


def test_masked_psnr_is_infinite_outside_an_untouched_region(clip):
    mask = np.zeros(clip.shape[:3], bool)
    mask[:, 16:40, 24:60] = True  # the edit may change this box
    edited = clip.copy()
    edited[mask] = 255 - edited[mask]
    keep = ~mask
    assert math.isinf(M.psnr(edited, clip, keep).value)
    assert M.ssim(edited, clip, keep).value == pytest.approx(1.0)
    assert M.psnr(edited, clip).value < 20
    assert M.ssim(edited, clip).value < 0.9
    assert M.psnr(edited, clip, keep).variant["region"] == "outside mask"
    changed = edited.copy()
    changed[:, 0:4] = 0  # now the outside changes too
    assert not math.isinf(M.psnr(changed, clip, keep).value)
    assert M.ssim(changed, clip, keep).value < 1.0


def test_psnr_of_a_known_error():
    a = np.full((2, 4, 4, 3), 100, np.uint8)
    b = a + 10  # MSE 100 -> PSNR = 10 log10(255^2 / 100)
    assert M.psnr(b, a).value == pytest.approx(10 * math.log10(255**2 / 100))


# ------------------------------------------------------------------------ CLIP


def test_clip_metrics_run_with_the_tiny_clip(tiny_clip, clip):
    frames = clip[:6]
    t = M.clip_t(tiny_clip, frames, "a red circle")
    assert -100 <= t.value <= 100 and len(t.detail["per_frame"]) == 6
    assert t.variant["model"] == tiny_clip.name and t.variant["scale"] == "100 x cos"
    consecutive, every = M.clip_f(tiny_clip, frames), M.clip_f(tiny_clip, frames, "all")
    assert len(consecutive.detail["per_pair"]) == 5 and len(every.detail["per_pair"]) == 15
    assert consecutive.variant["pairs"] == "consecutive" and every.variant["pairs"] == "all"
    assert -1 <= consecutive.value <= 1
    still = np.repeat(frames[:1], 3, axis=0)
    assert M.clip_f(tiny_clip, still).value == pytest.approx(1.0, abs=1e-5)
    acc = M.frame_accuracy(tiny_clip, frames, "a red circle", "a blue square")
    assert acc.value in {i / 6 for i in range(7)}


def test_clip_scores_follow_their_formulas():
    images = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    assert M.clip_text_score(images, np.array([1.0, 0.0])).tolist() == pytest.approx([100, 60, 0])
    assert M.clip_frame_score(images, "consecutive").tolist() == pytest.approx([0.6, 0.8])
    assert M.clip_frame_score(images, "all").tolist() == pytest.approx([0.6, 0.0, 0.8])
    hits = M.frame_accuracy_hits(images, np.array([0.0, 1.0]), np.array([1.0, 0.0]))
    assert hits.tolist() == [0, 1, 1]


def test_clip_unavailable_is_reported_and_the_rest_still_runs(clip):
    source = clip[:6]
    for model in ("videdit-tests/no-such-clip", "/no/such/clip/folder"):
        result = evaluate_video(flicker(source), source=source, prompt="a wolf", source_prompt="a dog",
                                clip_model=model, mawe_size=None)
        for name in ("clip_t", "clip_f", "frame_accuracy"):
            entry = result["metrics"][name]
            assert entry["value"] is None and "CLIP model unavailable" in entry["unavailable"]
            assert entry["variant"]["model"] == model
        assert result["metrics"]["warp_error"]["value"] > 0
        assert result["metrics"]["ssim"]["value"] < 1
    table = format_table(result)
    assert "unavailable: CLIP model unavailable" in table and "Warp error (edited)" in table


# ------------------------------------------------------------------------ evaluate / CLI


def test_evaluate_video_reports_each_value_beside_its_variant(tiny_clip, clip):
    source = clip[:8]
    mask = np.zeros(source.shape[:3], bool)
    mask[:, 10:30, 10:40] = True
    edited = source.copy()
    edited[mask] = 0
    result = evaluate_video(edited, source=source, prompt="a red circle", source_prompt="a blue square",
                            mask=mask, clip_model=tiny_clip, pairs="all", mawe_size=None)
    metrics = result["metrics"]
    assert set(metrics) == {"clip_t", "clip_f", "frame_accuracy", "warp_error", "warp_error_source", "mawe", "scuts",
                            "scuts_adaptive", "psnr", "psnr_outside_mask", "ssim", "ssim_outside_mask"}
    assert all("variant" in entry for entry in metrics.values())
    assert metrics["clip_f"]["variant"]["pairs"] == "all"
    assert math.isinf(metrics["psnr_outside_mask"]["value"]) and not math.isinf(metrics["psnr"]["value"])
    assert metrics["warp_error_source"]["value"] < metrics["warp_error"]["value"]
    data = json.loads(to_json(result))
    assert data["metrics"]["psnr_outside_mask"]["value"] == "inf"
    assert data["metrics"]["clip_t"]["variant"]["model"] == tiny_clip.name
    table = format_table(result)
    assert "inf dB" in table and "pairs=all" in table and "flow_on=source" in table


def test_evaluate_without_source_uses_the_videos_own_flow(clip):
    result = evaluate_video(clip[:5], clip_model=None, mawe_size=None)
    metrics = result["metrics"]
    assert metrics["warp_error"]["variant"]["flow_on"].startswith("edited")
    assert metrics["psnr"]["unavailable"] == "needs --source"
    assert "not requested" in metrics["clip_t"]["unavailable"]


def test_bad_inputs_are_user_errors(clip):
    with pytest.raises(UserError, match="--mask needs --source"):
        evaluate_video(clip, mask=np.zeros(clip.shape[:3], bool), clip_model=None)
    with pytest.raises(UserError, match="--pairs"):
        evaluate_video(clip, pairs="some", clip_model=None)
    with pytest.raises(UserError, match="fewer than"):
        evaluate_video(clip, source=clip[:3], clip_model=None)
    with pytest.raises(UserError, match="--source-prompt needs --prompt"):
        evaluate_video(clip, source_prompt="a dog", clip_model=None)


def test_run_eval_from_files(tmp_path, tiny_clip_dir, clip, capsys):
    pytest.importorskip("videdit.video")
    source = write_frames(tmp_path / "source", clip[:6])
    edited = write_frames(tmp_path / "edited", flicker(clip[:6]))
    parser = argparse.ArgumentParser()
    add_eval_arguments(parser)
    args = parser.parse_args([str(edited), "--source", str(source), "--prompt", "a cat", "--clip-model",
                              str(tiny_clip_dir), "--json"])
    assert run_eval(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["frames"] == 6 and data["metrics"]["clip_t"]["value"] is not None
    assert data["metrics"]["warp_error"]["value"] > data["metrics"]["warp_error_source"]["value"]
    with pytest.raises(UserError, match="no such file"):
        run_eval(parser.parse_args([str(tmp_path / "missing.mp4")]))


def test_tiny_clip_has_the_real_classes(tiny_clip_dir):
    from transformers import CLIPModel, CLIPTokenizer

    assert (tiny_clip_dir / "model.safetensors").is_file()
    assert isinstance(CLIPModel.from_pretrained(tiny_clip_dir), CLIPModel)
    tokenizer = CLIPTokenizer.from_pretrained(tiny_clip_dir)
    assert len(tokenizer("a wolf")["input_ids"]) == 4  # start, "a", "wolf", end: the words are whole tokens


# ------------------------------------------------------------------------ acceptance on real footage


@pytest.fixture(scope="module")
def wolf() -> np.ndarray:
    path = VIDEOS / "wolf.mp4"
    if not path.is_file():
        pytest.skip(f"sample video not found: {path}")
    from videdit.video import read_clip, resize_frames

    return resize_frames(read_clip(path, frames=16).frames, (128, 128))


def test_wolf_against_itself_and_a_flickered_copy(wolf, tiny_clip):
    flickered = flicker(wolf)
    same = evaluate_video(wolf, source=wolf, clip_model=tiny_clip, mawe_size=None)["metrics"]
    flick = evaluate_video(flickered, source=wolf, clip_model=tiny_clip, mawe_size=None)["metrics"]
    assert same["warp_error"]["value"] == same["warp_error_source"]["value"]
    assert same["warp_error"]["value"] < flick["warp_error"]["value"]
    assert same["ssim"]["value"] == pytest.approx(1.0) and flick["ssim"]["value"] < 0.99
    assert same["mawe"]["value"] < flick["mawe"]["value"]
    assert same["clip_f"]["value"] > flick["clip_f"]["value"]  # holds with the tiny random CLIP too


def test_eval_says_when_the_source_is_longer_and_names_the_clip_preset(tmp_path, capsys, monkeypatch):
    """A longer source is compared on its first frames, and the command says so; offline without CLIP
    weights, the reason names the preset the README tells users to download."""
    from videdit.cli import main
    from videdit.video import write_video

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty hub cache
    frames = np.random.default_rng(0).integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)
    write_video(tmp_path / "src.mp4", frames, 8)
    write_video(tmp_path / "edit.mp4", frames[:4], 8)
    assert main(["eval", str(tmp_path / "edit.mp4"), "--source", str(tmp_path / "src.mp4"), "--prompt", "a cat"]) == 0
    captured = capsys.readouterr()
    assert "the source has 6 frames and the edited video 4: the source's first 4 are compared" in captured.err
    assert "clip-l14" in captured.out and "videdit download clip-l14" in captured.out
    result = evaluate_video(frames[:4], source=frames[:4], clip_model=None, mawe_size=None)
    assert result["notes"] == []

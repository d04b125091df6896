"""End to end: `videdit edit` with the tiny model, through the real loader, CLI and writers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from videdit.cli import main
from videdit.errors import UserError
from videdit.video import read_clip

FAST = ["--steps", "6", "--size", "128", "--no-progress"]


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_edit_fox_keeps_frames_fps_size_and_writes_run_folder(tiny_sd, videos, tmp_path, capsys):
    src = videos / "fox.mp4"
    out = tmp_path / "out.mp4"
    code, stdout, err = run_cli(["edit", src, "--model", tiny_sd, "--prompt", "a cat", "-o", out, *FAST], capsys)
    assert code == 0, err
    a, b = read_clip(src), read_clip(out)
    assert len(b.frames) == len(a.frames)
    assert b.size == a.size
    assert b.fps == pytest.approx(a.fps, rel=1e-6)
    run = tmp_path / "out_run"
    for name in ("source.mp4", "edited.mp4", "reconstruction.mp4", "side_by_side.mp4", "side_by_side.gif",
                 "config.yaml", "run.log"):
        assert (run / name).is_file(), name
    assert read_clip(run / "source.mp4").size == (128, 128)
    assert "a cat" in (run / "config.yaml").read_text()
    assert not list(tmp_path.glob("*.tmp*")), "temporary files left behind"


def test_seed_document_entry_point(tiny_sd, videos, tmp_path):
    out = tmp_path / "seed.mp4"
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "edit_video.py"), "--input", str(videos / "fox.mp4"),
                           "--prompt", "a cat", "--output", str(out), "--model", str(tiny_sd), "--strength", "0.5",
                           *FAST], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert len(read_clip(out).frames) == len(read_clip(videos / "fox.mp4").frames)


def _frames(seed=0, t=4, size=64):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    return np.stack([np.roll(base, 2 * i, axis=1) for i in range(t)])


def test_same_seed_gives_identical_frames(tiny_sd):
    import videdit

    opts = dict(model=tiny_sd, steps=5, size=64, progress=False, no_cache=True, reconstruction=False, seed=3)
    r1 = videdit.edit(_frames(), "a red car", **opts)
    r2 = videdit.edit(_frames(), "a red car", **opts)
    assert r1.frames.tobytes() == r2.frames.tobytes()
    r3 = videdit.edit(_frames(), "a blue car", **opts)
    assert r3.frames.tobytes() != r1.frames.tobytes()


def test_strength_zero_returns_source_through_vae(tiny_sd):
    import videdit
    from videdit.diffusion import vae_decode, vae_encode
    from videdit.models import load_sd

    model = load_sd(str(tiny_sd))
    frames = _frames(size=64)
    res = videdit.edit(frames, "a cat", model=model, strength=0.0, steps=5, size=64, progress=False, no_cache=True,
                       reconstruction=False)
    expected = vae_decode(model, vae_encode(model, frames))
    assert res.info["start_step"] == 0
    assert np.array_equal(res.frames, expected)


def test_invert_injects_the_sources_features_in_the_first_steps(tiny_sd):
    import videdit

    opts = dict(model=tiny_sd, steps=4, size=64, progress=False, reconstruction=False, seed=3)
    plain = videdit.edit(_frames(), "a blue car", source_prompt="a red car", **opts)
    injected = videdit.edit(_frames(), "a blue car", source_prompt="a red car", inject_steps=2, **opts)
    info = injected.info
    # the tiny UNet has 3 named ResNet blocks and 1 self-attention layer (q and k) under the named blocks:
    # 5 features at each of the 2 first editing timesteps, each replacing the edit's own exactly once
    assert len(info["injected_layers"]["resnets"]) == 3 and len(info["injected_layers"]["attentions"]) == 1
    assert info["injected_features"] == 2 * 5 and info["injected_replacements"] == 2 * 5
    assert not info["inversion_cached"]  # the features come from a fresh inversion
    assert not np.array_equal(plain.frames, injected.frames)
    with pytest.raises(UserError, match="inject-steps"):
        videdit.edit(_frames(), "a blue car", inject_steps=-1, **opts)


def test_second_edit_of_same_clip_reuses_inversion(tiny_sd, caplog):
    import logging

    import videdit

    opts = dict(model=tiny_sd, steps=8, size=64, progress=False, reconstruction=False)
    with caplog.at_level(logging.INFO, logger="videdit"):
        first = videdit.edit(_frames(), "a cat", **opts)
        second = videdit.edit(_frames(), "a dog", **opts)
        third = videdit.edit(_frames(), "a dog", **opts, no_cache=True)
    assert first.info["inversion_cached"] is False
    assert second.info["inversion_cached"] is True
    assert third.info["inversion_cached"] is False
    assert "loaded from cache" in caplog.text
    # The cached trajectory is the computed one: same prompt, same frames out.
    assert np.array_equal(second.frames, third.frames)
    # Another source prompt is another inversion.
    fourth = videdit.edit(_frames(), "a dog", source_prompt="a car", **opts)
    assert fourth.info["inversion_cached"] is False


def test_api_writes_output_and_reuses_loaded_model(tiny_sd, tmp_path):
    import videdit
    from videdit.models import load_sd

    model = load_sd(str(tiny_sd))
    out = tmp_path / "clip.gif"
    res = videdit.edit(_frames(t=3), "a cat", model=model, output=out, steps=3, size=64, progress=False)
    assert out.is_file() and res.run_folder == tmp_path / "clip_run"
    assert len(read_clip(out).frames) == 3


def test_sparse_frame_attention_and_canny_control_run(tiny_sd):
    import videdit

    opts = dict(model=tiny_sd, steps=4, size=64, progress=False, no_cache=True, reconstruction=False)
    full = videdit.edit(_frames(t=5), "a cat", **opts)
    sparse = videdit.edit(_frames(t=5), "a cat", frame_attention="sparse", **opts)
    canny = videdit.edit(_frames(t=5), "a cat", control="canny", **opts)
    assert full.frames.shape == sparse.frames.shape == canny.frames.shape
    assert not np.array_equal(full.frames, sparse.frames)
    assert not np.array_equal(full.frames, canny.frames)
    assert "control" in canny.extras and canny.extras["control"].shape[0] == 5


def test_yaml_config_and_cli_precedence(tiny_sd, tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"model: {tiny_sd}\nprompt: a cat\nsteps: 3\nsize: 64\nstrength: 0.5\nprogress: false\n")
    out = tmp_path / "o.mp4"
    code, _, err = run_cli(["edit", _write_clip(tmp_path), "--config", cfg, "--steps", "4", "-o", out], capsys)
    assert code == 0, err
    text = (tmp_path / "o_run" / "config.yaml").read_text()
    assert "steps: 4" in text and "strength: 0.5" in text


def _write_clip(tmp_path) -> Path:
    from videdit.video import write_video

    path = tmp_path / "clip.mp4"
    if not path.exists():
        write_video(path, _frames(t=4, size=64), 8)
    return path


def test_edit_with_eval_writes_metrics_into_run_folder(tiny_sd, tmp_path, capsys):
    import json

    from videdit.tiny_clip import make_tiny_clip

    clip_dir = make_tiny_clip(tmp_path / "clip")
    out = tmp_path / "e.mp4"
    code, _, err = run_cli(["edit", _write_clip(tmp_path), "--model", tiny_sd, "--prompt", "a cat", "-o", out,
                            "--steps", "3", "--size", "64", "--no-progress", "--eval", "--clip-model", clip_dir], capsys)
    assert code == 0, err
    data = json.loads((tmp_path / "e_run" / "eval.json").read_text())
    assert data["metrics"]["warp_error"]["value"] >= 0
    assert data["metrics"]["clip_t"]["value"] is not None
    assert "warp" in (tmp_path / "e_run" / "eval.txt").read_text().lower()


def test_eval_command_orders_clean_and_flickered(videos, tmp_path, capsys):
    import json

    from videdit.video import read_clip, write_video

    clip = read_clip(videos / "wolf.mp4", frames=8)
    gains = np.array([1.0, 0.8, 1.2, 0.85, 1.15, 0.8, 1.2, 0.9])[:, None, None, None]
    flicker = np.clip(clip.frames.astype(np.float32) * gains, 0, 255).astype(np.uint8)
    path = tmp_path / "flicker.mp4"
    write_video(path, flicker, clip.fps)
    results = {}
    for name, edited in (("clean", videos / "wolf.mp4"), ("flicker", path)):
        code, out, err = run_cli(["eval", edited, "--source", videos / "wolf.mp4", "--frames", "8", "--size", "128",
                                  "--clip-model", "none", "--json"], capsys)
        assert code == 0, err
        results[name] = json.loads(out)["metrics"]
    assert results["clean"]["warp_error"]["value"] < results["flicker"]["warp_error"]["value"]
    assert results["clean"]["ssim"]["value"] > results["flicker"]["ssim"]["value"]


def test_two_cli_runs_give_byte_identical_decoded_frames(tiny_sd, tmp_path, capsys):
    outs = []
    for name in ("first.mp4", "second.mp4"):
        out = tmp_path / name
        code, _, err = run_cli(["edit", _write_clip(tmp_path), "--model", tiny_sd, "--prompt", "a cat", "-o", out,
                                "--steps", "4", "--size", "64", "--seed", "5", "--no-progress", "--no-cache"], capsys)
        assert code == 0, err
        outs.append(read_clip(out).frames)
    assert outs[0].tobytes() == outs[1].tobytes()


def test_output_in_a_new_folder_is_created(tiny_sd, tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "o.mp4"
    code, _, err = run_cli(["edit", _write_clip(tmp_path), "--model", tiny_sd, "--prompt", "a cat", "-o", out,
                            "--steps", "2", "--size", "64", "--no-progress"], capsys)
    assert code == 0, err
    assert out.is_file() and (out.parent / "o_run" / "edited.mp4").is_file()

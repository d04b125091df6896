"""Bad input: one line on stderr, exit status 2, no output file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from videdit.cli import main


def _clip(tmp_path: Path) -> Path:
    from videdit.video import write_video

    path = tmp_path / "in.mp4"
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    write_video(path, rng.integers(0, 255, (3, 64, 64, 3), dtype=np.uint8), 8)
    return path


def _empty_video(tmp_path: Path) -> Path:
    """A valid container with a video stream but no frames (mp4 drops empty tracks; avi keeps them)."""
    import av

    path = tmp_path / "empty.avi"
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=8)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        c.start_encoding()
    assert path.stat().st_size > 0
    return path


def _model_without(tiny_sd: Path, tmp_path: Path, component: str) -> Path:
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_sd, broken)
    shutil.rmtree(broken / component)
    return broken


def _pickle_only_model(tiny_sd: Path, tmp_path: Path) -> Path:
    import torch
    from safetensors.torch import load_file

    model = tmp_path / "pickle-model"
    shutil.copytree(tiny_sd, model)
    st = model / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(str(st)), model / "unet" / "diffusion_pytorch_model.bin")
    st.unlink()
    return model


CASES = {
    "missing input": lambda t, m: (["edit", t / "nope.mp4", "--model", m, "--prompt", "a cat"], "not found"),
    "random bytes named .mp4": lambda t, m: (["edit", _random_bytes(t), "--model", m, "--prompt", "a cat"], "video"),
    "video with no frames": lambda t, m: (["edit", _empty_video(t), "--model", m, "--prompt", "a cat"], "frames"),
    "strength 2": lambda t, m: (["edit", _clip(t), "--model", m, "--prompt", "a cat", "--strength", "2"], "strength"),
    "empty prompt": lambda t, m: (["edit", _clip(t), "--model", m, "--prompt", "  "], "prompt"),
    "no prompt": lambda t, m: (["edit", _clip(t), "--model", m], "prompt"),
    "unknown model": lambda t, m: (["edit", _clip(t), "--model", "sd99", "--prompt", "a cat"], "sd99"),
    "absolute model folder that is not there": lambda t, m: (
        ["edit", _clip(t), "--model", "/nonexistent", "--prompt", "a cat"], "model folder not found: /nonexistent"),
    "model folder missing a component": lambda t, m: (
        ["edit", _clip(t), "--model", _model_without(m, t, "vae"), "--prompt", "a cat"], "vae"),
    "pickle-only weights": lambda t, m: (
        ["edit", _clip(t), "--model", _pickle_only_model(m, t), "--prompt", "a cat"], "--allow-pickle"),
    "hub model not downloaded, offline": lambda t, m: (
        ["edit", _clip(t), "--model", "sd15", "--prompt", "a cat"], "videdit download sd15"),
    "attention chunk 0": lambda t, m: (["edit", _clip(t), "--model", m, "--prompt", "a cat", "--attention-chunk", "0"],
                                       "attention-chunk"),
    "bad yaml config": lambda t, m: (["edit", _clip(t), "--config", _bad_yaml(t), "--prompt", "a cat"], "YAML"),
    "unknown control": lambda t, m: (["edit", _clip(t), "--model", m, "--prompt", "a cat", "--control", "openpose"],
                                     "openpose"),
}


def _random_bytes(tmp_path: Path) -> Path:
    p = tmp_path / "noise.mp4"
    p.write_bytes(np.random.default_rng(0).integers(0, 255, 5000, dtype=np.uint8).tobytes())
    return p


def _bad_yaml(tmp_path: Path) -> Path:
    p = tmp_path / "bad.yaml"
    p.write_text("steps: [1, 2\n")
    return p


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_exits_2_with_one_line_and_no_output(case, tiny_sd, tmp_path, capsys):
    args, needle = CASES[case](tmp_path, tiny_sd)
    out = tmp_path / "out" / "edited.mp4"
    out.parent.mkdir()
    code = main([str(a) for a in args] + ["-o", str(out), "--steps", "2", "--size", "64", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("videdit: error:")
    assert needle.lower() in lines[0].lower()
    assert list(out.parent.iterdir()) == [], "no output (and no temporary files) may be left"


def test_existing_output_is_not_overwritten_without_flag(tiny_sd, tmp_path, capsys):
    out = tmp_path / "edited.mp4"
    out.write_bytes(b"precious")
    code = main(["edit", str(_clip(tmp_path)), "--model", str(tiny_sd), "--prompt", "a cat", "-o", str(out),
                 "--steps", "2", "--size", "64", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == b"precious"
    code = main(["edit", str(_clip(tmp_path)), "--model", str(tiny_sd), "--prompt", "a cat", "-o", str(out),
                 "--steps", "2", "--size", "64", "--no-progress", "--overwrite"])
    assert code == 0
    assert out.read_bytes() != b"precious"


def test_unwritable_output_directory(tiny_sd, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    out = blocker / "sub" / "edited.mp4"
    code = main(["edit", str(_clip(tmp_path)), "--model", str(tiny_sd), "--prompt", "a cat", "-o", str(out),
                 "--steps", "2", "--size", "64", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_pickle_weights_load_with_flag(tiny_sd, tmp_path, capsys):
    model = _pickle_only_model(tiny_sd, tmp_path)
    out = tmp_path / "ok.mp4"
    code = main(["edit", str(_clip(tmp_path)), "--model", str(model), "--prompt", "a cat", "-o", str(out),
                 "--steps", "2", "--size", "64", "--no-progress", "--allow-pickle"])
    assert code == 0, capsys.readouterr().err
    assert out.is_file()


@pytest.mark.parametrize("args,needle", [
    (["download", "sd15"], "stable-diffusion-v1-5"),
    (["tiny-model", "sdxl", "DIR"], "sdxl"),
])
def test_other_commands_fail_cleanly(args, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err


def test_unavailable_device_is_a_clear_error(tiny_sd, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    out = tmp_path / "o.mp4"
    code = main(["edit", str(_clip(tmp_path)), "--model", str(tiny_sd), "--prompt", "a cat", "-o", str(out),
                 "--device", "cuda", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "CUDA" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()

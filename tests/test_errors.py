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
    "image whose header claims a huge size": lambda t, m: (
        ["edit", _bomb_png(t), "--model", m, "--prompt", "a cat"], "pixels"),
    "mask whose header claims a huge size": lambda t, m: (
        ["edit", _clip(t), "--model", m, "--prompt", "a cat", "--method", "grain", "--region",
         f"c={_bomb_png(t)}:cat"], "pixels"),
    "size 100000": lambda t, m: (["edit", _clip(t), "--model", m, "--prompt", "a cat", "--size", "100000"],
                                 "--size must be in [64, 4096]"),
    "seed beyond 64 bits": lambda t, m: (["edit", _clip(t), "--model", m, "--prompt", "a cat", "--seed", str(2**70)],
                                         "--seed must be in"),
    "guidance nan": lambda t, m: (["edit", _clip(t), "--model", m, "--prompt", "a cat", "--guidance", "nan"],
                                  "--guidance must be a finite number"),
    "strength inf": lambda t, m: (["edit", _clip(t), "--model", m, "--prompt", "a cat", "--strength", "inf"],
                                  "--strength must be a finite number"),
    "guidance rescale above 1": lambda t, m: (
        ["edit", _clip(t), "--model", m, "--prompt", "a cat", "--guidance-rescale", "2"], "--guidance-rescale"),
    "image guidance -inf": lambda t, m: (
        ["edit", _clip(t), "--model", m, "--prompt", "a cat", "--image-guidance=-inf"], "--image-guidance"),
    "text encoder cut short": lambda t, m: (
        ["edit", _clip(t), "--model", _cut(m, t, "text_encoder/model.safetensors"), "--prompt", "a cat"], "damaged"),
    "unet cut short": lambda t, m: (
        ["edit", _clip(t), "--model", _cut(m, t, "unet/diffusion_pytorch_model.safetensors"), "--prompt", "a cat"],
        "damaged"),
    "instruction editor with the default method": lambda t, m: (
        ["edit", _clip(t), "--model", _tiny(t, "ip2p"), "--prompt", "make it blue"], "use --method anchor"),
    "image-to-video model with invert": lambda t, m: (
        ["edit", _clip(t), "--model", _tiny(t, "i2vgen-xl"), "--prompt", "a cat"], "use --method i2v"),
}


def _bomb_png(tmp_path: Path) -> Path:
    """A small PNG whose header claims 100000 x 100000 pixels (a decompression bomb)."""
    import struct
    import zlib

    from PIL import Image

    path = tmp_path / "bomb.png"
    Image.new("RGB", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", 100_000, 100_000)
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr:ihdr + 17])))
    path.write_bytes(bytes(data))
    return path


def _cut(tiny_sd: Path, tmp_path: Path, weights: str) -> Path:
    """A copy of the model with one weights file cut to half its length."""
    model = tmp_path / "cut-model"
    shutil.copytree(tiny_sd, model)
    f = model / weights
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return model


def _tiny(tmp_path: Path, kind: str) -> Path:
    from videdit.tiny import write_tiny_model

    return write_tiny_model(kind, tmp_path / f"tiny-{kind}")


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
    # the harness's settings first, so that a case's own flags win
    code = main([str(args[0]), "-o", str(out), "--steps", "2", "--size", "64", "--no-progress"]
                + [str(a) for a in args[1:]])
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


def _edit(tiny_sd, tmp_path, out, *extra) -> list[str]:
    return ["edit", str(_clip(tmp_path)), "--model", str(tiny_sd), "--prompt", "a cat", "-o", str(out), "--steps", "2",
            "--size", "64", "--no-progress", *extra]


@pytest.mark.parametrize("where", ["proc", "long name"])
def test_output_that_cannot_be_written_stops_before_the_work(where, tiny_sd, tmp_path, capsys, monkeypatch):
    """The file system says no (a place like /proc; a name whose temporary name is over 255 bytes): one line
    before any model loads, not a traceback after the edit."""
    import videdit.api

    monkeypatch.setattr(videdit.api, "get_model", lambda *a, **k: pytest.fail("the model loaded before the check"))
    out = Path("/proc/videdit-out.mp4") if where == "proc" else tmp_path / ("a" * 245 + ".mp4")
    code = main(_edit(tiny_sd, tmp_path, out))
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert ("refuses new files" if where == "proc" else "too long") in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_unwritable_inversion_cache_is_skipped_with_one_warning(tiny_sd, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("the cache folder cannot be made under a file")
    monkeypatch.setenv("VIDEDIT_CACHE_DIR", str(blocker / "cache"))
    out = tmp_path / "o.mp4"
    assert main(_edit(tiny_sd, tmp_path, out)) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "inversion cache not written" in err[0] and "goes on without it" in err[0], err
    assert out.is_file()


def test_a_normal_run_leaves_only_the_trajectory_in_the_cache(tiny_sd, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VIDEDIT_CACHE_DIR", str(tmp_path / "cache"))
    assert main(_edit(tiny_sd, tmp_path, tmp_path / "o.mp4")) == 0
    files = [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].endswith(".safetensors"), files


@pytest.mark.parametrize("args,needles", [
    (["edit", "in.mp4", "-o", "o.mp4", "--prompt", "x", "--guidance", "abc"], ["--guidance", "invalid float", "'abc'"]),
    (["edit", "in.mp4", "-o", "o.mp4", "--prompt", "x", "--method", "paint"], ["--method", "invert", "grain", "anchor", "i2v"]),
    (["edit", "in.mp4", "-o", "o.mp4", "--prompt", "x", "--promt", "y"], ["unrecognized arguments: --promt"]),
    ([], ["edit", "download", "demo"]),
    (["bench", "shapes", "--steps", "many"], ["--steps", "invalid int"]),
])
def test_argument_errors_are_one_line_naming_the_flag(args, needles, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("videdit: error:"), err
    for needle in needles:
        assert needle in err, (needle, err)


def test_a_path_with_a_newline_is_printed_on_one_line(tiny_sd, tmp_path, capsys):
    code = main(["edit", str(tmp_path / "two\nlines.mp4"), "--model", str(tiny_sd), "--prompt", "a cat",
                 "-o", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "two\\nlines.mp4" in err, err


def test_sigterm_during_the_final_write_leaves_nothing(tiny_sd, tmp_path, capsys, monkeypatch):
    """SIGTERM (as Ctrl-C) in the middle of writing the run folder: exit 143, no output, no hidden .partial."""
    import os
    import signal

    import videdit.video

    real_write = videdit.video.write_video
    calls = []

    def write_then_terminate(path, *a, **k):
        real_write(path, *a, **k)
        calls.append(path)
        if len(calls) == 3:  # the run folder is half written
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(videdit.video, "write_video", write_then_terminate)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    before = signal.getsignal(signal.SIGTERM)
    code = main(_edit(tiny_sd, tmp_path, out_dir / "o.mp4"))
    err = capsys.readouterr().err
    assert code == 143 and "terminated" in err and len(calls) == 3
    assert list(out_dir.iterdir()) == [], "no output and no hidden temporary folder"
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is the command's only


def test_help_names_each_default_once_and_says_prompt_is_required(capsys):
    with pytest.raises(SystemExit):
        main(["edit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    import re

    assert "(default: None)" not in text
    options = re.split(r" (?=--[a-z])", text.split("options:", 1)[1])
    assert len(options) > 40
    assert all(o.count("default") <= 1 for o in options), [o for o in options if o.count("default") > 1]
    assert "--prompt PROMPT (required" in text
    assert "(default: 0.8)" in text  # --strength still shows its default

"""`videdit demo` and `videdit bench shapes` end to end on the tiny model (plumbing; meaning needs the
ShapesWorld models, see tests/test_shapes_models.py)."""

from __future__ import annotations

import json

from videdit.cli import main


def test_demo_writes_folder_and_verdict(tiny_sd, tmp_path, capsys):
    out = tmp_path / "demo_out"
    code = main(["demo", "--model", str(tiny_sd), "--steps", "2", "--frames", "4", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    for name in ("source.mp4", "edited.mp4", "side_by_side.mp4", "side_by_side.gif", "masks.mp4", "verdict.txt"):
        assert (out / name).is_file(), name
    assert "left circle: red ->" in printed and "asked blue" in printed and "PSNR" in printed
    # An existing folder is kept without --overwrite.
    assert main(["demo", "--model", str(tiny_sd), "--steps", "2", "--frames", "4", "--out", str(out)]) == 2


def test_bench_shapes_runs_a_task_and_prints_json(tiny_sd):
    import videdit.bench as bench

    rows = bench.run_suite(["invert", "grain"], sd=str(tiny_sd), steps=2, frames=4,
                           only=["recolour one of two", "change the background"])
    assert [(r["task"], r["method"]) for r in rows] == [
        ("recolour one of two", "invert"), ("recolour one of two", "grain"),
        ("change the background", "invert"), ("change the background", "grain")]
    assert all(0.0 <= r["success"] <= 1.0 and r["s_per_frame"] > 0 for r in rows)
    text = bench.to_json(rows)
    assert json.loads(text)[0]["task"] == "recolour one of two"


def test_demo_with_the_shipped_model_does_what_it_says(tmp_path):
    """The README's main job on the committed shapes-sd (shortened to 8 frames, 20 steps): the left
    circle turns blue, the right one stays red, the sand stays (16 frames, 30 steps: blue in 100% of
    frames, red 100%, 33.1 dB outside the circles)."""
    import pytest

    from videdit.demo import demo_clip, edit_demo
    from videdit.shapes import judge, weights_path

    if not (weights_path("shapes-sd") / "model_index.json").is_file():
        pytest.skip("shapes-sd weights absent")
    clip, target = demo_clip(8)
    edited = edit_demo(clip, target, "grain", "shapes-sd", steps=20, seed=0)
    left = [judge.object_colour(f, m) for f, m in zip(edited, clip.masks[:, 0])]
    right = [judge.object_colour(f, m) for f, m in zip(edited, clip.masks[:, 1])]
    assert left.count("blue") >= 6 and right.count("red") >= 6, (left, right)
    assert judge.psnr_outside(edited, clip.frames, clip.masks.any(1)) >= 28

"""`videdit demo` and `videdit bench shapes` end to end on the tiny model (plumbing; meaning needs the
ShapesWorld models, see tests/test_shapes_models.py)."""

from __future__ import annotations

import json

from videdit.cli import main


def test_demo_writes_folder_and_verdict(tiny_sd, tmp_path, capsys):
    out = tmp_path / "demo_out"
    code = main(["demo", "--model", str(tiny_sd), "--steps", "2", "--frames", "4", "--out", str(out)])
    captured = capsys.readouterr()
    printed = captured.out
    assert code == 0
    # Progress on stderr while it works: what it does, a bar per sampling loop, then the time it took.
    assert f"editing 4 frames with method grain and model {tiny_sd}, 2 steps" in captured.err
    assert "inversion" in captured.err and "editing:" in captured.err and "edited in" in captured.err
    for name in ("source.mp4", "edited.mp4", "side_by_side.mp4", "side_by_side.gif", "masks.mp4", "verdict.txt"):
        assert (out / name).is_file(), name
    assert "left circle: red ->" in printed and "asked blue" in printed and "PSNR" in printed
    # An existing folder is kept without --overwrite.
    assert main(["demo", "--model", str(tiny_sd), "--steps", "2", "--frames", "4", "--out", str(out)]) == 2


def test_bench_shapes_runs_a_task_and_prints_json(tiny_sd, capsys):
    import videdit.bench as bench

    seen = []
    rows = bench.run_suite(["invert", "grain"], sd=str(tiny_sd), steps=2, frames=4,
                           only=["recolour one of two", "change the background"],
                           on_row=lambda row, progress: seen.append((row["method"], progress)))
    assert [(r["task"], r["method"]) for r in rows] == [
        ("recolour one of two", "invert"), ("recolour one of two", "grain"),
        ("change the background", "invert"), ("change the background", "grain")]
    assert all(r["s_per_frame"] > 0 for r in rows)
    # Each row is reported as it ends, with the runs done of all, the time so far and an estimate of the rest.
    assert [(m, p.done, p.total) for m, p in seen] == [("invert", 1, 4), ("grain", 2, 4), ("invert", 3, 4),
                                                        ("grain", 4, 4)]
    assert [p.elapsed_s for _, p in seen] == sorted(p.elapsed_s for _, p in seen)
    assert seen[-1][1].left_s == 0 and seen[0][1].left_s > 0
    text = bench.to_json(rows)
    assert json.loads(text)[0]["task"] == "recolour one of two"
    # The same through the command line, machine-readable.
    assert main(["bench", "shapes", "--sd", str(tiny_sd), "--methods", "invert", "--tasks", "change a shape",
                 "--steps", "2", "--frames", "4", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [(r["task"], r["method"], r["frames"]) for r in printed] == [("change a shape", "invert", 4)]


def test_bench_scores_the_exact_answer_as_success_and_the_source_as_failure():
    """Each task's ground truth (its target scene rendered along the source's motion) succeeds in every
    frame, and the unedited source in none: the suite measures the edit, not the oracle's noise."""
    from dataclasses import replace

    import videdit.bench as bench
    from videdit.shapes import world

    for task in bench.tasks(16):
        clip = world.render_clip(task.spec)
        truth = world.render_clip(replace(task.spec, scene=task.target))
        assert bench.score(task, clip, truth.frames)["success"] == 1.0, task.name
        assert bench.score(task, clip, clip.frames)["success"] == 0.0, task.name


def test_bench_and_demo_reject_unknown_names_with_one_line(tmp_path, capsys):
    assert main(["bench", "shapes", "--methods", "paint"]) == 2
    assert main(["bench", "shapes", "--tasks", "fly away"]) == 2
    err = capsys.readouterr().err
    assert "unknown method 'paint'" in err and "unknown task 'fly away'" in err
    assert "Traceback" not in err
    assert main(["demo", "--frames", "1", "--out", str(tmp_path / "d")]) == 2
    assert "at least 2 frames" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_demo_with_the_instruction_editor(tmp_path, capsys):
    """`--method anchor` runs the instruction editor (shapes-ip2p by default) and says so."""
    import pytest

    from videdit.shapes import weights_path

    if not (weights_path("shapes-ip2p") / "model_index.json").is_file():
        pytest.skip("shapes-ip2p weights absent")
    out = tmp_path / "demo_out"
    assert main(["demo", "--method", "anchor", "--steps", "2", "--frames", "4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "method anchor, model shapes-ip2p: 4 frames" in printed and (out / "side_by_side.gif").is_file()


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


def test_bench_estimates_the_time_left_from_each_methods_seconds_per_frame():
    import videdit.bench as bench

    rows = [dict(method="invert", s_per_frame=1.0), dict(method="grain", s_per_frame=3.0)]
    # invert at 1 s/frame, grain at 3, i2v (not timed yet) at the mean of all rows, 2
    assert bench.estimate_left(rows, [("invert", 16), ("grain", 48), ("i2v", 16)]) == 16 + 144 + 32
    assert bench.estimate_left([], [("invert", 16)]) is None
    assert bench.Progress(3, 25, 125.0, 3000.0).line() == "[3/25] 2m05s elapsed, about 50m00s left"


def test_bench_runs_each_method_under_the_readme_checks_options(monkeypatch):
    """Every method's options in the suite are `videdit.shapes.method_options` (those of the README's
    ShapesWorld checks and of the demo): the suite adds none of its own to what the method is asked."""
    import videdit.api
    import videdit.bench as bench
    from videdit.shapes import method_options, world

    asked = {}

    def fake_edit(frames, prompt, method, **options):
        asked[method] = options
        return type("Result", (), {"frames": frames})()

    monkeypatch.setattr(videdit.api, "edit", fake_edit)
    task = bench.tasks(4)[0]
    clip = world.render_clip(task.spec)
    cfg = dict(steps=12, sd="a loaded model", ip2p="shapes-ip2p", i2v="shapes-i2v")
    for name, runner in bench.RUNNERS.items():
        runner(task, clip, cfg)
    plumbing = {"model", "size", "progress", "reconstruction", "no_cache", "source_prompt", "regions", "steps",
                "inversion_steps", "first_frame_editor", "instruction", "editor_model"}
    for method in ("invert", "grain", "anchor", "i2v"):
        settings = {k: v for k, v in asked[method].items() if k not in plumbing}
        assert settings == method_options(method, 12), method
    assert asked["grain"]["strength"] == 1.0 and asked["invert"]["strength"] == 0.8


def test_bench_table_has_a_legend_for_every_column(tiny_sd, capsys):
    """The table prints a row as each run ends, then a legend that names every column."""
    import videdit.bench as bench

    assert main(["bench", "shapes", "--sd", str(tiny_sd), "--methods", "invert", "--tasks", "change a shape",
                 "--steps", "2", "--frames", "4"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].split()[:3] == ["task", "method", "success"] and lines[2].startswith("change a shape")
    legend = captured.out.split("\n\n", 1)[1]
    for title, _, _ in bench.COLUMNS[2:]:
        assert f"\n{title} " in "\n" + legend, title
    assert "1 run:" in captured.err and "[1/1]" in captured.err and "change a shape: invert done" in captured.err

"""Method atlas: plumbing on real footage with a tiny random model, bad input, and ShapesWorld meaning."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from videdit.errors import UserError
from videdit.methods.atlas import ForegroundVotes, auto_keyframes, crop_box, parse_keyframes
from videdit.shapes import world as W

pytestmark = pytest.mark.usefixtures("one_thread")


def cli(*argv):
    from videdit.cli import main

    return main([str(a) for a in argv])


def test_keyframe_option_parsing():
    assert parse_keyframes("auto") is None
    assert parse_keyframes("20, 40,60") == [20, 40, 60]
    assert parse_keyframes("none") == []
    for bad in ("a,b", "3,3", "-1", ""):
        with pytest.raises(UserError):
            parse_keyframes(bad)


def test_crop_box_is_a_square_around_the_mask():
    alpha = np.zeros((40, 60), np.float32)
    alpha[10:20, 30:36] = 1
    x0, y0, x1, y1 = crop_box(alpha, 0.5, 8)
    assert x1 - x0 == y1 - y0 == 20 and x0 <= 30 and x1 >= 36 and y0 <= 10 and y1 >= 20
    assert crop_box(alpha, 0.0, 100) == (0, 0, 40, 40) or crop_box(alpha, 0.0, 100)[3] == 40


def moving_circle(frames=16, size=64):
    scene = W.Scene((W.Obj("circle", "red", 0.3, 0.5, 0.15),), "grass", 7)
    return W.render_clip(W.ClipSpec(scene, (W.Motion("linear", 0.012, 0.0),), frames, 0.008), size)


def test_auto_keyframes_cover_the_foreground_and_votes_skip_unseen_texels():
    from videdit.atlas import build_layers

    clip = moving_circle(frames=10)
    layers = build_layers(clip.frames, clip.masks[:, 0], use_cache=False)
    keys = auto_keyframes(layers)
    assert keys and len(set(keys)) == len(keys)
    votes = ForegroundVotes(layers)
    green = np.zeros_like(clip.frames[0])
    green[...] = (0, 255, 0)
    votes.add(keys[0], green)
    atlas = votes.atlases()[0]
    voted = votes.weight[0] > 1e-3
    assert voted.any() and (atlas[voted][:, 1] == 255).all() and (atlas[voted][:, 0] == 0).all()
    # texels no keyframe saw take the nearest voted colour, not black
    assert (atlas[..., 1] == 255).all()


@pytest.fixture(scope="module")
def fox_mask(tmp_path_factory, videos):
    """One box mask for every frame of fox.mp4 (any size: it is resized)."""
    path = tmp_path_factory.mktemp("fox") / "box.png"
    mask = np.zeros((512, 512), np.uint8)
    mask[160:400, 120:380] = 255
    Image.fromarray(mask).save(path)
    return path


def test_end_to_end_on_real_footage_with_a_tiny_model(tiny_sd, videos, fox_mask, tmp_path):
    out = tmp_path / "fox-atlas.mp4"
    code = cli("edit", videos / "fox.mp4", "--method", "atlas", "--model", tiny_sd, "--prompt", "a cat",
               "--size", 64, "--steps", 2, "--frames", 6, "--atlas-mask", fox_mask, "--keyframes", "0,5",
               "--control", "canny", "--bg-prompt", "a beach", "--strength", 0.6, "-o", out, "--no-progress")
    assert code == 0
    from videdit.video import read_clip

    assert read_clip(out).frames.shape[0] == 6
    run = tmp_path / "fox-atlas_run"
    for name in ("atlas_bg.png", "atlas_bg_edited.png", "atlas_fg.png", "atlas_fg_edited.png",
                 "keyframe_00000_edited.png", "keyframe_00005_edited.png", "atlas_reconstruction.mp4", "edited.mp4"):
        assert (run / name).is_file(), name
    bg, bg_edited = (np.asarray(Image.open(run / n)) for n in ("atlas_bg.png", "atlas_bg_edited.png"))
    assert bg.shape == bg_edited.shape and not np.array_equal(bg, bg_edited)


def test_bad_input_stops_with_one_line_and_no_output(tiny_sd, videos, fox_mask, tmp_path, capsys):
    base = ("edit", videos / "fox.mp4", "--method", "atlas", "--model", tiny_sd, "--prompt", "a cat", "--size", 64,
            "--steps", 1, "--frames", 4, "--no-progress")
    out = tmp_path / "out.mp4"
    empty = tmp_path / "empty.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(empty)
    few = tmp_path / "few"
    few.mkdir()
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(few / "00000.png")
    wrong = tmp_path / "wrong.png"
    Image.fromarray(np.zeros((9, 7, 3), np.uint8)).save(wrong)
    cases = [("--atlas-mask", fox_mask, "--keyframes", "0,9"),          # a keyframe outside the clip
             ("--atlas-mask", few),                                        # masks for 1 of 4 frames
             ("--atlas-mask", empty),                                      # no foreground found
             ("--atlas-mask", fox_mask, "--bg-atlas", wrong)]              # an atlas image of the wrong size
    for extra in cases:
        assert cli(*base, *extra, "-o", out) == 2
        assert not out.exists() and not (tmp_path / "out_run").exists()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("videdit: error:")]
    assert len(lines) == 4
    assert "outside the clip" in lines[0] and "no mask for frame 1" in lines[1]
    assert "no foreground found" in lines[2] and "7x9" in lines[3]


def test_shapes_object_and_background_edits():
    """shapes-ip2p edits the keyframes ("make the circle blue") and, through the ip2p image editor,
    the background atlas ("put it on sand"); the oracle reads every frame."""
    import videdit
    from videdit.shapes import judge as oracle

    clip = moving_circle(frames=12)
    masks = clip.masks[:, 0]
    common = dict(method="atlas", model="shapes-ip2p", size=64, steps=10, guidance=3.0, image_guidance=1.5,
                  strength=1.0, keyframes="0,11", progress=False, device="cpu", reconstruction=False)
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        for t, m in enumerate(masks):
            Image.fromarray(m.astype(np.uint8) * 255).save(f"{folder}/{t:05d}.png")
        obj = videdit.edit(clip.frames, prompt="make the circle blue", atlas_mask=folder, **common)
        bg = videdit.edit(clip.frames, prompt="put it on sand", atlas_mask=folder, bg_prompt="put it on sand",
                          **dict(common, keyframes="none"))
        by_editor = videdit.edit(clip.frames, prompt="put it on sand", atlas_mask=folder, bg_prompt="put it on sand",
                                 bg_editor="ip2p", editor_model="shapes-ip2p", **dict(common, keyframes="none"))
    blue = np.mean([oracle.object_colour(f, m) == "blue" for f, m in zip(obj.frames, masks)])
    assert blue >= 0.9
    for result in (bg, by_editor):
        sand = np.mean([oracle.background_class(f, m) == "sand" for f, m in zip(result.frames, masks)])
        red = np.mean([oracle.object_colour(f, m) == "red" for f, m in zip(result.frames, masks)])
        assert sand >= 0.9 and red >= 0.9

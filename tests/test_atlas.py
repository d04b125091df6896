"""Layered atlases without training: the render formula, the mosaic backend, caching, files."""

from __future__ import annotations

import numpy as np
import pytest

from videdit.atlas import Layer, Layers, build_layers, load_layers, render, write_layers
from videdit.atlas.layers import render_frame, uv_from_homographies
from videdit.atlas.mosaic import keyframes, nearest
from videdit.errors import UserError
from videdit.shapes import world as W


def bilinear(atlas: np.ndarray, x: float, y: float) -> np.ndarray:
    """The atlas at (x, y) by the textbook formula, border texels repeated beyond the edge."""
    h, w = atlas.shape[:2]
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    fx, fy = x - x0, y - y0

    def at(i, j):
        return atlas[min(max(j, 0), h - 1), min(max(i, 0), w - 1)].astype(np.float64)

    return ((1 - fx) * (1 - fy) * at(x0, y0) + fx * (1 - fy) * at(x0 + 1, y0)
            + (1 - fx) * fy * at(x0, y0 + 1) + fx * fy * at(x0 + 1, y0 + 1))


def test_render_matches_a_dense_reference():
    rng = np.random.default_rng(0)
    T, H, Wd = 2, 5, 6
    bg_atlas = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    fg_atlas = rng.integers(0, 256, (7, 8, 3), dtype=np.uint8)
    fg2_atlas = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    uv_bg = rng.uniform(-1, 11, (T, H, Wd, 2)).astype(np.float32)
    uv_fg = rng.uniform(0, 7, (T, H, Wd, 2)).astype(np.float32)
    uv_fg2 = rng.uniform(0, 4, (T, H, Wd, 2)).astype(np.float32)
    alpha, alpha2 = rng.uniform(0, 1, (2, T, H, Wd)).astype(np.float32)
    seen = np.ones((9, 11), bool)
    layers = Layers(Layer("bg", bg_atlas, seen, uv_bg),
                    [Layer("fg", fg_atlas, seen[:7, :8], uv_fg, alpha), Layer("fg2", fg2_atlas, seen[:4, :5], uv_fg2, alpha2)],
                    8.0, "test")
    source = rng.integers(0, 256, (T, H, Wd, 3), dtype=np.uint8)
    out = render(layers, source=source)
    for t in range(T):
        for y in range(H):
            for x in range(Wd):
                u, v = uv_bg[t, y, x]
                gone = u < -0.5 or v < -0.5 or u > 11 - 0.5 or v > 9 - 0.5
                bg = source[t, y, x].astype(np.float64) if gone else bilinear(bg_atlas, u, v)
                one = alpha[t, y, x] * bilinear(fg_atlas, *uv_fg[t, y, x]) + (1 - alpha[t, y, x]) * bg
                two = alpha2[t, y, x] * bilinear(fg2_atlas, *uv_fg2[t, y, x]) + (1 - alpha2[t, y, x]) * one
                assert np.abs(out[t, y, x].astype(np.float64) - two).max() <= 1.0, (t, y, x)


def test_uv_from_homographies_maps_pixels():
    H = np.array([[[1.0, 0, 3], [0, 1, -2], [0, 0, 1]], [[2.0, 0, 0], [0, 2, 0], [0, 0, 2]]])
    uv = uv_from_homographies(H, 3, 4)
    assert np.allclose(uv[0, 2, 1], [1 + 3, 2 - 2])
    assert np.allclose(uv[1, 2, 3], [3, 2])


def test_keyframes_cover_the_clip():
    assert keyframes(24, 8) == [0, 8, 16, 23]
    assert keyframes(17, 8) == [0, 8, 16]
    assert nearest([0, 8, 16], 5) == 8 and nearest([0, 8, 16], 4) == 0


def pan_clip(size=96, frames=12, seed=3):
    """A ShapesWorld clip with a camera pan, a moving and a still object."""
    scene = W.Scene((W.Obj("circle", "red", 0.3, 0.4, 0.14), W.Obj("square", "blue", 0.7, 0.65, 0.12)), "grass", seed)
    spec = W.ClipSpec(scene, (W.Motion("linear", 0.02, 0.01), W.Motion("still")), frames, 0.012)
    return W.render_clip(spec, size)


def psnr_outside_edges(a: np.ndarray, b: np.ndarray, masks: np.ndarray, band: int = 2) -> float:
    import cv2

    k = np.ones((2 * band + 1, 2 * band + 1), np.uint8)
    edges = np.stack([(cv2.dilate(m.astype(np.uint8), k) - cv2.erode(m.astype(np.uint8), k)) > 0 for m in masks])
    err = ((a.astype(np.float64) - b.astype(np.float64)) ** 2)[~edges].mean()
    return 10 * np.log10(255.0**2 / max(err, 1e-10))


def test_mosaic_reconstructs_a_panning_clip():
    clip = pan_clip()
    layers = build_layers(clip.frames, clip.masks.transpose(1, 0, 2, 3), use_cache=False)
    assert len(layers.foregrounds) == 2
    out = render(layers)
    assert psnr_outside_edges(out, clip.frames, clip.masks.any(1)) >= 30
    # the panorama is wider than a frame by the pan (12 frames x 0.012 widths at 96 px: ~13 px)
    assert layers.background.atlas.shape[1] >= 96 + 11
    # a foreground edit shows in every frame where the object is, and nowhere else
    red = layers.foregrounds[0].atlas.copy()
    red[..., :] = (0, 255, 0)
    edited = render(layers, fg_atlases=[red, None])
    inner = clip.masks[:, 0] & (layers.foregrounds[0].alpha > 0.99)
    assert (edited[inner][:, 1] > 200).all()
    far = ~clip.masks.any(1)
    far &= np.stack([np.ones_like(f, bool) for f in far])
    import cv2

    far = np.stack([cv2.erode(f.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0 for f in far])
    assert np.abs(edited[far].astype(int) - out[far].astype(int)).max() == 0


def test_motion_alpha_finds_the_moving_object():
    clip = pan_clip(frames=10)
    layers = build_layers(clip.frames, None, use_cache=False)
    assert layers.info["alpha_from"] == "motion"
    alpha = layers.foregrounds[0].alpha > 0.5
    mover = clip.masks[:, 0]
    iou = (alpha & mover).sum() / (alpha | mover).sum()
    assert iou > 0.6
    assert (alpha & clip.masks[:, 1]).sum() < 0.1 * clip.masks[:, 1].sum()  # the still square is background


def test_no_foreground_is_one_line_error():
    scene = W.Scene((), "sand", 1)
    clip = W.render_clip(W.ClipSpec(scene, (), 6, 0.01), 64)
    with pytest.raises(UserError, match="no foreground found"):
        build_layers(clip.frames, None, use_cache=False)
    with pytest.raises(UserError, match="no foreground found"):
        build_layers(clip.frames, np.zeros(clip.frames.shape[:3], bool), use_cache=False)
    with pytest.raises(UserError, match="masks of"):
        build_layers(clip.frames, np.zeros((5, 64, 64), bool), use_cache=False)


def test_cache_and_files_round_trip(tmp_path):
    clip = pan_clip(size=64, frames=8)
    masks = clip.masks.any(1)
    first = build_layers(clip.frames, masks)
    again = build_layers(clip.frames, masks)
    assert not first.info["from_cache"] and again.info["from_cache"]
    assert np.array_equal(render(first), render(again))
    write_layers(first, tmp_path / "atlas", clip.frames)
    for name in ("atlas_bg.png", "atlas_fg.png", "atlas_fg_alpha.png", "atlas_reconstruction.mp4", "maps.npz"):
        assert (tmp_path / "atlas" / name).is_file()
    loaded = load_layers(tmp_path / "atlas")
    assert np.array_equal(render(loaded), render(first))
    with pytest.raises(UserError, match="atlas is"):
        render(loaded, bg_atlas=np.zeros((10, 10, 3), np.uint8))


def test_render_keeps_the_source_where_no_layer_covers():
    seen = np.ones((4, 4), bool)
    uv = np.full((1, 2, 2, 2), 100.0, np.float32)  # far outside the 4x4 atlas
    layers = Layers(Layer("bg", np.zeros((4, 4, 3), np.uint8), seen, uv), [], 8.0, "test")
    source = np.full((1, 2, 2, 3), 77, np.uint8)
    assert (render_frame(layers, 0, source=source[0]) == 77).all()


# ---------------------------------------------------------------------------------------
# videdit atlas CLIP -o DIR, videdit atlas render DIR -o out.mp4

def cli(*argv):
    from videdit.cli import main

    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
    """A ShapesWorld clip as a frame folder and its moving object's masks as a numbered folder."""
    from PIL import Image

    root = tmp_path_factory.mktemp("atlas-cli")
    clip = pan_clip(size=64, frames=8)
    for name, arrays in (("frames", clip.frames), ("masks", clip.masks[:, 0].astype(np.uint8) * 255)):
        (root / name).mkdir()
        for t, a in enumerate(arrays):
            Image.fromarray(a).save(root / name / f"{t:05d}.png")
    return root, clip


def test_atlas_command_builds_and_renders_an_edit(clip_files, tmp_path, capsys):
    from PIL import Image

    from videdit.video import read_clip

    root, clip = clip_files
    out = tmp_path / "layers"
    assert cli("atlas", root / "frames", "-o", out, "--size", 64, "--atlas-mask", root / "masks") == 0
    for name in ("atlas_bg.png", "atlas_fg.png", "atlas_fg_alpha.png", "atlas_reconstruction.mp4", "maps.npz"):
        assert (out / name).is_file()
    fg = np.asarray(Image.open(out / "atlas_fg.png")).copy()
    fg[..., :] = (0, 220, 0)
    Image.fromarray(fg).save(tmp_path / "green.png")
    video = tmp_path / "green.mp4"
    assert cli("atlas", "render", out, "--fg", tmp_path / "green.png", "-o", video) == 0
    frames = read_clip(video).frames
    assert frames.shape == clip.frames.shape
    inner = np.stack([__import__("cv2").erode(m.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0 for m in clip.masks[:, 0]])
    assert frames[inner][:, 1].mean() > 180 and frames[inner][:, 0].mean() < 60  # the red circle is green
    assert cli("atlas", "render", out, "--fg", tmp_path / "green.png", "-o", video) == 2  # exists
    assert "already exists" in capsys.readouterr().err


def test_atlas_command_bad_input_is_one_line_and_writes_nothing(clip_files, tmp_path, capsys):
    from PIL import Image

    root, clip = clip_files
    out = tmp_path / "layers"
    few = tmp_path / "few"
    few.mkdir()
    for t in range(5):
        Image.fromarray(clip.masks[t, 0].astype(np.uint8) * 255).save(few / f"{t:05d}.png")
    assert cli("atlas", root / "frames", "-o", out, "--size", 64, "--atlas-mask", few) == 2
    empty = tmp_path / "empty.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(empty)
    assert cli("atlas", root / "frames", "-o", out, "--size", 64, "--atlas-mask", empty) == 2
    assert cli("atlas", root / "frames", "-o", out, "--atlas-backend", "nla", "--atlas-checkpoint", tmp_path) == 2
    assert not out.exists()
    assert cli("atlas", root / "frames", "-o", out, "--size", 64, "--atlas-mask", root / "masks") == 0
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / "small.png")
    assert cli("atlas", "render", out, "--bg", tmp_path / "small.png", "-o", tmp_path / "x.mp4") == 2
    assert not (tmp_path / "x.mp4").exists()
    lines = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(lines) == 4 and all(line.startswith("videdit: error:") for line in lines)
    assert "no mask for frame 5" in lines[0] and "no foreground found" in lines[1]
    assert "not an NLA checkpoint" in lines[2] and "12x10" in lines[3]

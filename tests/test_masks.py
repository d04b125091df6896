"""Region masks: sources, resizing per resolution, region ids, --region parsing, overlays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from videdit.errors import UserError
from videdit.masks import (
    Region,
    clean_mask,
    load_mask_source,
    masks_at_resolution,
    overlay_masks,
    parse_region_arg,
    region_colour,
    region_ids,
    regions_from_config,
    resize_nearest,
)


def box(h: int, w: int, top: int, left: int, size: int) -> np.ndarray:
    """(h, w) bool with a square of side ``size`` at (top, left)."""
    mask = np.zeros((h, w), dtype=bool)
    mask[top:top + size, left:left + size] = True
    return mask


def save_png(path: Path, mask: np.ndarray, value: int = 255) -> Path:
    Image.fromarray(mask.astype(np.uint8) * value).save(path)
    return path


def write_box_folder(folder: Path, numbers: list[int], pad: int = 5, h: int = 16, w: int = 24) -> Path:
    """A mask folder whose frame n holds a 4x4 box at column 2n."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        save_png(folder / f"{n:0{pad}d}.png", box(h, w, 4, 2 * n, 4))
    return folder


# ---------------------------------------------------------------------------------------
# Sources

def test_folder_selects_original_frame_numbers(tmp_path):
    folder = write_box_folder(tmp_path / "m", [0, 1, 2, 4, 6])
    masks = load_mask_source(folder, [0, 2, 6], (24, 16))
    assert masks.shape == (3, 16, 24) and masks.dtype == bool
    for t, n in enumerate([0, 2, 6]):
        assert np.array_equal(masks[t], box(16, 24, 4, 2 * n, 4))


def test_folder_with_a_gap_names_the_missing_frame(tmp_path):
    folder = write_box_folder(tmp_path / "gaps", [0, 1, 2, 4])
    assert load_mask_source(folder, [0, 4], (24, 16)).shape == (2, 16, 24)
    with pytest.raises(UserError, match=r"mask folder .*gaps has no mask for frame 3$"):
        load_mask_source(folder, [0, 2, 3], (24, 16))
    with pytest.raises(UserError, match=r"no mask for frame 5 \(and 2 more\)"):
        load_mask_source(folder, [5, 6, 7], (24, 16))


@pytest.mark.parametrize("names", [["0.png", "1.png", "17.png"], ["frame_000.png", "frame_001.png", "frame_017.png"],
                                   ["00000.png", "00001.png", "00017.png"]])
def test_folder_accepts_any_zero_padding(tmp_path, names):
    for name, left in zip(names, [0, 4, 8]):
        save_png(tmp_path / name, box(8, 16, 0, left, 4))
    (tmp_path / "notes.txt").write_text("not a mask")
    (tmp_path / "preview.png").write_bytes(b"ignored: no frame number")
    masks = load_mask_source(tmp_path, [17, 0], (16, 8))
    assert np.array_equal(masks[0], box(8, 16, 0, 8, 4))
    assert np.array_equal(masks[1], box(8, 16, 0, 0, 4))


def test_folder_with_two_files_for_one_frame_is_an_error(tmp_path):
    save_png(tmp_path / "7.png", box(4, 4, 0, 0, 2))
    save_png(tmp_path / "00007.png", box(4, 4, 0, 0, 2))
    with pytest.raises(UserError, match="two masks for frame 7"):
        load_mask_source(tmp_path, [7], (4, 4))


def test_folder_without_numbered_images_is_an_error(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(UserError, match="no numbered images"):
        load_mask_source(tmp_path, [0], (4, 4))


def test_single_image_is_used_for_every_frame_and_resized(tmp_path):
    mask = np.zeros((4, 6), dtype=bool)
    mask[1, 2] = True
    path = save_png(tmp_path / "one.png", mask)
    masks = load_mask_source(path, [3, 9, 40], (12, 8))  # (width, height): 2x in each direction
    assert masks.shape == (3, 8, 12)
    expected = np.zeros((8, 12), dtype=bool)
    expected[2:4, 4:6] = True
    assert all(np.array_equal(m, expected) for m in masks)


def test_nonzero_in_any_channel_is_inside(tmp_path):
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[0, 0, 2] = 1  # faint blue
    rgb[3, 3, 0] = 200
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    masks = load_mask_source(tmp_path / "rgb.png", [0], (4, 4))[0]
    assert masks[0, 0] and masks[3, 3] and masks.sum() == 2


def test_transparent_pixels_are_outside(tmp_path):
    rgba = np.full((2, 2, 4), 255, dtype=np.uint8)
    rgba[0, 0, 3] = 0  # white but transparent
    rgba[1, 1, :3] = 0  # black and opaque
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    masks = load_mask_source(tmp_path / "rgba.png", [0], (2, 2))[0]
    assert masks.tolist() == [[False, True], [True, False]]


def test_palette_index_zero_is_outside(tmp_path):
    image = Image.fromarray(np.array([[0, 1], [2, 0]], dtype=np.uint8), "P")
    image.putpalette([255, 255, 255, 255, 0, 0, 0, 255, 0] + [0] * 759)  # index 0 drawn white
    image.save(tmp_path / "palette.png")
    masks = load_mask_source(tmp_path / "palette.png", [0], (2, 2))[0]
    assert masks.tolist() == [[False, True], [True, False]]


def test_missing_path_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match=r"mask .*nowhere does not exist"):
        load_mask_source(tmp_path / "nowhere", [0], (4, 4))


def test_unreadable_image_is_a_user_error(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(UserError, match=r"cannot read mask image .*broken\.png") as info:
        load_mask_source(tmp_path / "broken.png", [0], (4, 4))
    assert "\n" not in str(info.value)
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "00000.png").write_bytes(b"junk")
    with pytest.raises(UserError, match=r"00000\.png"):
        load_mask_source(folder, [0], (4, 4))


def write_box_video(path: Path, count: int, h: int = 64, w: int = 96, fps: int = 8) -> Path:
    """A video whose frame n shows a white 16x16 box at column 8n on black."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "10"}
        for n in range(count):
            frame = np.repeat(box(h, w, 16, 8 * n, 16)[..., None], 3, axis=-1).astype(np.uint8) * 255
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def test_video_masks_select_frames_and_resize(tmp_path):
    pytest.importorskip("videdit.video")
    path = write_box_video(tmp_path / "masks.mp4", 6)
    masks = load_mask_source(path, [1, 3, 5], (48, 32))  # half size
    assert masks.shape == (3, 32, 48)
    for t, n in enumerate([1, 3, 5]):
        expected = box(32, 48, 8, 4 * n, 8)
        assert (masks[t] != expected).mean() < 0.02, f"frame {n}"
    with pytest.raises(UserError, match=r"mask video .*masks\.mp4 has no frame 10"):
        load_mask_source(path, [0, 10], (48, 32))


def test_unreadable_video_is_a_user_error(tmp_path):
    pytest.importorskip("videdit.video")
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 64)
    with pytest.raises(UserError, match=r"broken\.mp4"):
        load_mask_source(tmp_path / "broken.mp4", [0], (4, 4))


# ---------------------------------------------------------------------------------------
# Resolutions and region ids

def test_resize_nearest_picks_block_centres():
    image = np.arange(64).reshape(8, 8)
    assert resize_nearest(image, 2, 2).tolist() == [[image[2, 2], image[2, 6]], [image[6, 2], image[6, 6]]]
    assert resize_nearest(image, 8, 8) is image
    up = resize_nearest(np.array([[1, 2], [3, 4]]), 4, 4)
    assert up.tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]


def test_masks_at_resolution_bool_float_and_torch():
    masks = np.stack([box(64, 64, 0, 0, 32), box(64, 64, 32, 32, 32)])
    low = masks_at_resolution(masks, (8, 8))
    assert low.dtype == torch.bool and low.shape == (2, 8, 8)
    assert low[0, :4, :4].all() and low[0].sum() == 16 and low[1, 4:, 4:].all() and low[1].sum() == 16
    assert torch.equal(masks_at_resolution(masks.astype(np.float32), (8, 8)), low)
    assert torch.equal(masks_at_resolution(torch.from_numpy(masks), (8, 8)), low)
    soft = masks.astype(np.float32) * 0.4  # floats count as inside above 0.5
    assert not masks_at_resolution(soft, (8, 8)).any()
    assert masks_at_resolution(masks, (16, 32)).shape == (2, 16, 32)


def test_region_ids_first_region_wins_and_minus_one_outside():
    left = np.stack([box(8, 8, 0, 0, 4)] * 2)
    overlap = np.stack([box(8, 8, 2, 2, 4)] * 2)
    ids = region_ids([left, overlap], (4, 4))
    assert ids.dtype == torch.long and ids.shape == (2, 16)
    expected = torch.tensor([[0, 0, -1, -1], [0, 0, 1, -1], [-1, 1, 1, -1], [-1, -1, -1, -1]]).reshape(-1)
    assert torch.equal(ids[0], expected) and torch.equal(ids[1], expected)
    swapped = region_ids([overlap, left], (4, 4)).reshape(2, 4, 4)
    assert swapped[0, 1, 1] == 0  # now the other region is first


def test_region_ids_follow_each_frame():
    masks = np.stack([box(4, 4, 0, 0, 2), box(4, 4, 2, 2, 2)])
    ids = region_ids([masks], (4, 4)).reshape(2, 4, 4)
    assert ids[0, 0, 0] == 0 and ids[0, 3, 3] == -1
    assert ids[1, 0, 0] == -1 and ids[1, 3, 3] == 0


def test_region_ids_reject_different_frame_counts():
    with pytest.raises(ValueError):
        region_ids([np.zeros((2, 4, 4), bool), np.zeros((3, 4, 4), bool)], (2, 2))


# ---------------------------------------------------------------------------------------
# --region and config

@pytest.mark.parametrize(
    "arg, expected",
    [
        ("left_man=masks/left:Spiderman", Region("left_man", "masks/left", "Spiderman")),
        ("right_man=masks/right:Polar Bear", Region("right_man", "masks/right", "Polar Bear")),
        ("ground = masks/ground.png : grass meadow ", Region("ground", "masks/ground.png", "grass meadow")),
        ("shirt=auto:shirt:red shirt", Region("shirt", "auto:shirt", "red shirt")),
        ("title=m/t.mp4:Spiderman: Far From Home", Region("title", "m/t.mp4", "Spiderman: Far From Home")),
        ("car=C:\\masks\\car:a Porsche", Region("car", "C:\\masks\\car", "a Porsche")),
        ("bg=auto:grass:green grass: lush", Region("bg", "auto:grass", "green grass: lush")),
    ],
)
def test_parse_region_arg(arg, expected):
    assert parse_region_arg(arg) == expected


def test_auto_word():
    assert parse_region_arg("shirt=auto:shirt:red shirt").auto_word == "shirt"
    assert parse_region_arg("a=masks/a:x").auto_word is None


@pytest.mark.parametrize(
    "arg, message",
    [
        ("masks/left:Spiderman", "no '='"),
        ("left=masks/left", "no ':'"),
        ("left=masks/left:", "no prompt"),
        ("left=:Spiderman", "no mask"),
        ("=masks/left:Spiderman", "region name"),
        ("left man=masks/left:Spiderman", "region name"),
        ("shirt=auto::red shirt", "auto: without a word"),
        ("shirt=auto:shirt", "no ':'"),
    ],
)
def test_bad_region_args(arg, message):
    with pytest.raises(UserError, match=message) as info:
        parse_region_arg(arg)
    assert "\n" not in str(info.value) and arg in str(info.value)


def test_regions_from_config(tmp_path):
    items = [
        {"name": "left_man", "mask": "masks/left", "prompt": "Spiderman"},
        {"name": "shirt", "mask": "auto:shirt", "prompt": "red shirt"},
        {"name": "abs", "mask": str(tmp_path / "m"), "prompt": "x"},
    ]
    assert regions_from_config(items)[0] == Region("left_man", "masks/left", "Spiderman")
    based = regions_from_config(items, base_dir=tmp_path)
    assert based[0].mask == str(tmp_path / "masks/left")
    assert based[1].mask == "auto:shirt" and based[2].mask == str(tmp_path / "m")


@pytest.mark.parametrize(
    "items, message",
    [
        ({"name": "a"}, "must be a list"),
        (["a=m:p"], "expected a mapping"),
        ([{"name": "a", "mask": "m"}], "missing prompt"),
        ([{"name": "a", "mask": "m", "prompt": "p", "colour": "red"}], "unknown key"),
        ([{"name": "a", "mask": "m", "prompt": "p"}, {"name": "a", "mask": "n", "prompt": "q"}], "given twice"),
    ],
)
def test_bad_region_config(items, message):
    with pytest.raises(UserError, match=message):
        regions_from_config(items)


# ---------------------------------------------------------------------------------------
# Masks from attention maps; overlays

def test_clean_mask_normalises_per_frame_and_removes_specks():
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 0.1, size=(2, 64, 64)).astype(np.float32)
    scores[:, 16:40, 16:40] += 1.0  # the object
    scores[:, 55, 5] += 1.0  # a one-pixel speck
    scores[1] *= 100  # another scale: per-frame normalisation makes it irrelevant
    masks = clean_mask(scores, threshold=0.3)
    assert masks.dtype == bool and masks.shape == (2, 64, 64)
    for m in masks:
        assert m[18:38, 18:38].all()
        assert not m[55, 5]
        assert m.sum() <= 24 * 24


def test_clean_mask_threshold_and_constant_frame():
    ramp = np.tile(np.linspace(0, 1, 10, dtype=np.float32), (10, 1))
    masks = clean_mask(np.stack([ramp, np.full((10, 10), 5.0, np.float32)]), threshold=0.5, kernel=1)
    assert masks[0, :, 5:].all() and not masks[0, :, :5].any()
    assert not masks[1].any()
    assert clean_mask(torch.from_numpy(ramp)[None], threshold=0.5, kernel=1).shape == (1, 10, 10)


def test_overlay_tints_regions_and_leaves_the_rest():
    frames = np.full((2, 40, 60, 3), 100, dtype=np.uint8)
    a = np.stack([box(40, 60, 0, 0, 20)] * 2)
    b = np.stack([box(40, 60, 20, 40, 20)] * 2)
    out = overlay_masks(frames, [a, b[:, ::2, ::2]])  # second mask at half size
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert np.array_equal(out[:, 30, 10], frames[:, 30, 10])
    inner_a, inner_b = out[0, 10, 10].astype(float), out[0, 30, 50].astype(float)
    expected_a = 0.55 * 100 + 0.45 * np.array(region_colour(0))
    assert np.allclose(inner_a, expected_a, atol=1)
    assert not np.allclose(inner_a, inner_b, atol=10)
    assert np.array_equal(overlay_masks(frames, []), frames)


def test_overlay_legend_names_each_region_in_its_colour():
    frames = np.full((2, 128, 160, 3), 100, dtype=np.uint8)
    a = np.stack([box(128, 160, 60, 60, 20)] * 2)
    b = np.stack([box(128, 160, 90, 120, 20)] * 2)
    plain = overlay_masks(frames, [a, b])
    named = overlay_masks(frames, [a, b], names=["car: a red car", "road"])
    assert np.array_equal(named[:, 60:, :], plain[:, 60:, :])  # the legend stays in its corner
    for i in range(2):  # a swatch of each region's colour, one line each
        swatch = named[:, 2 + i * 8:2 + (i + 1) * 8, 4:8].reshape(2, -1, 3)
        assert (np.abs(swatch.astype(int) - region_colour(i)).sum(-1) < 3).any(axis=1).all(), i
    assert (named[:, :20, 20:80] > 200).all(-1).any()  # white text


def test_region_colours_are_distinct():
    colours = [region_colour(i) for i in range(20)]
    assert len(set(colours)) == 20
    assert all(0 <= c <= 255 for colour in colours for c in colour)


def test_no_frames_selected_gives_an_empty_stack(tmp_path):
    path = save_png(tmp_path / "one.png", box(4, 4, 0, 0, 2))
    assert load_mask_source(path, [], (6, 5)).shape == (0, 5, 6)


def test_paste_outside_keeps_the_source_outside_and_fades_the_edit_in_inside_the_edge():
    from videdit.masks import paste_outside

    rng = np.random.default_rng(0)
    edited, source = (rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8) for _ in range(2))
    mask = np.zeros((2, 32, 32), bool)
    mask[:, 8:24, 8:24] = True
    out = paste_outside(edited, source, mask, feather=2)
    assert np.array_equal(out[~mask], source[~mask])  # outside the region: the source exactly
    assert np.array_equal(out[:, 10:22, 10:22], edited[:, 10:22, 10:22])  # 2 px and more inside: the edit
    edge = out[:, 12:20, 8].astype(float)  # on the edge, 1 px from outside: w = 1/2
    assert np.allclose(edge, 0.5 * edited[:, 12:20, 8] + 0.5 * source[:, 12:20, 8], atol=0.51)
    hard = paste_outside(edited, source, mask, feather=0)
    assert np.array_equal(hard[mask], edited[mask]) and np.array_equal(hard[~mask], source[~mask])

"""The ShapesWorld oracle is near perfect on clean renders."""

import numpy as np

from videdit.shapes import judge as J
from videdit.shapes import world as w


def _scenes(n, seed):
    rng = np.random.default_rng(seed)
    return [w.random_scene(rng) for _ in range(n)]


def test_colour_classes_of_named_colours():
    for name, rgb in w.COLOURS.items():
        assert J.colour_class(rgb) == name


def test_with_masks_near_perfect():
    col = shp = bg = n = 0
    scenes = _scenes(30, 11)
    for s in scenes:
        img, masks = w.render(s)
        objs, b = J.judge_frame(img, masks)
        bg += b == s.background
        for v, o, m in zip(objs, s.objects, masks):
            if m.sum() < 0.5 * np.pi * (o.size * 64) ** 2:  # mostly occluded objects are not judged on shape
                continue
            n += 1
            col += v.colour == o.colour
            shp += v.shape == o.shape
    assert col / n >= 0.98 and shp / n >= 0.95 and bg == len(scenes)


def test_locate_by_colour_near_perfect():
    col = shp = n = bg = 0
    scenes = _scenes(30, 12)
    for s in scenes:
        r = J.judge_generated(w.render(s)[0], s)
        n += len(s.objects)
        col += sum(r["colour"])
        shp += sum(r["shape"])
        bg += r["background"]
    assert col / n >= 0.97 and shp / n >= 0.9 and bg == len(scenes)


def test_psnr_outside_ignores_the_region():
    s = w.Scene((w.Obj("circle", "red", 0.5, 0.5, 0.15),), "sand", 2)
    src, masks = w.render(s)
    edited = src.copy()
    edited[masks[0]] = w.COLOURS["blue"]
    assert J.psnr_outside(edited, src, masks[0]) > 60
    assert J.psnr(edited, src) < 25


def test_stability_of_a_clean_panning_clip():
    spec = w.ClipSpec(
        w.Scene((w.Obj("square", "orange", 0.3, 0.4, 0.12),), "grass", 3),
        (w.Motion("linear", 0.02, 0.01),), n_frames=8, pan=0.01,
    )
    clip = w.render_clip(spec)
    st = J.stability(clip.frames, clip.masks, clip.pan_px)
    assert st["object_delta_e"][0] < 1.0
    assert st["background_psnr"] > 35
    flicker = clip.frames.copy()
    flicker[1::2] = np.clip(flicker[1::2].astype(int) + 30, 0, 255)
    assert J.stability(flicker, clip.masks, clip.pan_px)["background_psnr"] < 25


def test_judge_edit_success_and_failure():
    rng = np.random.default_rng(4)
    for kind in ("recolour", "reshape", "background"):
        src, edit, tgt = w.random_triple(rng, kind=kind)
        s_img, masks = w.render(src)
        t_img, _ = w.render(tgt)
        assert J.judge_edit(t_img, s_img, masks, tgt, edit)["success"], (kind, edit)
        assert not J.judge_edit(s_img, s_img, masks, tgt, edit)["success"]


def test_background_edit_keeps_objects_judged_on_their_interiors():
    """The exact target of every background edit passes, although its objects' anti-aliased edges
    blend with the new background; the same target with its objects 20 levels brighter fails on the
    PSNR inside them."""
    rng = np.random.default_rng(9)
    for _ in range(40):
        src, edit, tgt = w.random_triple(rng, kind="background")
        s_img, masks = w.render(src)
        t_img, _ = w.render(tgt)
        verdict = J.judge_edit(t_img, s_img, masks, tgt, edit)
        assert verdict["success"], (edit, verdict)
        brighter = t_img.astype(int)
        brighter[masks.any(0)] += np.where(brighter[masks.any(0)] > 127, -20, 20)
        redrawn = J.judge_edit(brighter.astype(np.uint8), s_img, masks, tgt, edit)
        assert not redrawn["success"] and redrawn["psnr_outside"] < 25, (edit, redrawn)


def test_circles_and_squares_of_every_size_read_right():
    """A digital circle's tightest rectangle can be as full as a square's (extent 0.85 for a blue circle
    of size 0.15 on grass), so circle and square are told apart by how they fill their enclosing circle."""
    for size in np.linspace(0.08, 0.22, 15):
        for cx in np.linspace(0.3, 0.7, 9):
            for shape in ("circle", "square"):
                s = w.Scene((w.Obj(shape, "blue", float(cx), 0.5, float(size)),), "grass", 7)
                img, masks = w.render(s)
                assert J.object_shape(img, masks[0]) == shape, (shape, size, cx)


def test_judge_clip_reports_a_clean_clip_exactly():
    spec = w.ClipSpec(w.Scene((w.Obj("circle", "red", 0.3, 0.5, 0.15), w.Obj("star", "yellow", 0.7, 0.4, 0.16)),
                              "brick", 4),
                      (w.Motion("linear", 0.01, 0.0), w.Motion("bounce", -0.01, 0.01)), n_frames=6, pan=0.01)
    clip = w.render_clip(spec)
    v = J.judge_clip(clip.frames, clip.frames, clip.masks, edited=(0,), pan_px=clip.pan_px)
    assert v.colours == [["red"] * 6, ["yellow"] * 6] and v.shapes == [["circle"] * 6, ["star"] * 6]
    assert v.backgrounds == ["brick"] * 6 and v.majority(1) == ("yellow", "star")
    tie = J.ClipVerdict([["red", "blue"] * 2], [["circle"] * 4], ["sand"] * 4, 0.0, [0.0], 0.0)
    assert tie.majority(0) == ("red", "circle")  # a tie goes to the earliest frame's reading, every run
    assert v.psnr_outside > 60 and max(v.object_delta_e) < 1.0 and v.background_psnr > 30
    # A recoloured circle shows in its colours and only outside-region PSNR stays high.
    edited = clip.frames.copy()
    edited[clip.masks[:, 0]] = w.COLOURS["blue"]
    v = J.judge_clip(edited, clip.frames, clip.masks, edited=(0,))
    assert v.colours[0] == ["blue"] * 6 and v.psnr_outside > 60
    assert J.judge_clip(edited, clip.frames, clip.masks).psnr_outside < 30

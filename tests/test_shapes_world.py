"""ShapesWorld scenes, clips and instruction triples: seeded, consistent ground truth."""

import numpy as np
import pytest

from videdit.shapes import world as w


def test_named_colours_shapes_backgrounds():
    assert set(w.COLOURS) == {"red", "green", "blue", "yellow", "purple", "orange", "white", "black"}
    assert set(w.SHAPES) == {"circle", "square", "triangle", "star"}
    assert len(w.BACKGROUNDS) >= 5


@pytest.mark.parametrize("name", w.BACKGROUNDS)
def test_backgrounds_are_textured_not_flat(name):
    bg = w.render_background(name, 3, 64, 64)
    assert bg.shape == (64, 64, 3)
    assert 2.0 < bg.std(axis=(0, 1)).max() < 40.0  # textured, but low-contrast


def test_same_seed_same_scene_and_pixels():
    a = w.random_scene(np.random.default_rng(5))
    b = w.random_scene(np.random.default_rng(5))
    assert a == b
    np.testing.assert_array_equal(w.render(a)[0], w.render(b)[0])


def test_render_masks_match_objects():
    scene = w.Scene((w.Obj("circle", "red", 0.3, 0.5, 0.15), w.Obj("square", "blue", 0.7, 0.5, 0.15)), "grass", 1)
    img, masks = w.render(scene)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8 and masks.shape == (2, 64, 64)
    assert np.allclose(img[masks[0]].mean(0), w.COLOURS["red"], atol=8)
    assert np.allclose(img[masks[1]].mean(0), w.COLOURS["blue"], atol=8)
    area = masks[0].sum() / (np.pi * (0.15 * 64) ** 2)
    assert 0.9 < area < 1.1


def test_larger_render_is_the_same_picture():
    scene = w.random_scene(np.random.default_rng(2))
    small, _ = w.render(scene, 64)
    big, _ = w.render(scene, 256)
    down = big.reshape(64, 4, 64, 4, 3).mean((1, 3))
    assert np.abs(down - small).mean() < 8


def test_caption_grammar():
    s = w.Scene((w.Obj("square", "blue", 0.7, 0.5, 0.1), w.Obj("circle", "red", 0.2, 0.5, 0.1)), "grass", 0)
    assert w.caption(s) == "a red circle and a blue square on grass"
    s3 = w.Scene(s.objects + (w.Obj("star", "orange", 0.9, 0.2, 0.1),), "sand", 0)
    assert w.caption(s3) == "a red circle, a blue square and an orange star on sand"
    assert set(w.caption(s3).replace(",", "").split()) <= set(w.VOCAB)


def test_clip_ground_truth_motion_and_pan():
    obj = w.Obj("circle", "yellow", 0.3, 0.5, 0.12)
    spec = w.ClipSpec(w.Scene((obj,), "sky", 4), (w.Motion("linear", 0.02, 0.0),), n_frames=8, pan=0.01)
    clip = w.render_clip(spec)
    assert clip.frames.shape == (8, 64, 64, 3) and clip.masks.shape == (8, 1, 64, 64)
    for t in range(8):  # mask centroid follows the ground-truth centroid (object moves 0.02, camera 0.01 per frame)
        ys, xs = np.nonzero(clip.masks[t, 0])
        assert abs(xs.mean() + 0.5 - clip.centroids[t, 0, 0]) < 0.6
    assert np.allclose(np.diff(clip.centroids[:, 0, 0]), 0.01 * 64, atol=1e-6)
    assert np.allclose(np.diff(clip.pan_px), 0.01 * 64)


def test_bounce_stays_inside_and_grow_changes_size():
    o = w.Obj("square", "red", 0.8, 0.5, 0.1)
    xs = [w.state_at(o, w.Motion("bounce", 0.05, 0.0), t).cx for t in range(40)]
    assert min(xs) >= 0.1 - 1e-9 and max(xs) <= 0.9 + 1e-9 and max(xs) - min(xs) > 0.5
    assert w.state_at(o, w.Motion("grow", grow=0.004), 10).size == pytest.approx(0.14)


def test_random_clips_render():
    rng = np.random.default_rng(0)
    for _ in range(3):
        clip = w.render_clip(w.random_clip(rng, n_frames=6))
        assert clip.frames.shape[0] == 6 and clip.masks.shape[1] == len(clip.spec.scene.objects)


def test_random_clip_speed_range_sets_how_far_movers_travel():
    rng = np.random.default_rng(0)
    for speed in (w.SPEED, (0.06, 0.09)):
        moving = [m for _ in range(40) for m in w.random_clip(rng, n_frames=8, speed=speed).motions if m.kind in ("linear", "bounce")]
        assert moving and all(speed[0] <= np.hypot(m.vx, m.vy) <= speed[1] for m in moving)


def test_instruction_triples():
    rng = np.random.default_rng(0)
    kinds = set()
    for _ in range(30):
        src, edit, tgt = w.random_triple(rng)
        kinds.add(edit.kind)
        assert set(edit.instruction.split()) <= set(w.VOCAB)
        if edit.kind == "recolour":
            assert tgt.objects[edit.index].colour == edit.value != src.objects[edit.index].colour
            assert edit.instruction == f"make the {src.objects[edit.index].shape} {edit.value}"
        elif edit.kind == "reshape":
            assert tgt.objects[edit.index].shape == edit.value
            assert edit.instruction.startswith(f"turn the {src.objects[edit.index].shape} into")
        else:
            assert tgt.background == edit.value and edit.instruction == f"put it on {edit.value}"
            assert tgt.objects == src.objects and tgt.bg_seed == src.bg_seed
    assert kinds == {"recolour", "reshape", "background"}


def test_training_frames_have_captions():
    rng = np.random.default_rng(0)
    img, cap = w.random_frame(rng)
    assert img.shape == (64, 64, 3) and " on " in cap


def test_recoloured_twin_changes_only_the_objects_colours():
    """The i2v recolour augmentation: a twin has the clip's motion and background and every object in
    another colour; without the augmentation no twin is drawn (older runs keep their random stream)."""
    import cv2

    from videdit.shapes.train import clip_batch

    clips, _, on_object, twins, swapped, _, _ = clip_batch(np.random.default_rng(3), 4, 4, recolour=1.0)
    assert swapped.all()
    differs = (clips != twins).any(-1)
    near = np.array([[cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0 for m in c] for c in on_object])
    assert differs.any() and not (differs & ~near).any()  # only objects (and their anti-aliased rims) change
    clips0, captions0, _, twins0, swapped0, firsts0, shifted0 = clip_batch(np.random.default_rng(3), 4, 4)
    assert not shifted0.any() and np.array_equal(firsts0, clips0[:, 0])
    assert not swapped0.any() and np.array_equal(clips0, twins0)
    rng = np.random.default_rng(3)
    assert captions0 == [w.random_clip(rng, n_frames=4, speed=(0.02, 0.09)).scene.caption for _ in range(4)]


def test_warm_cool_twins_cross_the_colour_divide():
    """--twin-colours warm-cool: every warm object's twin is cool and every other object's twin is warm, with the
    shape, place and motion kept; the default palette still reaches every other colour."""
    from videdit.shapes.train import COOL, WARM, recoloured

    from dataclasses import replace

    rng = np.random.default_rng(0)
    specs = [w.random_clip(rng, n_frames=2) for _ in range(60)]
    twins = [recoloured(rng, s, "warm-cool") for s in specs]
    for s, tw in zip(specs, twins):  # with the source colours put back, the twin is the clip itself
        back = tuple(replace(t, colour=o.colour) for o, t in zip(s.scene.objects, tw.scene.objects))
        assert replace(tw, scene=replace(tw.scene, objects=back)) == s
    pairs = [(o, t) for s, tw in zip(specs, twins) for o, t in zip(s.scene.objects, tw.scene.objects)]
    assert {o.colour for o, _ in pairs} == set(w.COLOURS)  # every source colour was tried
    for o, t in pairs:
        assert (t.colour in COOL) if o.colour in WARM else (t.colour in WARM)
    anywhere = {t.colour for s in specs for t in recoloured(rng, s).scene.objects}
    assert anywhere - set(WARM) - set(COOL)  # "any" also gives black, which warm-cool never does
    assert "black" not in {t.colour for _, t in pairs}


def test_displaced_first_frame_keeps_the_objects_looks_and_moves_them():
    """--shift-first: a displaced first frame has the clip's background and objects (same shapes, colours and
    sizes, inside the frame) at other places within I2V_SHIFT frame widths; the clip itself is unchanged."""
    from videdit.shapes.train import I2V_SHIFT, clip_batch, displaced

    b = clip_batch(np.random.default_rng(5), 6, 4, shift_first=1.0)
    assert b.shifted.all() and not np.array_equal(b.firsts, b.frames[:, 0])
    plain = clip_batch(np.random.default_rng(5), 6, 4)
    assert np.array_equal(plain.frames, b.frames)  # the shift draws after the clips: the same clips
    spec = w.random_clip(np.random.default_rng(9), n_frames=4, n_objects=3)
    moved = displaced(np.random.default_rng(1), spec)
    for o, m in zip(spec.scene.objects, moved.scene.objects):
        assert (o.shape, o.colour, o.size) == (m.shape, m.colour, m.size) and (o.cx, o.cy) != (m.cx, m.cy)
        assert abs(m.cx - o.cx) <= I2V_SHIFT + 1e-9 and abs(m.cy - o.cy) <= I2V_SHIFT + 1e-9
        assert o.size <= m.cx <= 1 - o.size and o.size <= m.cy <= 1 - o.size
    assert (moved.scene.background, moved.scene.bg_seed, moved.motions) == (spec.scene.background, spec.scene.bg_seed,
                                                                           spec.motions)


def test_inverted_twin_keeps_a_latent_of_the_trajectory_up_to_the_terminal_step():
    """With a predictor that knows each sample's clean latent z and noise e, DDIM inversion is exact, so
    every kept latent must be alpha_t z + sigma_t e at the timestep returned with it; the trajectory
    reaches t = 999 (where sampling starts), and latents below `min_t` are not kept."""
    import torch
    from diffusers import DDIMScheduler

    from videdit.shapes.train import inverted_twin
    from videdit.tiny import I2V_SCHEDULER

    abar = DDIMScheduler(**I2V_SCHEDULER).alphas_cumprod
    steps = 5
    g = torch.Generator().manual_seed(0)
    z, e = torch.randn(8, 4, 2, 4, 4, generator=g), torch.randn(8, 4, 2, 4, 4, generator=g)

    def exact_v(x, t, i):  # DDIMInverseScheduler reads the input at the level one step below t
        level = int(t) - 1000 // steps
        a = torch.tensor(1.0) if level < 0 else abar[level]
        return a.sqrt() * e - (1 - a).sqrt() * z

    for p_top, min_t in ((1.0, 0), (0.0, 0), (0.0, 500), (0.5, 0)):
        x, t = inverted_twin(exact_v, z, steps, np.random.default_rng(1), p_top=p_top, min_t=min_t)
        a = abar[t].view(-1, 1, 1, 1, 1)
        assert torch.allclose(x, a.sqrt() * z + (1 - a).sqrt() * e, atol=1e-4)
        if p_top == 1.0:
            assert t.tolist() == [999] * 8
        elif p_top == 0.0:
            assert t.max() < 999 and t.min() >= min_t and len(set(t.tolist())) > 1


def test_twin_noise_puts_the_twin_in_the_input_and_keeps_the_clip_as_the_target():
    import torch

    from videdit.shapes.train import RECOLOUR_MIN_T, implied_noise, twin_noise, v_target

    abar = torch.linspace(0.999, 0.001, 1000)
    t = torch.tensor([RECOLOUR_MIN_T - 100, RECOLOUR_MIN_T + 200])
    g = torch.Generator().manual_seed(0)
    z0, z_twin, n = (torch.randn(2, 4, 3, 8, 8, generator=g) for _ in range(3))
    e = twin_noise(abar, t, n, z0, z_twin)
    a, s = abar[t].sqrt().view(-1, 1, 1, 1, 1), (1 - abar[t]).sqrt().view(-1, 1, 1, 1, 1)
    x_t = a * z0 + s * e
    assert torch.allclose(e[0], n[0])  # below RECOLOUR_MIN_T the clip is noised as usual
    assert torch.allclose(x_t[1], a[1] * z_twin[1] + s[1] * n[1], atol=1e-5)  # above it, the twin
    v = v_target(abar, t, z0, e)
    assert torch.allclose(a * x_t - s * v, z0, atol=1e-4)  # the x_0 the target implies is the clip
    x_any = torch.randn(z0.shape, generator=g)  # any input (an inverted twin): the target still implies the clip
    v_any = v_target(abar, t, z0, implied_noise(abar, t, x_any, z0))
    assert torch.allclose(a * x_any - s * v_any, z0, atol=1e-4)
    e_all = twin_noise(abar, t, n, z0, z_twin, min_t=0)  # --recolour-min-t 0: every timestep takes the twin
    assert torch.allclose((a * z0 + s * e_all)[0], a[0] * z_twin[0] + s[0] * n[0], atol=1e-5)


@pytest.mark.parametrize("args", [
    ["i2v", "--recolour-inverted", "2"],  # no --recolour: no clip would get a twin
    ["sd", "--vae", "v", "--from", "x"],  # ip2p/i2v options on another kind
    ["vae", "--lr", "1e-3"],
    ["ip2p", "--init", "x", "--recolour", "0.5"],  # an i2v-only option
    ["ip2p", "--init", "x", "--from", "no-such-pipeline"],  # a second stage from a folder without unet/
    ["vae", "--device", "tpu"],
] + ([] if __import__("torch").cuda.is_available() else [["vae", "--device", "cuda"]]))
def test_train_rejects_options_that_would_do_nothing(args, tmp_path, capsys):
    from videdit.shapes import train

    with pytest.raises(SystemExit) as e:
        train.main(args + ["--out", str(tmp_path / "run")])
    assert e.value.code == 2 and "error:" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()

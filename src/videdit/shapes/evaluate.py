"""Quality measures of the ShapesWorld models, on held-out draws of the world.

All draws come from seeded streams at or above `train.HELD_OUT_SEED`, which training never uses.
Models are loaded in float32 (the committed weights may be fp16; CPU kernels want float32).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from videdit.shapes import IP2P_GUIDANCE, judge, world
from videdit.shapes.train import HELD_OUT_SEED, held_out_images, vae_psnr, vae_round_trip


def load_sd(path: str | Path):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(path, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_ip2p(path: str | Path):
    from diffusers import StableDiffusionInstructPix2PixPipeline

    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(path, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def held_out_scenes(n: int, stream: int = 1) -> list[world.Scene]:
    """Scenes of 1-2 fully visible objects (the editing tests use 1-2) from held-out stream `stream`."""
    rng = np.random.default_rng(HELD_OUT_SEED + stream)
    return [world.random_scene(rng, n_objects=int(rng.integers(1, 3))) for _ in range(n)]


def held_out_triples(n: int, stream: int = 2) -> list[tuple[world.Scene, world.Edit, world.Scene]]:
    rng = np.random.default_rng(HELD_OUT_SEED + stream)
    return [world.random_triple(rng) for _ in range(n)]


def vae_score(vae, n: int = 500) -> float:
    """Mean reconstruction PSNR (dB) on `n` held-out frames."""
    return vae_psnr(vae, held_out_images(n))


def oracle_reading(images: np.ndarray, scenes: list[world.Scene]) -> dict:
    """What the oracle reads in images of known scenes (renders, or their VAE round trips: the best
    any latent model can output): fractions of objects located in the right colour and shape, and of
    images with the right background; `judge_generated`, as the shapes-sd bars use it."""
    results = [judge.judge_generated(im, s) for im, s in zip(images, scenes)]
    return {"colour": float(np.mean([c for r in results for c in r["colour"]])),
            "shape": float(np.mean([c for r in results for c in r["shape"]])),
            "background": float(np.mean([r["background"] for r in results]))}


def round_trip_reading(vae, scenes: list[world.Scene]) -> dict:
    """`oracle_reading` of the clean renders of `scenes` and of their round trips through `vae`."""
    images = np.stack([world.render(s)[0] for s in scenes])
    return {"clean": oracle_reading(images, scenes), "round_trip": oracle_reading(vae_round_trip(vae, images), scenes)}


@torch.no_grad()
def sd_scores(pipe, n: int = 300, guidance: float = 5.0, steps: int = 30, batch: int = 25, seed: int = 0) -> dict:
    """Oracle accuracy of text-to-image samples: fraction of objects with the asked colour and shape, of images with the asked background."""
    scenes = held_out_scenes(n)
    results = []
    for i in range(0, n, batch):
        chunk = scenes[i : i + batch]
        g = torch.Generator().manual_seed(seed + i)
        images = pipe([s.caption for s in chunk], num_inference_steps=steps, guidance_scale=guidance, generator=g, height=64, width=64, output_type="np").images
        results.append((images * 255).round().astype(np.uint8))
    return {"n": n, **oracle_reading(np.concatenate(results), scenes)}


def edit_reading(images: np.ndarray, triples: list[tuple[world.Scene, world.Edit, world.Scene]], min_psnr: float = 25.0) -> dict:
    """The oracle's verdicts on edited `images` of held-out (source, edit, target) triples: the fraction
    it accepts (asked change made, rest kept, PSNR outside >= min_psnr), per kind of edit too, and the
    fraction whose objects and background are right whatever the PSNR (`asked_change_made`)."""
    verdicts = []
    for im, (src, e, t) in zip(images, triples):
        img, masks = world.render(src)
        verdicts.append((e.kind, judge.judge_edit(im, img, masks, t, e, min_psnr)))
    by_kind = {k: float(np.mean([v["success"] for kk, v in verdicts if kk == k])) for k in ("recolour", "reshape", "background") if any(kk == k for kk, _ in verdicts)}
    return {"n": len(verdicts), "success": float(np.mean([v["success"] for _, v in verdicts])),
            "asked_change_made": float(np.mean([v["objects_ok"] and v["background_ok"] for _, v in verdicts])),
            "psnr_outside_median": float(np.median([v["psnr_outside"] for _, v in verdicts])), **{f"success_{k}": s for k, s in by_kind.items()}}


@torch.no_grad()
def ip2p_scores(pipe, n: int = 300, guidance: float = IP2P_GUIDANCE[0], image_guidance: float = IP2P_GUIDANCE[1], steps: int = 20, batch: int = 25, seed: int = 0, min_psnr: float = 25.0) -> dict:
    """`edit_reading` of the instruction edits `pipe` makes of `n` held-out triples' sources (guidance scales:
    default `IP2P_GUIDANCE`)."""
    triples = held_out_triples(n)
    images = []
    for i in range(0, n, batch):
        chunk = triples[i : i + batch]
        g = torch.Generator().manual_seed(seed + i)
        out = pipe([e.instruction for _, e, _ in chunk], image=[Image.fromarray(world.render(s)[0]) for s, _, _ in chunk], num_inference_steps=steps, guidance_scale=guidance, image_guidance_scale=image_guidance, generator=g, output_type="np").images
        images.append((out * 255).round().astype(np.uint8))
    return edit_reading(np.concatenate(images), triples, min_psnr)


def ip2p_ceiling(vae, n: int = 300, min_psnr: float = 25.0) -> dict:
    """`edit_reading` of the exact targets of `n` held-out triples passed through `vae`: the best score a
    latent editing model can get."""
    triples = held_out_triples(n)
    return edit_reading(vae_round_trip(vae, np.stack([world.render(t)[0] for _, _, t in triples])), triples, min_psnr)


def inversion_psnr(model: str | Path, n_clips: int = 3, n_frames: int = 8, steps: int = 50, seed: int = 0) -> list[float]:
    """DDIM inversion (`steps` steps, guidance 1) of held-out clips under their own captions, then
    regeneration from the inverted noise with the same caption: PSNR (dB) of each clip against its source."""
    from videdit.api import edit

    rng = np.random.default_rng(HELD_OUT_SEED + 3)
    scores = []
    for _ in range(n_clips):
        clip = world.render_clip(world.random_clip(rng, n_frames=n_frames))
        caption = clip.spec.scene.caption
        out = edit(clip.frames, caption, source_prompt=caption, model=str(model), strength=1.0, steps=steps,
                   guidance=1.0, size=world.SIZE, seed=seed, progress=False, device="cpu")
        scores.append(judge.psnr(out.frames, clip.frames))
    return scores


def invert_recolour(model: str | Path, n_frames: int = 16, steps: int = 50, guidance: float = 5.0, seed: int = 0,
                    inject_steps: int = 0) -> dict:
    """The `invert` quality check: a red circle moving on grass, "a red circle on grass" -> "a blue circle on
    grass" (with plug-and-play injection in the first `inject_steps` steps). Returns the fraction of frames
    in which the oracle calls the circle (under its ground-truth mask) blue, and the PSNR outside the
    circle against the source."""
    from videdit.api import edit

    scene = world.Scene((world.Obj("circle", "red", 0.3, 0.5, 0.16),), "grass", bg_seed=11)
    clip = world.render_clip(world.ClipSpec(scene, (world.Motion("linear", vx=0.4 / (n_frames - 1)),), n_frames))
    out = edit(clip.frames, "a blue circle on grass", source_prompt="a red circle on grass", model=str(model),
               steps=steps, guidance=guidance, size=world.SIZE, seed=seed, progress=False, device="cpu",
               inject_steps=inject_steps, reconstruction=False)
    colours = [judge.object_colour(f, m[0]) for f, m in zip(out.frames, clip.masks)]
    return {"blue": float(np.mean([c == "blue" for c in colours])),
            "psnr_outside": judge.psnr_outside(out.frames, clip.frames, clip.masks.any(axis=1))}


def recoloured_clips(obj: world.Obj, background: str, bg_seed: int, travel: tuple[float, float], n_frames: int,
                     size: int = world.SIZE) -> tuple[world.Clip, world.Clip]:
    """One object moving `travel` (frame widths, x and y) in `n_frames` frames, and the same clip with the
    object blue: the exact edit of the first frame and the ground truth of the rest."""
    scene = world.Scene((obj,), background=background, bg_seed=bg_seed)
    steps = max(n_frames - 1, 1)
    spec = world.ClipSpec(scene, (world.Motion("linear", vx=travel[0] / steps, vy=travel[1] / steps),), n_frames=n_frames)
    return world.render_clip(spec, size), world.render_clip(world.repainted(spec, lambda _: "blue"), size)


def square_clips(n_frames: int, size: int = world.SIZE) -> tuple[world.Clip, world.Clip]:
    """The `i2v` task: a red square moving right on grass (a quarter to three quarters of the width)."""
    return recoloured_clips(world.Obj("square", "red", cx=0.25, cy=0.5, size=0.14), "grass", 3, (0.5, 0.0), n_frames, size)


def circle_clips(n_frames: int, size: int = world.SIZE) -> tuple[world.Clip, world.Clip]:
    """A second `i2v` clip, never used to choose a recipe: a yellow circle moving down and left on sand."""
    return recoloured_clips(world.Obj("circle", "yellow", cx=0.7, cy=0.3, size=0.15), "sand", 5, (-0.3, 0.35), n_frames, size)


I2V_CLIPS = {"square": square_clips, "circle": circle_clips}
I2V_HELD_OUT = "held-out-"  # + k: the clip of `held_out_i2v_spec(k)`


def held_out_i2v_spec(k: int) -> tuple[world.Obj, str, int, tuple[float, float]]:
    """The k-th held-out `i2v` clip (a stream training never draws from): one object of any shape and any
    colour but blue, on any background but sky (a blue object on blue sky is not a readable edit), moving
    in a straight line 0.2 to 0.5 frame widths in a random direction without leaving the frame.
    Returns `recoloured_clips`' object, background, background seed and travel."""
    rng = np.random.default_rng([HELD_OUT_SEED + 4, k])
    while True:
        obj = world.random_object(rng, margin=0.05, colour=str(rng.choice([c for c in world.COLOURS if c != "blue"])))
        angle, length = rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.5)
        end = obj.cx + length * np.cos(angle), obj.cy + length * np.sin(angle)
        if all(obj.size + 0.02 <= e <= 1 - obj.size - 0.02 for e in end):
            break
    background = str(rng.choice([b for b in world.BACKGROUNDS if b != "sky"]))
    return obj, background, int(rng.integers(2**31)), (float(end[0] - obj.cx), float(end[1] - obj.cy))


def i2v_clips(name: str, n_frames: int, size: int = world.SIZE,
              source_colour: str | None = None) -> tuple[world.Clip, world.Clip]:
    """(source, blue truth) of an `i2v` check clip: a name of `I2V_CLIPS`, or "held-out-K" (K = 0, 1, ...);
    `source_colour` repaints the source's object (the truth stays blue)."""
    if name in I2V_CLIPS:
        source, truth = I2V_CLIPS[name](n_frames, size)
    elif name.startswith(I2V_HELD_OUT) and name[len(I2V_HELD_OUT):].isdigit():
        source, truth = recoloured_clips(*held_out_i2v_spec(int(name[len(I2V_HELD_OUT):])), n_frames, size)
    else:
        raise ValueError(f"unknown i2v clip {name!r}: choose from {', '.join(I2V_CLIPS)} or {I2V_HELD_OUT}K")
    if source_colour is not None:
        if source_colour not in world.COLOURS or source_colour == "blue":
            raise ValueError(f"source colour {source_colour!r}: choose a named colour other than blue")
        source = world.render_clip(world.repainted(source.spec, lambda _: source_colour), size)
    return source, truth


def propagation(frames: np.ndarray, truth: world.Clip) -> dict:
    """How well edited `frames` carry the blue object of `truth` (one object), by the oracle, per frame:

    - blue: the colour under the object's ground-truth mask is blue (it is blue where it should be);
    - one_blue: exactly one blue object is found (no copy left at the first-frame place, no second object);
    - background: the background class is the truth's;
    - centroid_error_px: distance between the largest blue object's centroid and the true one, over
      frames 1 ... F-1 (a frame without a blue object counts as the image diagonal);
    - psnr: of the whole clip against the ground truth.

    `success` is the fraction of frames with blue, one_blue and background all right. An earlier form
    of this measure asked only that the largest object be blue, which a frame turned blue all over passes.
    """
    diag = float(np.hypot(*frames.shape[1:3]))
    blue, one, bg, errs = [], [], [], []
    for t, frame in enumerate(frames):
        found, background = judge.locate(frame)
        blues = [f for f in found if f.colour == "blue"]
        blue.append(judge.object_colour(frame, truth.masks[t, 0]) == "blue")
        one.append(len(blues) == 1)
        bg.append(background == truth.spec.scene.background)
        if t:
            c = max(blues, key=lambda f: f.area).centroid if blues else None
            errs.append(diag if c is None else float(np.hypot(c[0] - truth.centroids[t, 0, 0], c[1] - truth.centroids[t, 0, 1])))
    ok = np.array(blue) & np.array(one) & np.array(bg)
    return {"success": float(ok.mean()), "blue": float(np.mean(blue)), "one_blue": float(np.mean(one)),
            "background": float(np.mean(bg)), "centroid_error_px": float(np.mean(errs)),
            "psnr": judge.psnr(frames, truth.frames)}


def i2v_recolour(model, n_frames: int = 16, steps: int = 50, inversion_steps: int = 100, clip: str = "square",
                 source_colour: str | None = None, **options) -> dict:
    """Method i2v on an `i2v_clips` clip (default `square_clips`): the first frame replaced by the render with the
    object blue, propagated along the source's inverted noise, under `method_options("i2v")`; `options` go to
    `videdit.edit` (tau_conv, tau_sa, tau_ta, long_clip, ...) and override those; `source_colour` repaints the
    source's object (`i2v_clips`). Returns `propagation`'s measures."""
    from videdit.api import edit
    from videdit.shapes import method_options

    source, truth = i2v_clips(clip, n_frames, source_colour=source_colour)
    out = edit(source.frames, truth.spec.scene.caption, method="i2v", model=model, size=world.SIZE, steps=steps,
               inversion_steps=inversion_steps, progress=False, reconstruction=False,
               first_frame_editor=lambda image: truth.frames[0], **{**method_options("i2v", steps), **options})
    return propagation(out.edited_working, truth)

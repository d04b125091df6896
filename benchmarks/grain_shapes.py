"""ShapesWorld meaning check of method grain: two circles of one colour, each edited to another colour.

A clip of two red circles (left, right) on sand (or `--background`) is edited to "a blue circle and a
green circle on sand". ``grain`` gets two regions (the ground-truth masks of the circles) with the prompts
"a blue circle" (left) and "a green circle" (right); ``invert`` gets the same prompt and no regions, once
plain and once with plug-and-play injection (which keeps the circles in place). Per-region colour
accuracy: the fraction of frames in which the oracle (`videdit.shapes.judge`) names the region's target
colour for the circle under its ground-truth mask. All runs use the same seed, steps, strength and
guidance in one process; the ratios compare like with like.

grain runs with the paper's cross-attention strength (lambda = 1) and with `--layout-cross` (default 20,
from `videdit.shapes.method_options`, as are the other defaults of the ShapesWorld runs).
shapes-sd's cross-attention logits spanned 1.2 to 6.3 per query (max - min over the 77 tokens; the 120-minute model), where SD 1.5's
span far more: with lambda = 1 the ~70 tokens outside every span keep most of the probability mass
(with a span of 2, three positive tokens get about a quarter of it), and one colour takes both circles.

    python benchmarks/grain_shapes.py                       # 8 frames, 25 steps, sand
    python benchmarks/grain_shapes.py --background grass    # green circles are hard to see on grass
    python benchmarks/grain_shapes.py --variants            # also: self-attention on the unconditional
                                                            # half, sigma / frames^2 (the original code)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

BACKGROUND = "sand"


def prompts(background: str = BACKGROUND) -> tuple[str, str]:
    """(target, source) prompts of the two-circle scene on ``background``."""
    return (f"a blue circle and a green circle on {background}", f"a red circle and a red circle on {background}")


TARGETS = (("left", "a blue circle", "blue"), ("right", "a green circle", "green"))


def two_circles(frames: int = 8, colour: str = "red", seed: int = 3, background: str = BACKGROUND):
    """(T, 64, 64, 3) frames and [left, right] (T, 64, 64) ground-truth masks; the circles drift apart slowly."""
    from videdit.shapes.world import ClipSpec, Motion, Obj, Scene, render_clip

    scene = Scene((Obj("circle", colour, 0.28, 0.5, 0.17), Obj("circle", colour, 0.72, 0.5, 0.17)), background, seed)
    spec = ClipSpec(scene, (Motion("linear", -0.004, 0.003), Motion("linear", 0.004, -0.003)), n_frames=frames)
    clip = render_clip(spec)
    order = np.argsort([o.cx for o in scene.objects])
    return clip.frames, [clip.masks[:, i] for i in order]


def colour_accuracy(frames: np.ndarray, mask: np.ndarray, colour: str) -> float:
    """Fraction of frames in which the oracle names ``colour`` for the object under ``mask``
    (`videdit.shapes.judge.object_colour`: nearest named colour in CIELAB of the median inside the mask)."""
    from videdit.shapes.judge import object_colour

    return float(np.mean([object_colour(f, m) == colour for f, m in zip(frames, mask)]))


def edit(model, frames, masks, method: str, steps: int, strength: float, background: str = BACKGROUND,
         **options) -> np.ndarray:
    import videdit

    regions = None
    with tempfile.TemporaryDirectory() as tmp:
        if method == "grain":
            regions = []
            for (name, prompt, _), mask in zip(TARGETS, masks):
                folder = Path(tmp) / name
                folder.mkdir()
                for i, m in enumerate(mask):
                    Image.fromarray(m.astype(np.uint8) * 255).save(folder / f"{i:05d}.png")
                regions.append(f"{name}={folder}:{prompt}")
        target, source = prompts(background)
        res = videdit.edit(frames, target, method=method, model=model, regions=regions, source_prompt=source,
                           steps=steps, strength=strength, size=frames.shape[2], progress=False, no_cache=True,
                           reconstruction=False, **options)
    return res.frames


def score(frames, masks) -> dict[str, float]:
    return {name: colour_accuracy(frames, mask, colour) for (name, _, colour), mask in zip(TARGETS, masks)}


def compare(model="shapes-sd", frames: int = 8, steps: int = 25, strength: float = 1.0, variants: bool = False,
            background: str = BACKGROUND, layout_cross: float | None = None, inject_steps: int | None = None,
            **options) -> dict[str, dict[str, float]]:
    """{label: {left, right, mean, seconds}} colour accuracies of invert (plain and with injection) and
    grain (lambda = 1 and ``layout_cross``; with ``variants``, the original code's choices too).
    ``layout_cross`` and ``inject_steps`` default to `videdit.shapes.method_options` for ``steps``."""
    from videdit.models import load_sd
    from videdit.shapes import method_options

    layout_cross = method_options("grain", steps)["layout_cross"] if layout_cross is None else layout_cross
    inject_steps = method_options("invert", steps)["inject_steps"] if inject_steps is None else inject_steps
    loaded = load_sd(str(model)) if isinstance(model, (str, Path)) else model
    clip, masks = two_circles(frames, background=background)
    grain = {"layout_cross": layout_cross}
    runs = {"invert": ("invert", {}),
            f"invert --inject-steps {inject_steps}": ("invert", {"inject_steps": inject_steps}),
            "grain --layout-cross 1": ("grain", {"layout_cross": 1.0}),
            "grain": ("grain", grain)}
    if variants:
        runs["grain self=uncond"] = ("grain", {**grain, "layout_self_branch": "uncond"})
        runs["grain sigma/F^2"] = ("grain", {**grain, "layout_self_sigma": "frames2"})
        runs["grain self=uncond sigma/F^2"] = ("grain", {**grain, "layout_self_branch": "uncond",
                                                         "layout_self_sigma": "frames2"})
    out = {"source": dict(score(clip, masks))}
    for label, (method, extra) in runs.items():
        t0 = time.perf_counter()
        acc = score(edit(loaded, clip, masks, method, steps, strength, background, **options, **extra), masks)
        acc["seconds"] = time.perf_counter() - t0
        out[label] = acc
    for acc in out.values():
        acc["mean"] = (acc["left"] + acc["right"]) / 2
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="shapes-sd")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--strength", type=float, default=1.0)
    p.add_argument("--layout-factors", default=None, help="default: videdit.shapes.method_options (1,2,4: at 64 px "
                   "every level is coarse)")
    p.add_argument("--variants", action="store_true")
    p.add_argument("--background", default=BACKGROUND, help="sand, grass, sky, night or brick")
    p.add_argument("--layout-cross", type=float, default=None, help="grain's cross-attention lambda "
                   "(default: videdit.shapes.method_options, 20)")
    p.add_argument("--inject-steps", type=int, default=None, help="invert's second run: injected steps "
                   "(default: videdit.shapes.method_options, half of --steps)")
    args = p.parse_args(argv)
    from videdit.shapes import method_options

    defaults = method_options("grain", args.steps)
    args.layout_factors = args.layout_factors or defaults["layout_factors"]
    args.layout_cross = defaults["layout_cross"] if args.layout_cross is None else args.layout_cross
    res = compare(args.model, args.frames, args.steps, args.strength, args.variants, args.background,
                  args.layout_cross, args.inject_steps, layout_factors=args.layout_factors)
    print(f"ShapesWorld two circles on {args.background}, {args.frames} frames 64x64, {args.steps} steps, strength {args.strength}, "
          f"layout factors {args.layout_factors}, grain --layout-cross {args.layout_cross:g}")
    print(f"{'run':32s} {'left->blue':>10s} {'right->green':>12s} {'mean':>6s} {'time s':>7s}")
    for label, acc in res.items():
        print(f"{label:32s} {acc['left']:10.3f} {acc['right']:12.3f} {acc['mean']:6.3f} {acc.get('seconds', 0):7.1f}")
    best = max((label for label in res if label.startswith("invert")), key=lambda label: res[label]["mean"])
    base = res[best]["mean"]
    ratio = f"{res['grain']['mean'] / base:.2f}" if base > 0 else "n/a: invert scored 0"
    print(f"grain - best invert ({best}) mean accuracy: {res['grain']['mean'] - base:+.3f} (ratio {ratio})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

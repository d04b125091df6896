"""ShapesWorld: seeded scenes and clips of coloured shapes on textured backgrounds, with ground truth.

Everything is pure numpy + OpenCV and deterministic given a seed. Geometry is kept in
normalised coordinates (x, y and size as fractions of the frame width), so the same scene
renders at the models' 64x64 or at any larger size for looking at.

A clip is a `ClipSpec` (scene + motion per object + camera pan); any frame of it is rendered
on demand by `render_frame`, and `render_clip` returns frames with per-frame instance masks,
object states, centroids and the pan offset (the ground-truth motion).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

SIZE = 64  # the models' resolution

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (40, 200, 60),
    "blue": (30, 70, 230),
    "yellow": (245, 225, 30),
    "purple": (150, 40, 190),
    "orange": (250, 140, 20),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
}
SHAPES = ("circle", "square", "triangle", "star")
BACKGROUNDS = ("grass", "sand", "sky", "night", "brick")
MOTIONS = ("still", "linear", "bounce", "grow")
SPEED = (0.01, 0.03)  # how far linear and bouncing movers travel per frame, in frame widths (low, high)

# Base colour and texture amplitude of each background; textures are low-contrast so that
# objects stay recognisable and the 4x-downsampling autoencoder can reproduce them.
_BG_BASE: dict[str, tuple[int, int, int]] = {
    "grass": (70, 115, 45),
    "sand": (215, 185, 125),
    "sky": (140, 190, 235),
    "night": (25, 30, 75),
    "brick": (135, 70, 55),
}

INSTRUCTION_WORDS = ("make", "turn", "the", "into", "a", "put", "it", "on", "and")
VOCAB: list[str] = sorted(set(COLOURS) | set(SHAPES) | set(BACKGROUNDS) | set(INSTRUCTION_WORDS) | {"an", "left", "right"})


@dataclass(frozen=True)
class Obj:
    """One object: shape, colour name, centre (cx, cy) and size (radius), all as fractions of the width."""

    shape: str
    colour: str
    cx: float
    cy: float
    size: float


@dataclass(frozen=True)
class Scene:
    objects: tuple[Obj, ...]
    background: str
    bg_seed: int

    @property
    def caption(self) -> str:
        return caption(self)


@dataclass(frozen=True)
class Motion:
    """Per-object motion: velocity (vx, vy) in widths per frame; `grow` is the size change per frame."""

    kind: str = "still"
    vx: float = 0.0
    vy: float = 0.0
    grow: float = 0.0


@dataclass(frozen=True)
class ClipSpec:
    scene: Scene
    motions: tuple[Motion, ...]
    n_frames: int = 16
    pan: float = 0.0  # camera pan, widths per frame (positive: camera moves right, world moves left)


def with_objects(spec: ClipSpec, change) -> ClipSpec:
    """The same clip (scene, motions, background, pan) with each object o replaced by `change(o)`."""
    return replace(spec, scene=replace(spec.scene, objects=tuple(change(o) for o in spec.scene.objects)))


def repainted(spec: ClipSpec, colour_of) -> ClipSpec:
    """The same clip with each object's colour name c replaced by `colour_of(c)`."""
    return with_objects(spec, lambda o: replace(o, colour=colour_of(o.colour)))


@dataclass
class Clip:
    frames: np.ndarray  # (T, H, W, 3) uint8
    masks: np.ndarray  # (T, N, H, W) bool, instance masks after occlusion
    states: list[tuple[Obj, ...]]  # per frame, object states in world coordinates
    centroids: np.ndarray  # (T, N, 2) float, image-pixel centroid (x, y) of each object's ground-truth state
    pan_px: np.ndarray  # (T,) float, camera offset in pixels (frame t shows world x + pan_px[t])
    spec: ClipSpec = field(repr=False, default=None)


# ----------------------------------------------------------------------------- captions

def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def object_phrase(obj: Obj) -> str:
    return f"{_article(obj.colour)} {obj.colour} {obj.shape}"


def caption(scene: Scene) -> str:
    """Objects listed left to right: "a red circle and a blue square on grass"."""
    phrases = [object_phrase(o) for o in sorted(scene.objects, key=lambda o: o.cx)]
    if len(phrases) == 1:
        body = phrases[0]
    else:
        body = ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return f"{body} on {scene.background}"


# ----------------------------------------------------------------------------- backgrounds

def _smooth_noise(rng: np.random.Generator, grid: int, h: int, w: int) -> np.ndarray:
    """Value noise: a random grid x grid field upsampled bicubically to (h, w), zero mean, unit-ish std."""
    g = rng.standard_normal((grid, max(2, int(round(grid * w / h)))) ).astype(np.float32)
    return cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)


def render_background(name: str, seed: int, h: int, w: int) -> np.ndarray:
    """Textured background of `name`, (h, w, 3) float32 in 0..255; `w` may exceed `h` (for camera pans).

    Texture features scale with `h`, so a scene looks alike at every render size.
    """
    rng = np.random.default_rng(seed)
    base = np.array(_BG_BASE[name], np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / h
    if name == "grass":
        n = 12 * _smooth_noise(rng, 6, h, w) + 8 * _smooth_noise(rng, 16, h, w)
        img = base + n[..., None] * np.array([0.6, 1.0, 0.5], np.float32)
    elif name == "sand":
        n = 10 * _smooth_noise(rng, 5, h, w)
        ripples = 7 * np.sin(2 * np.pi * (yy * 5 + 0.15 * _smooth_noise(rng, 3, h, w)))
        img = base + (n + ripples)[..., None] * np.array([1.0, 0.95, 0.8], np.float32)
    elif name == "sky":
        clouds = np.clip(_smooth_noise(rng, 4, h, w), 0, None) * 30
        gradient = (yy - 0.5) * 30
        img = base + gradient[..., None] * np.array([0.6, 0.4, 0.1], np.float32) + clouds[..., None]
    elif name == "night":
        n = 6 * _smooth_noise(rng, 5, h, w)
        img = base + n[..., None] * np.array([0.5, 0.6, 1.0], np.float32)
        stars = _smooth_noise(rng, 24, h, w) > 2.6  # sparse faint glows, sized with the frame
        img[stars] += 35
    elif name == "brick":
        row = np.floor(yy * 8)
        shift = (row % 2) * 0.125
        mortar = (np.abs(yy * 8 - np.round(yy * 8)) < 0.09) | (np.abs((xx + shift) * 4 - np.round((xx + shift) * 4)) < 0.035)
        per_brick = 10 * _smooth_noise(rng, 8, h, w)
        img = base + per_brick[..., None]
        img[mortar] = 0.55 * img[mortar] + 0.45 * np.array([150, 140, 130], np.float32)
    else:
        raise ValueError(f"unknown background {name!r}; known: {', '.join(BACKGROUNDS)}")
    return np.clip(img, 0, 255).astype(np.float32)


# ----------------------------------------------------------------------------- objects

def _polygon(shape: str, cx: float, cy: float, r: float) -> np.ndarray | None:
    """Vertices (pixels) of a polygonal shape centred at (cx, cy) with size r; None for a circle."""
    if shape == "circle":
        return None
    if shape == "square":
        a = 0.85 * r
        return np.array([[cx - a, cy - a], [cx + a, cy - a], [cx + a, cy + a], [cx - a, cy + a]])
    if shape == "triangle":
        R = 1.2 * r
        ang = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        return np.stack([cx + R * np.cos(ang), cy + 0.15 * r + R * np.sin(ang)], 1)
    if shape == "star":
        R, ri = 1.25 * r, 0.5 * r
        ang = -np.pi / 2 + np.arange(10) * np.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, R, ri)
        return np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)
    raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def object_alpha(obj: Obj, h: int, w: int, offset_x: float = 0.0, supersample: int = 4) -> np.ndarray:
    """Anti-aliased coverage (h, w) float32 in 0..1 of `obj`, drawn at `supersample` times the size then area-averaged."""
    s = supersample
    scale = h * s  # normalised units are fractions of the frame height (== width for square frames)
    canvas = np.zeros((h * s, w * s), np.uint8)
    cx, cy, r = (obj.cx - offset_x) * scale, obj.cy * scale, obj.size * scale
    poly = _polygon(obj.shape, cx, cy, r)
    shift = 4  # sub-pixel precision bits of cv2 drawing
    if poly is None:
        cv2.circle(canvas, (int(round(cx * 2**shift)), int(round(cy * 2**shift))), int(round(r * 2**shift)), 255, -1, cv2.LINE_8, shift)
    else:
        cv2.fillPoly(canvas, [np.round(poly * 2**shift).astype(np.int32)], 255, cv2.LINE_8, shift)
    return cv2.resize(canvas.astype(np.float32) / 255.0, (w, h), interpolation=cv2.INTER_AREA)


def composite(background: np.ndarray, objects: tuple[Obj, ...], offset_x: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Draw objects in order over `background` (h, w, 3 float); returns the uint8 image and (N, h, w) instance masks.

    Masks are coverage >= 0.5 after occlusion by later objects.
    """
    h, w = background.shape[:2]
    img = background.copy()
    alphas = []
    for obj in objects:
        a = object_alpha(obj, h, w, offset_x)
        img = img * (1 - a[..., None]) + np.array(COLOURS[obj.colour], np.float32) * a[..., None]
        alphas.append(a)
    masks = np.zeros((len(objects), h, w), bool)
    covered = np.zeros((h, w), bool)
    for i in range(len(objects) - 1, -1, -1):
        m = alphas[i] >= 0.5
        masks[i] = m & ~covered
        covered |= m
    return np.clip(np.round(img), 0, 255).astype(np.uint8), masks


def render(scene: Scene, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """One still image (size, size, 3) uint8 and its (N, size, size) instance masks."""
    bg = render_background(scene.background, scene.bg_seed, size, size)
    return composite(bg, scene.objects)


# ----------------------------------------------------------------------------- clips

def state_at(obj: Obj, motion: Motion, t: int) -> Obj:
    """Object state at frame t. `bounce` reflects off the frame borders (triangle wave of the free path)."""
    cx, cy, size = obj.cx + motion.vx * t, obj.cy + motion.vy * t, obj.size
    if motion.kind == "bounce":
        lo, hi = obj.size, 1 - obj.size
        cx, cy = _reflect(cx, lo, hi), _reflect(cy, lo, hi)
    if motion.kind == "grow":
        size = max(0.04, obj.size + motion.grow * t)
    return replace(obj, cx=float(cx), cy=float(cy), size=float(size))


def _reflect(x: float, lo: float, hi: float) -> float:
    span = hi - lo
    if span <= 0:
        return (lo + hi) / 2
    u = (x - lo) % (2 * span)
    return lo + (u if u <= span else 2 * span - u)


def render_frame(spec: ClipSpec, t: int, size: int = SIZE) -> tuple[np.ndarray, np.ndarray, tuple[Obj, ...], float]:
    """Frame t of a clip: image, instance masks, object states (world coordinates) and pan offset in pixels."""
    pan_total = abs(spec.pan) * max(spec.n_frames - 1, 0)
    width = size + int(np.ceil(pan_total * size)) + 1
    bg_world = render_background(spec.scene.background, spec.scene.bg_seed, size, width)
    return _frame_from_world(spec, t, size, bg_world)


def _frame_from_world(spec: ClipSpec, t: int, size: int, bg_world: np.ndarray):
    pan_total = abs(spec.pan) * max(spec.n_frames - 1, 0)
    # world x of the frame's left edge; a negative pan starts at the right end of the strip
    offset = spec.pan * t + (pan_total if spec.pan < 0 else 0.0)
    states = tuple(state_at(o, m, t) for o, m in zip(spec.scene.objects, spec.motions))
    x0 = offset * size
    ix = int(np.floor(x0))
    frac = x0 - ix
    strip = bg_world[:, ix : ix + size + 1]
    bg = (1 - frac) * strip[:, :size] + frac * strip[:, 1 : size + 1]
    img, masks = composite(bg, states, offset_x=offset)
    return img, masks, states, float(x0)


def render_clip(spec: ClipSpec, size: int = SIZE) -> Clip:
    pan_total = abs(spec.pan) * max(spec.n_frames - 1, 0)
    width = size + int(np.ceil(pan_total * size)) + 2
    bg_world = render_background(spec.scene.background, spec.scene.bg_seed, size, width)
    frames, masks, states, pans = [], [], [], []
    for t in range(spec.n_frames):
        img, m, st, px = _frame_from_world(spec, t, size, bg_world)
        frames.append(img), masks.append(m), states.append(st), pans.append(px)
    pan_px = np.array(pans)
    centroids = np.array([[[o.cx * size - p, o.cy * size] for o in st] for st, p in zip(states, pan_px)]).reshape(spec.n_frames, -1, 2)
    return Clip(np.stack(frames), np.stack(masks), states, centroids, pan_px, spec)


# ----------------------------------------------------------------------------- sampling

def random_object(rng: np.random.Generator, margin: float = 0.0, shape: str | None = None, colour: str | None = None) -> Obj:
    """Random object; `margin` < 0 lets centres come close to the border (partially visible objects)."""
    size = float(rng.uniform(0.11, 0.2))
    lo, hi = size + margin, 1 - size - margin
    return Obj(
        shape or SHAPES[rng.integers(len(SHAPES))],
        colour or list(COLOURS)[rng.integers(len(COLOURS))],
        float(rng.uniform(lo, hi)),
        float(rng.uniform(lo, hi)),
        size,
    )


def _overlap(a: Obj, b: Obj) -> float:
    return (a.size + b.size) - float(np.hypot(a.cx - b.cx, a.cy - b.cy))


def random_scene(rng: np.random.Generator, n_objects: int | None = None, margin: float = 0.0, background: str | None = None, max_overlap: float = 0.0) -> Scene:
    """1-3 objects that do not overlap by more than `max_overlap` widths (rejection sampling)."""
    n = int(n_objects or rng.integers(1, 4))
    objs: list[Obj] = []
    for _ in range(200):
        if len(objs) == n:
            break
        o = random_object(rng, margin)
        if all(_overlap(o, p) <= max_overlap for p in objs):
            objs.append(o)
    return Scene(tuple(objs), background or BACKGROUNDS[rng.integers(len(BACKGROUNDS))], int(rng.integers(2**31)))


def random_motion(rng: np.random.Generator, kind: str | None = None, speed: tuple[float, float] = SPEED) -> Motion:
    """A random motion; linear and bouncing movers travel `speed` (low, high) frame widths per frame."""
    kind = kind or MOTIONS[rng.integers(len(MOTIONS))]
    speed = rng.uniform(*speed)
    angle = rng.uniform(0, 2 * np.pi)
    vx, vy = (speed * np.cos(angle), speed * np.sin(angle)) if kind in ("linear", "bounce") else (0.0, 0.0)
    grow = rng.choice([-1, 1]) * rng.uniform(0.002, 0.005) if kind == "grow" else 0.0
    return Motion(kind, float(vx), float(vy), float(grow))


def random_clip(rng: np.random.Generator, n_frames: int = 16, n_objects: int | None = None, pan: bool | None = None,
                speed: tuple[float, float] = SPEED) -> ClipSpec:
    """Random clip: objects move smoothly (still, linear, bouncing or growing); a slow camera pan half the time."""
    scene = random_scene(rng, n_objects)
    motions = []
    for o in scene.objects:
        m = random_motion(rng, speed=speed)
        if m.kind == "linear":  # keep linear movers inside the frame for the whole clip
            end_x, end_y = o.cx + m.vx * (n_frames - 1), o.cy + m.vy * (n_frames - 1)
            if not (0 <= end_x <= 1 and 0 <= end_y <= 1):
                m = replace(m, kind="bounce")
        motions.append(m)
    use_pan = bool(rng.random() < 0.5) if pan is None else pan
    p = float(rng.choice([-1, 1]) * rng.uniform(0.005, 0.015)) if use_pan else 0.0
    return ClipSpec(scene, tuple(motions), n_frames, p)


def random_frame(rng: np.random.Generator, size: int = SIZE) -> tuple[np.ndarray, str]:
    """A training image: one frame of a random clip (objects may be moving, partially visible); image and caption."""
    for _ in range(20):
        spec = random_clip(rng, n_frames=16)
        t = int(rng.integers(spec.n_frames))
        img, _, states, px = render_frame(spec, t, size)
        visible = tuple(replace(o, cx=o.cx - px / size) for o in states)
        if all(0.03 <= o.cx <= 0.97 and 0.03 <= o.cy <= 0.97 for o in visible):  # each object at least about half in view
            break
    return img, caption(Scene(visible, spec.scene.background, spec.scene.bg_seed))


# ----------------------------------------------------------------------------- instruction triples

@dataclass(frozen=True)
class Edit:
    kind: str  # "recolour" | "reshape" | "background"
    instruction: str
    index: int | None  # edited object (None for a background change)
    value: str  # new colour / shape / background


def apply_edit(scene: Scene, edit: Edit) -> Scene:
    if edit.kind == "background":
        return replace(scene, background=edit.value)
    objs = list(scene.objects)
    field_name = "colour" if edit.kind == "recolour" else "shape"
    objs[edit.index] = replace(objs[edit.index], **{field_name: edit.value})
    return replace(scene, objects=tuple(objs))


def random_edit(rng: np.random.Generator, scene: Scene, kind: str | None = None) -> Edit:
    """An instruction that names its object unambiguously (by shape; the scene should have unique shapes)."""
    kind = kind or ("recolour", "reshape", "background")[rng.integers(3)]
    if kind == "background":
        value = rng.choice([b for b in BACKGROUNDS if b != scene.background])
        return Edit(kind, f"put it on {value}", None, str(value))
    i = int(rng.integers(len(scene.objects)))
    obj = scene.objects[i]
    if kind == "recolour":
        value = str(rng.choice([c for c in COLOURS if c != obj.colour]))
        return Edit(kind, f"make the {obj.shape} {value}", i, value)
    value = str(rng.choice([s for s in SHAPES if s != obj.shape]))
    return Edit(kind, f"turn the {obj.shape} into {_article(value)} {value}", i, value)


def random_triple(rng: np.random.Generator, kind: str | None = None, n_objects: int | None = None) -> tuple[Scene, Edit, Scene]:
    """(source scene, edit, target scene); 1-2 objects with distinct shapes so instructions are unambiguous."""
    n = int(n_objects or rng.integers(1, 3))
    for _ in range(100):
        scene = random_scene(rng, n, margin=-0.05)
        shapes = [o.shape for o in scene.objects]
        if len(set(shapes)) == len(shapes) == n:
            break
    edit = random_edit(rng, scene, kind)
    return scene, edit, apply_edit(scene, edit)


def upscale(img: np.ndarray, factor: int = 4) -> np.ndarray:
    """Nearest-neighbour enlargement of an image or stack of images for viewing."""
    return np.repeat(np.repeat(img, factor, axis=-3 if img.ndim >= 3 else 0), factor, axis=-2 if img.ndim >= 3 else 1)

"""Layers of a clip: atlas images, per-frame uv maps and alpha, and the render that re-composes them.

A layer is an atlas image and, for every frame, the atlas position each pixel reads (uv, in atlas
pixels) and, for a foreground layer, its opacity alpha. The background layer is opaque. Any
number of foreground layers compose over it in order (Kasten et al., "Layered Neural Atlases for
Consistent Video Editing", SIGGRAPH Asia 2021, sec. 3; StableVideo, Chai et al., ICCV 2023, sec. 3):

    out_t(p) = alpha_t(p) * A_fg(uv_fg,t(p)) + (1 - alpha_t(p)) * A_bg(uv_bg,t(p))

where A(uv) samples an atlas bilinearly. Editing an atlas image and rendering again is a video
edit that is the same in every frame.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from videdit.errors import UserError

MAPS_FILE = "maps.npz"
FORMAT_VERSION = 1


@dataclass
class Layer:
    """One layer: an atlas image and where each frame's pixels read it.

    atlas: (Ha, Wa, 3) uint8. seen: (Ha, Wa) bool, the texels some frame saw (the rest is filled in
    or unused). uv: (T, H, W, 2) float32 atlas pixel (x, y) of every frame pixel. alpha: (T, H, W)
    float32 in [0, 1], None for the opaque background. homographies: (T, 3, 3) frame -> atlas, when
    uv is a homography of the frame grid (then only these are stored on disk).
    """

    name: str
    atlas: np.ndarray
    seen: np.ndarray
    uv: np.ndarray
    alpha: np.ndarray | None = None
    homographies: np.ndarray | None = None

    @property
    def atlas_size(self) -> tuple[int, int]:
        """(width, height) of the atlas image."""
        return int(self.atlas.shape[1]), int(self.atlas.shape[0])


@dataclass
class Layers:
    """The background and any foreground layers of a clip of ``len(background.uv)`` frames."""

    background: Layer
    foregrounds: list[Layer]
    fps: float
    backend: str
    info: dict = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return int(self.background.uv.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        return int(self.background.uv.shape[2]), int(self.background.uv.shape[1])


# ---------------------------------------------------------------------------------------
# Sampling and the render

def uv_from_homographies(homographies: np.ndarray, height: int, width: int) -> np.ndarray:
    """(T, H, W, 2) float32: pixel (x, y) of each frame mapped by its 3x3 homography (x' = Hx / (Hx)_z)."""
    xs = np.arange(width, dtype=np.float64)[None, :]
    ys = np.arange(height, dtype=np.float64)[:, None]
    out = np.empty((len(homographies), height, width, 2), np.float32)
    for t, H in enumerate(np.asarray(homographies, np.float64)):
        z = H[2, 0] * xs + H[2, 1] * ys + H[2, 2]
        out[t, ..., 0] = (H[0, 0] * xs + H[0, 1] * ys + H[0, 2]) / z
        out[t, ..., 1] = (H[1, 0] * xs + H[1, 1] * ys + H[1, 2]) / z
    return out


def sample(atlas: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """A(uv): the (Ha, Wa, C) atlas read bilinearly at (H, W, 2) atlas pixel positions; float32.

    Positions beyond the border read the nearest border texel.
    """
    return cv2.remap(np.ascontiguousarray(atlas, np.float32), np.ascontiguousarray(uv[..., 0]),
                     np.ascontiguousarray(uv[..., 1]), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def outside(uv: np.ndarray, atlas_size: tuple[int, int]) -> np.ndarray:
    """(..., H, W) bool: positions no texel of an atlas of ``atlas_size`` = (width, height) covers."""
    width, height = atlas_size
    return (uv[..., 0] < -0.5) | (uv[..., 1] < -0.5) | (uv[..., 0] > width - 0.5) | (uv[..., 1] > height - 0.5)


def over(fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """out = alpha * fg + (1 - alpha) * bg: one layer composed over what lies beneath it."""
    a = alpha[..., None]
    return a * fg + (1.0 - a) * bg


def render_frame(layers: Layers, t: int, bg_atlas: np.ndarray | None = None,
                 fg_atlases: list[np.ndarray | None] | None = None, source: np.ndarray | None = None) -> np.ndarray:
    """Frame t, (H, W, 3) uint8, from the layers' atlases or the ones given in their place.

    Where the background uv falls outside its atlas and ``source`` (H, W, 3) is given, the
    background is the source pixel: what no layer covers keeps the source.
    """
    bg_layer = layers.background
    out = sample(bg_layer.atlas if bg_atlas is None else bg_atlas, bg_layer.uv[t])
    if source is not None:
        missing = outside(bg_layer.uv[t], bg_layer.atlas_size)
        out[missing] = source[missing]
    for i, layer in enumerate(layers.foregrounds):
        atlas = layer.atlas if not fg_atlases or fg_atlases[i] is None else fg_atlases[i]
        out = over(sample(atlas, layer.uv[t]), layer.alpha[t], out)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def render(layers: Layers, bg_atlas: np.ndarray | None = None, fg_atlases: list[np.ndarray | None] | None = None,
           source: np.ndarray | None = None) -> np.ndarray:
    """Every frame, (T, H, W, 3) uint8 (see `render_frame`); atlases given must have the layers' sizes."""
    check_atlas(bg_atlas, layers.background, "background atlas")
    for i, atlas in enumerate(fg_atlases or []):
        if i >= len(layers.foregrounds):
            raise UserError(f"{len(fg_atlases)} foreground atlases given; the layers have {len(layers.foregrounds)}")
        check_atlas(atlas, layers.foregrounds[i], "foreground atlas")
    return np.stack([render_frame(layers, t, bg_atlas, fg_atlases, None if source is None else source[t])
                     for t in range(layers.frames)])


def check_atlas(atlas: np.ndarray | None, layer: Layer, what: str) -> None:
    """UserError unless ``atlas`` is None or an (Ha, Wa, 3) image of the layer's atlas size."""
    if atlas is None:
        return
    if atlas.ndim != 3 or atlas.shape[2] != 3:
        raise UserError(f"{what} must be an RGB image, got shape {atlas.shape}")
    if (atlas.shape[1], atlas.shape[0]) != layer.atlas_size:
        raise UserError(f"{what} is {atlas.shape[1]}x{atlas.shape[0]}; the layer's atlas is "
                        f"{layer.atlas_size[0]}x{layer.atlas_size[1]} (edit the written atlas image without resizing it)")


# ---------------------------------------------------------------------------------------
# On disk: the arrays in one .npz (cache and run folder), the atlases also as PNG

def to_arrays(layers: Layers) -> dict[str, np.ndarray]:
    """Every array of ``layers`` under flat names, plus a JSON header."""
    arrays: dict[str, np.ndarray] = {}
    header = dict(version=FORMAT_VERSION, fps=float(layers.fps), backend=layers.backend, info=layers.info,
                  layers=[])
    for key, layer in [("bg", layers.background)] + [(f"fg{i}", l) for i, l in enumerate(layers.foregrounds)]:
        header["layers"].append(dict(key=key, name=layer.name))
        arrays[f"{key}_atlas"] = layer.atlas
        arrays[f"{key}_seen"] = layer.seen
        if layer.homographies is not None:
            arrays[f"{key}_homographies"] = layer.homographies
            arrays[f"{key}_frame_size"] = np.array(layer.uv.shape[1:3])
        else:
            uv = layer.uv.copy()
            if layer.alpha is not None:
                uv[layer.alpha <= 0] = 0  # never read: compresses to nothing
            arrays[f"{key}_uv"] = uv
        if layer.alpha is not None:
            arrays[f"{key}_alpha"] = layer.alpha
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    return arrays


def from_arrays(arrays) -> Layers:
    header = json.loads(bytes(arrays["header"]).decode())
    if header.get("version") != FORMAT_VERSION:
        raise UserError(f"layer maps of format {header.get('version')} (this videdit reads {FORMAT_VERSION})")
    layers = []
    for entry in header["layers"]:
        key = entry["key"]
        homographies = arrays[f"{key}_homographies"] if f"{key}_homographies" in arrays else None
        if homographies is not None:
            h, w = (int(v) for v in arrays[f"{key}_frame_size"])
            uv = uv_from_homographies(homographies, h, w)
        else:
            uv = np.asarray(arrays[f"{key}_uv"], np.float32)
        alpha = np.asarray(arrays[f"{key}_alpha"], np.float32) if f"{key}_alpha" in arrays else None
        layers.append(Layer(entry["name"], np.asarray(arrays[f"{key}_atlas"]), np.asarray(arrays[f"{key}_seen"], bool),
                            uv, alpha, homographies))
    return Layers(layers[0], layers[1:], header["fps"], header["backend"], header.get("info", {}))


def save_npz(layers: Layers, path: Path) -> None:
    np.savez_compressed(path, **to_arrays(layers))


def load_npz(path: Path) -> Layers:
    try:
        with np.load(path) as data:
            return from_arrays({k: data[k] for k in data.files})
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"cannot read layer maps {path}: {error}") from None


def write_layers(layers: Layers, folder: Path, source: np.ndarray | None = None) -> None:
    """Fill ``folder`` (an empty, new folder): atlas_bg.png, atlas_fg.png (atlas_fg2.png, ... for more
    foreground layers), atlas_fg_alpha.png (the texels the foreground covers), atlas_reconstruction.mp4
    (every frame re-rendered from the unedited atlases), source.mp4 and maps.npz (uv, alpha, atlases)."""
    from PIL import Image

    from videdit.video import write_video

    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(layers.background.atlas).save(folder / "atlas_bg.png")
    for i, layer in enumerate(layers.foregrounds):
        suffix = "" if i == 0 else str(i + 1)
        Image.fromarray(layer.atlas).save(folder / f"atlas_fg{suffix}.png")
        Image.fromarray(layer.seen.astype(np.uint8) * 255).save(folder / f"atlas_fg{suffix}_alpha.png")
    write_video(folder / "atlas_reconstruction.mp4", render(layers, source=source), layers.fps)
    if source is not None:
        write_video(folder / "source.mp4", source, layers.fps)
    save_npz(layers, folder / MAPS_FILE)

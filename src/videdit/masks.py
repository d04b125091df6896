"""Region masks for multi-grained editing: loading, resizing per UNet resolution, overlays.

A region is a name, a mask and a prompt. Its mask comes from a folder of per-frame images
(named by original frame number: ``00017.png``, ``17.png`` or ``frame_0017.png``), from a
video, or from one image used for every frame; nonzero means inside. Or it is ``auto:WORD``:
the caller derives it from the cross-attention maps of WORD and cleans it with `clean_mask`.

Every resize here is the same nearest-neighbour sampling at pixel centres (`resize_nearest`),
so a mask loaded at the clip's size and one resized for the 8x8 UNet level agree.
"""

from __future__ import annotations

import colorsys
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from videdit.errors import UserError

__all__ = [
    "Region",
    "clean_mask",
    "load_mask_source",
    "masks_at_resolution",
    "overlay_masks",
    "parse_region_arg",
    "region_colour",
    "region_ids",
    "regions_from_config",
    "resize_nearest",
    "validate_regions",
]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_THRESHOLD = 32  # mask videos are lossy: "inside" is above the codec's noise on black
AUTO_PREFIX = "auto:"


# ---------------------------------------------------------------------------------------
# Regions

@dataclass(frozen=True)
class Region:
    """One region of a multi-grained edit: ``mask`` is a path or ``auto:WORD``."""

    name: str
    mask: str
    prompt: str

    @property
    def auto_word(self) -> str | None:
        """WORD of an ``auto:WORD`` mask (taken from cross-attention), else None."""
        return self.mask[len(AUTO_PREFIX):] if self.mask.startswith(AUTO_PREFIX) else None


_NAME = re.compile(r"^[\w][\w.\-]*$")
_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
_REGION_SYNTAX = "expected NAME=MASK:PROMPT or NAME=auto:WORD:PROMPT"


def _check_region(name: str, mask: str, prompt: str, where: str) -> Region:
    """A `Region` from stripped fields, or UserError naming ``where`` and what is wrong."""
    if not _NAME.match(name):
        raise UserError(f"{where}: region name {name!r} must be letters, digits, '_', '-' or '.'")
    if not mask:
        raise UserError(f"{where}: region {name!r} has no mask; {_REGION_SYNTAX}")
    if mask.startswith(AUTO_PREFIX) and not mask[len(AUTO_PREFIX):].strip():
        raise UserError(f"{where}: region {name!r} says auto: without a word; {_REGION_SYNTAX}")
    if not prompt:
        raise UserError(f"{where}: region {name!r} has no prompt; {_REGION_SYNTAX}")
    return Region(name, mask, prompt)


def parse_region_arg(arg: str) -> Region:
    """A `Region` from ``NAME=MASK:PROMPT`` (the ``--region`` option).

    MASK is a path (a folder, a video or an image) or ``auto:WORD``. The mask ends at the
    first colon after it (after ``auto:WORD`` for automatic masks), so paths may not contain
    colons (a Windows drive letter ``C:\\`` is allowed) while prompts may:
    ``title=masks/title:Spiderman: Far From Home`` has the prompt "Spiderman: Far From Home".
    Surrounding spaces of each field are removed.
    """
    where = f"--region {arg}"
    name, sep, rest = arg.partition("=")
    if not sep:
        raise UserError(f"{where}: no '='; {_REGION_SYNTAX}")
    name, rest = name.strip(), rest.strip()
    if rest.lower().startswith(AUTO_PREFIX):
        word, sep, prompt = rest[len(AUTO_PREFIX):].partition(":")
        mask = AUTO_PREFIX + word.strip()
    else:
        drive = rest[:3] if _DRIVE.match(rest) else ""
        path, sep, prompt = rest[len(drive):].partition(":")
        mask = (drive + path).strip()
    if not sep:
        raise UserError(f"{where}: no ':' before the prompt; {_REGION_SYNTAX}")
    return _check_region(name, mask, prompt.strip(), where)


def validate_regions(regions: list[Region]) -> list[Region]:
    """``regions`` unchanged, or UserError if two share a name."""
    seen: set[str] = set()
    for region in regions:
        if region.name in seen:
            raise UserError(f"region {region.name!r} is given twice; region names must differ")
        seen.add(region.name)
    return list(regions)


def regions_from_config(items: list[dict], base_dir: str | Path | None = None) -> list[Region]:
    """Regions from a config's ``regions: [{name, mask, prompt}, ...]``.

    Relative mask paths are taken relative to ``base_dir`` (the config file's folder) when
    given; ``auto:WORD`` masks are kept as they are.
    """
    if not isinstance(items, list):
        raise UserError(f"config 'regions' must be a list of {{name, mask, prompt}}, not {type(items).__name__}")
    regions = []
    for i, item in enumerate(items):
        where = f"config regions[{i}]"
        if not isinstance(item, dict):
            raise UserError(f"{where}: expected a mapping with name, mask and prompt")
        unknown = set(item) - {"name", "mask", "prompt"}
        if unknown:
            raise UserError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; expected name, mask, prompt")
        missing = [k for k in ("name", "mask", "prompt") if item.get(k) in (None, "")]
        if missing:
            raise UserError(f"{where}: missing {', '.join(missing)}")
        name, mask, prompt = (str(item[k]).strip() for k in ("name", "mask", "prompt"))
        if base_dir is not None and not mask.startswith(AUTO_PREFIX) and not Path(mask).is_absolute():
            mask = str(Path(base_dir) / mask)
        regions.append(_check_region(name, mask, prompt, where))
    return validate_regions(regions)


# ---------------------------------------------------------------------------------------
# Loading

def resize_nearest(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """``array`` (..., H, W) resampled to (..., height, width), nearest pixel centre.

    Output pixel i takes input pixel floor((i + 0.5) * H / height), as torch's
    ``nearest-exact``: symmetric, and an exact block pick for integer factors.
    """
    h, w = array.shape[-2:]
    if (h, w) == (height, width):
        return array
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return array[..., rows[:, None], cols[None, :]]


def _inside(pixels: np.ndarray, threshold: int = 0) -> np.ndarray:
    """(H, W) bool: any colour channel above ``threshold``; alpha 0 is outside.

    ``pixels`` is (H, W) or (H, W, C) with C in 1..4 (the 4th or 2nd of 2 channels is alpha).
    """
    if pixels.ndim == 2:
        return pixels > threshold
    channels = pixels.shape[-1]
    colour, alpha = (pixels[..., :-1], pixels[..., -1]) if channels in (2, 4) else (pixels, None)
    inside = (colour > threshold).any(axis=-1)
    return inside if alpha is None else inside & (alpha > 0)


def _read_mask_image(path: Path) -> np.ndarray:
    """(H, W) bool mask of one image; palette images count nonzero indices as inside."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode == "P" and "transparency" not in image.info:
                return np.asarray(image) > 0  # index 0 is the background (DAVIS-style)
            if image.mode in ("P", "CMYK", "YCbCr", "HSV", "LAB"):
                image = image.convert("RGBA")
            if image.mode == "1":
                image = image.convert("L")
            return _inside(np.asarray(image))
    except Image.DecompressionBombError as error:
        from .video import too_many_pixels

        raise UserError(f"cannot read mask image {path}: {too_many_pixels(error)}") from None
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise UserError(f"cannot read mask image {path}: {error}") from None


def _numbered_images(folder: Path) -> dict[int, Path]:
    """Frame number -> image file of ``folder``, the number being the stem's trailing digits."""
    numbered: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        match = re.search(r"(\d+)$", path.stem)
        if path.suffix.lower() not in IMAGE_SUFFIXES or not match or not path.is_file():
            continue
        number = int(match[1])
        if number in numbered:
            raise UserError(f"mask folder {folder} has two masks for frame {number}: {numbered[number].name} and {path.name}")
        numbered[number] = path
    if not numbered:
        raise UserError(f"mask folder {folder} holds no numbered images (expected 00000.png, 00001.png, ...)")
    return numbered


def _load_folder(folder: Path, frame_indices: list[int]) -> list[np.ndarray]:
    """Masks of ``frame_indices`` from a folder of numbered images."""
    numbered = _numbered_images(folder)
    missing = [i for i in frame_indices if i not in numbered]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UserError(f"mask folder {folder} has no mask for frame {missing[0]}{more}")
    return [_read_mask_image(numbered[i]) for i in frame_indices]


def _load_video(path: Path, frame_indices: list[int]) -> list[np.ndarray]:
    """Masks of ``frame_indices`` from a video; pixels above the codec noise are inside."""
    from videdit.video import read_clip

    try:
        clip = read_clip(path, frames=max(frame_indices) + 1)  # decoding stops there
    except UserError as error:
        raise UserError(f"cannot read mask video: {error}") from None
    except Exception as error:  # noqa: BLE001 - any decoder failure is a bad input file
        raise UserError(f"cannot read mask video {path}: {error}") from None
    position = {int(n): i for i, n in enumerate(clip.frame_indices)}
    missing = [i for i in frame_indices if i not in position]
    if missing:
        raise UserError(f"mask video {path} has no frame {missing[0]} (it has {len(clip.frames)} frames)")
    return [_inside(clip.frames[position[i]], VIDEO_THRESHOLD) for i in frame_indices]


def load_mask_source(source: str | Path, frame_indices: list[int], size: tuple[int, int]) -> np.ndarray:
    """(T, H, W) bool masks for the clip frames ``frame_indices`` at ``size`` = (width, height).

    ``source`` is a folder of images numbered by original frame number, a video (its frames
    ``frame_indices``), or one image used for every frame. Nonzero in any colour channel is
    inside (in videos, above a small threshold that ignores compression noise). Masks of
    another size are resized with nearest neighbour.
    """
    path = Path(source)
    width, height = size
    if not path.exists():
        raise UserError(f"mask {path} does not exist")
    frame_indices = [int(i) for i in frame_indices]
    if not frame_indices:
        return np.zeros((0, height, width), dtype=bool)
    if path.is_dir():
        masks = _load_folder(path, frame_indices)
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        masks = [_read_mask_image(path)] * len(frame_indices)
    else:
        masks = _load_video(path, frame_indices)
    out = np.zeros((len(frame_indices), height, width), dtype=bool)
    for t, mask in enumerate(masks):
        out[t] = resize_nearest(mask, height, width)
    return out


# ---------------------------------------------------------------------------------------
# Per resolution

def _as_bool(masks) -> np.ndarray:
    """Masks (numpy or torch, bool or float) as a numpy bool array; floats are inside above 0.5."""
    if isinstance(masks, torch.Tensor):
        masks = masks.detach().cpu().numpy()
    masks = np.asarray(masks)
    return masks if masks.dtype == bool else masks > 0.5


def masks_at_resolution(masks, size: tuple[int, int]) -> torch.Tensor:
    """(T, h, w) torch bool masks from (T, H, W) bool or float masks; ``size`` = (h, w)."""
    h, w = size
    return torch.from_numpy(np.ascontiguousarray(resize_nearest(_as_bool(masks), h, w)))


def region_ids(masks_list: list, size: tuple[int, int]) -> torch.Tensor:
    """(T, h*w) long: per position the index of its region, -1 outside all.

    Where regions overlap, the first in ``masks_list`` wins. Positions are row-major, as the
    tokens of a UNet attention layer at resolution (h, w).
    """
    if not masks_list:
        raise ValueError("region_ids needs at least one region mask")
    resized = [masks_at_resolution(m, size) for m in masks_list]
    frames = {m.shape[0] for m in resized}
    if len(frames) != 1:
        raise ValueError(f"region masks have different frame counts: {sorted(frames)}")
    ids = torch.full((resized[0].shape[0], size[0] * size[1]), -1, dtype=torch.long)
    for index, mask in enumerate(resized):
        free = (ids == -1) & mask.reshape(mask.shape[0], -1)
        ids[free] = index
    return ids


# ---------------------------------------------------------------------------------------
# Masks from attention maps, and pictures of masks

def _default_kernel(height: int, width: int) -> int:
    """Odd opening kernel of about 2.5% of the shorter side (1, no opening, below 40 px)."""
    return 2 * round(min(height, width) / 80) + 1


def clean_mask(prob_map, threshold: float = 0.3, kernel: int | None = None) -> np.ndarray:
    """(T, H, W) bool masks from (T, H, W) scores such as averaged cross-attention maps.

    Each frame is normalised to [0, 1] (min-max; a constant frame gives nothing), kept where
    >= ``threshold``, then opened (erode, dilate) with an elliptic ``kernel`` x ``kernel``
    element to drop specks; by default about 2.5% of the shorter side, so upsample small
    attention maps to frame or latent size first.
    """
    import cv2

    if isinstance(prob_map, torch.Tensor):
        prob_map = prob_map.detach().float().cpu().numpy()
    scores = np.nan_to_num(np.asarray(prob_map, dtype=np.float32))
    low = scores.min(axis=(1, 2), keepdims=True)
    span = scores.max(axis=(1, 2), keepdims=True) - low
    normalised = np.where(span > 0, (scores - low) / np.where(span > 0, span, 1), 0.0)
    masks = (normalised >= threshold) & (span > 0)
    size = kernel if kernel is not None else _default_kernel(*scores.shape[1:])
    if size <= 1:
        return masks
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    opened = [cv2.morphologyEx(m.astype(np.uint8), cv2.MORPH_OPEN, element) for m in masks]
    return np.stack(opened).astype(bool)


def paste_outside(edited: np.ndarray, source: np.ndarray, mask: np.ndarray, feather: int) -> np.ndarray:
    """The edit inside a region, the source's own pixels outside it: (T, H, W, 3) uint8.

    Latent blending keeps the source's latents outside a region, but the VAE decoder's receptive field
    carries the edit some pixels out, and its reconstruction error is everywhere. The composite
    x = w * edited + (1 - w) * source takes w = clip(d / feather, 0, 1), with d the distance of a pixel
    inside the region to its edge (0 outside): the source exactly outside the region, the edit fading
    in over ``feather`` px inside its edge (``feather`` 0: a hard edge).
    """
    import cv2

    out = np.empty_like(edited)
    for i, (e, s, m) in enumerate(zip(edited, source, mask)):
        inside = m.astype(np.uint8)
        w = (cv2.distanceTransform(inside, cv2.DIST_L2, 5) / feather).clip(0.0, 1.0) if feather > 0 else inside
        w = w.astype(np.float32)[..., None]
        out[i] = np.round(w * e + (1.0 - w) * s).astype(np.uint8)
    return out


_PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
            (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207), (127, 127, 127)]


def region_colour(index: int) -> tuple[int, int, int]:
    """A distinct RGB colour for region ``index`` (ten fixed ones, then golden-ratio hues)."""
    if index < len(_PALETTE):
        return _PALETTE[index]
    hue = (index * 0.618033988749895) % 1.0
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(hue, 0.75, 0.95))


def overlay_masks(frames: np.ndarray, masks: list, alpha: float = 0.45, names: list[str] | None = None) -> np.ndarray:
    """(T, H, W, 3) uint8 frames with each region tinted in its colour and outlined; with ``names``, a
    legend in the top-left corner (a swatch of each region's colour and its name).

    ``masks`` are (T, h, w) bool or float, resized to the frames with nearest neighbour;
    where regions overlap the first wins, as in `region_ids`.
    """
    import cv2

    frames = np.asarray(frames)
    t, h, w = frames.shape[:3]
    ids = region_ids(masks, (h, w)).reshape(t, h, w).numpy() if masks else np.full((t, h, w), -1)
    out = frames.astype(np.float32)
    thickness = max(1, min(h, w) // 200)
    for index in range(len(masks)):
        colour = np.array(region_colour(index), dtype=np.float32)
        inside = ids == index
        out[inside] = (1 - alpha) * out[inside] + alpha * colour
        for f in range(t):
            if inside[f].any():
                contours, _ = cv2.findContours(inside[f].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
                cv2.drawContours(out[f], contours, -1, tuple(float(c) for c in colour), thickness)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if names:
        draw_legend(out, [(name, region_colour(i)) for i, name in enumerate(names)])
    return out


def draw_legend(frames: np.ndarray, entries: list[tuple[str, tuple[int, int, int]]]) -> None:
    """Write a legend into every frame (in place): one line per entry, a colour swatch and its name,
    on a dark band so it reads over any picture."""
    import cv2

    h, w = frames.shape[1:3]
    scale = max(0.3, min(h, w) / 700)
    line = int(22 * scale) + 4
    width = min(w, int(scale * 14 * max(len(n) for n, _ in entries)) + line + 8)
    for f in range(len(frames)):
        frame = frames[f]
        band = frame[:line * len(entries) + 4, :width]
        band[:] = (band * 0.35).astype(np.uint8)
        for i, (name, colour) in enumerate(entries):
            y = 2 + i * line
            cv2.rectangle(frame, (4, y + 2), (4 + line - 6, y + line - 4), tuple(int(c) for c in colour), -1)
            cv2.putText(frame, name, (line + 2, y + line - 6), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                        1, cv2.LINE_AA)

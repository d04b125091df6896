"""Layered atlases of a clip without per-video training: build, cache, render, read and write.

``build_layers`` decomposes a clip into a background and a foreground layer (`videdit.atlas.mosaic`,
OpenCV only, seconds on a CPU) or reads them from a Neural Layered Atlas checkpoint
(`videdit.atlas.nla`); ``render`` re-composes every frame from the atlases, edited or not
(`videdit.atlas.layers`). This package imports no diffusion code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from videdit.errors import UserError

from .layers import Layer, Layers, load_npz, over, render, render_frame, sample, save_npz, write_layers
from .mosaic import MosaicSettings, build_mosaic

__all__ = ["Layer", "Layers", "MosaicSettings", "build_layers", "load_layers", "over", "read_alpha_masks",
           "render", "render_frame", "sample", "write_layers"]

log = logging.getLogger("videdit")

CACHE_VERSION = 1
BACKENDS = ("mosaic", "nla")


def read_alpha_masks(sources: list, frame_indices: list[int], size: tuple[int, int]) -> np.ndarray:
    """(N, T, H, W) bool: one foreground layer per source, each a folder of masks numbered by frame, a
    video or one image (as ``--region`` masks), or masks already made ((T, H, W) array at ``size``); a
    source without a mask for some frame of the clip stops with one line."""
    from videdit.masks import load_mask_source

    return np.stack([np.asarray(source, bool) if isinstance(source, np.ndarray)
                     else load_mask_source(source, frame_indices, size) for source in sources])


def cache_key(frames: np.ndarray, masks: np.ndarray | None, settings: MosaicSettings) -> str:
    """sha256 of what the layers depend on: frame content and size, masks and settings."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(frames).tobytes())
    if masks is not None:
        h.update(np.packbits(np.ascontiguousarray(masks)).tobytes())
    meta = dict(v=CACHE_VERSION, shape=list(frames.shape), masks=None if masks is None else list(masks.shape),
                settings=asdict(settings))
    h.update(json.dumps(meta, sort_keys=True).encode())
    return h.hexdigest()[:32]


def build_layers(frames: np.ndarray, masks: np.ndarray | None = None, fps: float = 8.0,
                 settings: MosaicSettings | None = None, use_cache: bool = True) -> Layers:
    """Mosaic layers of ``frames`` (T, H, W, 3) uint8, from the on-disk cache when built before.

    ``masks`` (T, H, W) bool give the foreground's alpha; without them it comes from motion.
    """
    from videdit.fsutil import cache_dir

    settings = settings or MosaicSettings()
    if masks is not None and masks.shape[-3:] != frames.shape[:3]:
        raise UserError(f"{masks.shape[-3]} masks of {masks.shape[-1]}x{masks.shape[-2]} for {len(frames)} frames "
                        f"of {frames.shape[2]}x{frames.shape[1]}")
    path = cache_dir() / "atlas" / f"{cache_key(frames, masks, settings)}.npz" if use_cache else None
    if path is not None and path.is_file():
        try:
            layers = load_npz(path)
            layers.fps = fps
            layers.info["from_cache"] = True
            log.info("atlas: layers loaded from cache %s", path)
            return layers
        except UserError:
            pass  # a cache file cut short or from another version: rebuild
    layers = build_mosaic(frames, masks, fps, settings)
    layers.info["from_cache"] = False
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}.npz")
            save_npz(layers, tmp)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("atlas cache not written (%s)", exc)
    return layers


def load_layers(folder: str | Path) -> Layers:
    """The layers a ``videdit atlas`` run wrote into ``folder``."""
    from .layers import MAPS_FILE

    path = Path(folder) / MAPS_FILE
    if not path.is_file():
        raise UserError(f"{folder} holds no {MAPS_FILE}: make it with 'videdit atlas CLIP -o {folder}'")
    return load_npz(path)

"""Frames on disk, one at a time: what keeps a long video out of memory."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import av
import cv2
import numpy as np

from ..errors import UserError
from ..fsutil import atomic_target
from ..video import VIDEO_FORMATS, check_output_path, frame_rate

STREAM_SUFFIXES = tuple(s for s in VIDEO_FORMATS if s != ".gif")


def check_stream_output(path, overwrite: bool) -> Path:
    """A `UserError` now unless ``path`` is a video file of a format written frame by frame (not GIF,
    whose palette needs the whole clip)."""
    target = check_output_path(path, overwrite)
    if target.suffix.lower() not in STREAM_SUFFIXES:
        raise UserError(f"{target}: long videos are written frame by frame; use one of {', '.join(STREAM_SUFFIXES)}")
    return target


def write_png(path: Path, frame: np.ndarray) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise UserError(f"cannot write {path}")


def read_png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"cannot read frame {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def frame_path(folder: Path, index: int) -> Path:
    return folder / f"{index:06d}.png"


def read_frames(folder: Path, start: int, stop: int) -> np.ndarray:
    return np.stack([read_png(frame_path(folder, i)) for i in range(start, stop)])


def encode_stream(path, frames: Iterable[np.ndarray], fps: float, overwrite: bool = False) -> Path:
    """Encode frames, as they come, into a new video at ``path`` (appears only when complete)."""
    target = check_stream_output(path, overwrite)
    container_format, codec, options = VIDEO_FORMATS[target.suffix.lower()]
    rate = frame_rate(fps, target)
    with atomic_target(target, overwrite) as temp:
        with av.open(str(temp), "w", format=container_format,
                     options={"movflags": "+faststart"} if container_format in ("mp4", "mov") else {}) as container:
            stream = None
            for index, pixels in enumerate(frames):
                if stream is None:
                    stream = container.add_stream(codec, rate=rate)
                    stream.height, stream.width = pixels.shape[:2]
                    stream.pix_fmt = "yuv444p" if codec == "libx264" and (pixels.shape[0] % 2 or pixels.shape[1] % 2) \
                        else "yuv420p"
                    stream.options = dict(options)
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
                frame.pts, frame.time_base = index, 1 / rate
                container.mux(stream.encode(frame))
            if stream is None:
                raise UserError(f"no frames to write to {target}")
            container.mux(stream.encode(None))
    return target


def iter_video(path, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """Frames of a video file one at a time (RGB uint8), resized to ``size`` (width, height) if given."""
    from ..video import _main_video_stream, _upright

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as error:
        raise UserError(f"cannot read video {path}: {getattr(error, 'strerror', None) or error}") from None
    with container:
        for frame in container.decode(_main_video_stream(container)):
            pixels = _upright(frame)
            if size is not None and (pixels.shape[1], pixels.shape[0]) != tuple(size):
                pixels = cv2.resize(pixels, tuple(size), interpolation=cv2.INTER_AREA
                                    if pixels.shape[1] > size[0] else cv2.INTER_CUBIC)
            yield pixels

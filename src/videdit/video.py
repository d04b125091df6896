"""Video input and output: files -> frames and frames -> files.

Frames are always `(T, H, W, 3)` uint8 RGB arrays. Reading accepts any container PyAV
opens (mp4, avi, mov, mkv, webm, gif, ...), a folder of frame images, or one image.
Writing picks the format from the suffix: .mp4/.mov/.mkv (H.264), .avi (MPEG-4 Part 2),
.webm (VP9), .gif, or a folder of PNG frames when the path has no suffix.

Frame rates travel as exact fractions where the format can store them, so 30000/1001
stays 30000/1001 through a read/write round trip.
"""

from __future__ import annotations

import operator
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator

import av
import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from videdit.errors import UserError
from videdit.fsutil import atomic_target, check_writable

DEFAULT_FPS = 8.0
"""Frame rate given to a single image or a folder of frames, which store none."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
"""Files read as still images (a `.gif` is read as a video)."""

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
"""Files taken from a folder of frames."""

# suffix -> (container format, codec, codec options). Outputs are often inputs of further
# editing, so quality stays near visually lossless (about 40 dB PSNR on the samples); x264's
# "veryfast" preset is 3-5x faster than "medium" for a slightly larger file at equal quality.
# mbtree (x264's macroblock-tree rate control) made the bundled libx264 encode identical frames into
# different bitstreams from one call to the next inside a long-lived process (decoded pixels off by up to
# 33 levels), so that two runs with one seed wrote different videos. Without it the output is
# bit-reproducible; at crf 17 the lost compression does not matter.
_X264 = {"crf": "17", "preset": "veryfast", "x264-params": "mbtree=0"}
VIDEO_FORMATS = {
    ".mp4": ("mp4", "libx264", _X264),
    ".mov": ("mov", "libx264", _X264),
    ".mkv": ("matroska", "libx264", _X264),
    ".avi": ("avi", "mpeg4", {"flags": "+qscale", "global_quality": str(2 * 118)}),  # qscale 2
    ".webm": ("webm", "libvpx-vp9", {"crf": "28", "b": "0", "row-mt": "1", "cpu-used": "5"}),
    ".gif": ("gif", "gif", {}),
}

# Rates a GIF (which stores delays in 1/100 s) is snapped back to, see `fps_from_timestamps`.
COMMON_RATES = tuple(Fraction(n) for n in range(1, 61)) + (
    Fraction(24000, 1001), Fraction(30000, 1001), Fraction(60000, 1001),
    Fraction(25, 2), Fraction(15, 2),
)


@dataclass
class Clip:
    """Frames of a video with the facts needed to write them back.

    frames: (T, H, W, 3) uint8 RGB at the size read.
    fps: frames per second of the source (selection by stride does not change it).
    frame_indices: original frame number of each selected frame.
    path: where the clip came from, if anywhere.
    """

    frames: np.ndarray
    fps: float
    frame_indices: list[int]
    path: str | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        return int(self.frames.shape[2]), int(self.frames.shape[1])


# ---------------------------------------------------------------- selection

def _check_selection(frames: int | None, stride: int, start: int, path: object) -> None:
    """Raise `UserError` for a frame selection that can never be valid."""
    try:
        values = [operator.index(v) for v in (stride, start) + (() if frames is None else (frames,))]
    except TypeError:
        raise UserError(f"frames, stride and start must be whole numbers (reading {path})") from None
    if values[0] < 1:
        raise UserError(f"stride must be at least 1, got {stride} (reading {path})")
    if values[1] < 0:
        raise UserError(f"start must be 0 or more, got {start} (reading {path})")
    if frames is not None and values[2] < 1:
        raise UserError(f"frames must be at least 1, got {frames} (reading {path})")


def select(items: Iterable, frames: int | None = None, stride: int = 1, start: int = 0) -> Iterator:
    """Yield `(index, item)` for items start, start+stride, ... (at most `frames` of them).

    Lazy: stops pulling from `items` as soon as the last wanted item is reached, so a
    decoder behind `items` decodes nothing past the selection.
    """
    stop = None if frames is None else start + stride * (frames - 1) + 1
    return islice(enumerate(items), start, stop, stride)


def _no_selection(path: object, total: int, frames: int | None, stride: int, start: int) -> UserError:
    return UserError(
        f"selection start={start} stride={stride} frames={frames} yields no frames "
        f"from {path}, which has {total} frame{'s' if total != 1 else ''}"
    )


# ------------------------------------------------------------------- images

def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read one image as (H, W, 3) uint8 RGB, upright according to its EXIF orientation."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            if image.mode.startswith("I"):  # 16- or 32-bit grey: keep the top 8 bits
                grey = np.asarray(image, dtype=np.uint32) >> (8 if image.mode.startswith("I;16") else 24)
                return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)
            return np.asarray(image.convert("RGB"))
    except Image.DecompressionBombError as error:
        raise UserError(f"cannot read image {path}: {too_many_pixels(error)}") from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or "not a readable image"
        raise UserError(f"cannot read image {path}: {reason}") from None


def too_many_pixels(error: Exception) -> str:
    """Why Pillow refused an image as a decompression bomb: the pixel count its header claims."""
    found = re.search(r"\((\d+) pixels\)", str(error))
    claimed = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
    return f"its header claims {claimed}, more than the {2 * Image.MAX_IMAGE_PIXELS:,} an image may have"


def _natural_key(name: str) -> list:
    """Sort key that orders frame2.png before frame10.png."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def frame_files(folder: str | os.PathLike) -> list[Path]:
    """Image files of a frame folder (png/jpg/jpeg/webp, hidden files skipped), by name."""
    files = [
        p for p in Path(folder).iterdir()
        if p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith(".") and p.is_file()
    ]
    return sorted(files, key=lambda p: _natural_key(p.name))


def _read_folder(folder: Path, frames: int | None, stride: int, start: int) -> Clip:
    files = frame_files(folder)
    if not files:
        raise UserError(f"no frames ({', '.join(s[1:] for s in FRAME_SUFFIXES)}) in folder {folder}")
    chosen = list(select(files, frames, stride, start))
    if not chosen:
        raise _no_selection(folder, len(files), frames, stride, start)
    images = [read_image(file) for _, file in chosen]
    for (_, file), image in zip(chosen, images):
        if image.shape != images[0].shape:
            raise UserError(
                f"frames differ in size in {folder}: {file.name} is {image.shape[1]}x{image.shape[0]}, "
                f"{chosen[0][1].name} is {images[0].shape[1]}x{images[0].shape[0]}"
            )
    return Clip(np.stack(images), DEFAULT_FPS, [i for i, _ in chosen], str(folder))


def _read_single_image(path: Path, frames: int | None, stride: int, start: int) -> Clip:
    if start > 0:
        raise _no_selection(path, 1, frames, stride, start)
    return Clip(read_image(path)[None], DEFAULT_FPS, [0], str(path))


# ------------------------------------------------------------------- videos

def fps_from_timestamps(timestamps: list[int], time_base: Fraction) -> Fraction | None:
    """Frame rate of frames shown at `timestamps` (ticks of `time_base`, consecutive frames).

    Formats with coarse clocks round the ideal timeline t_i = t_0 + i / fps to whole ticks:
    GIF counts in 1/100 s, so 8 fps is stored as delays 13, 12, 13, 12, ... The answer is
    a common rate (COMMON_RATES) whose ideal timeline lies within half a tick of every
    timestamp, if any does: the measured rate (frames - 1) / (t_last - t_0) itself if it is
    one, else the nearest whole rate, else the nearest other. Otherwise the measured rate.
    None for fewer than two distinct timestamps.
    """
    if len(timestamps) < 2 or timestamps[-1] == timestamps[0]:
        return None
    ticks = [t - timestamps[0] for t in timestamps]
    measured = Fraction(len(ticks) - 1) / (ticks[-1] * time_base)

    def fits(rate: Fraction) -> bool:
        return all(abs(t - i / (rate * time_base)) <= Fraction(1, 2) for i, t in enumerate(ticks))

    fitting = [rate for rate in COMMON_RATES if fits(rate)]

    def preference(rate: Fraction) -> tuple:
        return rate != measured, rate.denominator != 1, abs(rate - measured)

    return min(fitting, key=preference) if fitting else measured


def _stream_fps(stream: av.video.stream.VideoStream, timestamps: list[int], durations: list[int]) -> Fraction:
    """Frame rate of a decoded stream, exact where the container stores it."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if stream.codec_context.name == "gif" or not rate:
        if len(timestamps) == 1 and durations and durations[0]:
            timestamps = [timestamps[0], timestamps[0] + durations[0]]
        rate = fps_from_timestamps(timestamps, stream.time_base) or rate
    return Fraction(rate) if rate else Fraction(DEFAULT_FPS)


def _main_video_stream(container: av.container.InputContainer):
    """The first video stream that is not a cover picture, or None."""
    streams = list(container.streams.video)
    real = [s for s in streams if not s.disposition & av.stream.Disposition.attached_pic]
    return (real or streams or [None])[0]


def _upright(frame: av.VideoFrame) -> np.ndarray:
    """RGB pixels of a decoded frame, turned as its display matrix says (phone videos)."""
    pixels = frame.to_ndarray(format="rgb24")
    quarter_turns = round((frame.rotation or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(pixels, quarter_turns)) if quarter_turns else pixels


def _read_video(path: Path, frames: int | None, stride: int, start: int) -> Clip:
    try:
        container = av.open(str(path))
    except av.FFmpegError as error:
        raise UserError(f"not a video or image: {path} ({error.strerror or 'unreadable'})") from None
    with container:
        stream = _main_video_stream(container)
        if stream is None:
            raise UserError(f"video has no frames: {path} (no video stream)")
        stream.thread_type = "AUTO"
        timestamps: list[int] = []
        durations: list[int] = []  # one entry per decoded frame

        def decoded() -> Iterator[av.VideoFrame]:
            for frame in container.decode(stream):
                if frame.pts is not None:
                    timestamps.append(frame.pts)
                durations.append(frame.duration or 0)
                yield frame

        chosen, indices = [], []
        try:
            for index, frame in select(decoded(), frames, stride, start):
                chosen.append(_upright(frame))
                indices.append(index)
        except av.FFmpegError as error:
            raise UserError(f"cannot decode {path}: {error.strerror or 'corrupt data'}") from None
        if not durations:
            raise UserError(f"video has no frames: {path}")
        if not chosen:
            raise _no_selection(path, len(durations), frames, stride, start)
        fps = _stream_fps(stream, timestamps, durations)
    return Clip(np.stack(chosen), float(fps), indices, str(path))


def read_clip(path: str | os.PathLike, frames: int | None = None, stride: int = 1, start: int = 0) -> Clip:
    """Read frames start, start+stride, ... (at most `frames`, all if None) of a video.

    `path` is a video file (any container PyAV opens), a folder of frames (png/jpg/jpeg/webp,
    in natural name order) or one image (a one-frame clip). Images and folders get
    DEFAULT_FPS. Frames before `start` are decoded and skipped (exact frame numbers, no
    seeking); decoding stops as soon as the selection is complete. Fewer frames than asked
    are returned when the video ends first; none at all is a `UserError`.
    """
    path = Path(path).expanduser()
    _check_selection(frames, stride, start, path)
    if not path.exists():
        raise UserError(f"input not found: {path}")
    if path.is_dir():
        return _read_folder(path, frames, stride, start)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _read_single_image(path, frames, stride, start)
    return _read_video(path, frames, stride, start)


# ------------------------------------------------------------------- sizes

def _round_to(value: float, multiple: int) -> int:
    """`value` rounded to the nearest multiple of `multiple`, at least `multiple`."""
    return max(multiple, int(value / multiple + 0.5) * multiple)


def working_size(width: int, height: int, size: int = 512, multiple: int = 8) -> tuple[int, int]:
    """(width, height) with the long side scaled to `size`, aspect ratio kept.

    Both sides are rounded to the nearest multiple of `multiple` (the VAE downsamples by 8),
    so 960x506 becomes 512x272 and 506x960 becomes 272x512.
    """
    if width < 1 or height < 1:
        raise ValueError(f"width and height must be positive, got {width}x{height}")
    if multiple < 1 or size < multiple:
        raise UserError(f"size must be at least {max(multiple, 1)}, got {size}")
    scale = size / max(width, height)
    return _round_to(width * scale, multiple), _round_to(height * scale, multiple)


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize (T, H, W, C) frames (or one (H, W, C) image) to `size` = (width, height).

    Area averaging when shrinking (no aliasing), bicubic when enlarging.
    Frames already at `size` are returned as they are.
    """
    if frames.ndim == 3:
        return resize_frames(frames[None], size)[0]
    width, height = size
    if (frames.shape[2], frames.shape[1]) == (width, height):
        return frames
    shrinking = width * height < frames.shape[1] * frames.shape[2]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return np.stack([cv2.resize(frame, (width, height), interpolation=interpolation) for frame in frames])


def side_by_side(*clips: np.ndarray) -> np.ndarray:
    """Join clips of equal length left to right, each resized to the first one's height."""
    if not clips:
        raise ValueError("side_by_side needs at least one clip")
    length, height = clips[0].shape[0], clips[0].shape[1]
    parts = []
    for clip in clips:
        if clip.shape[0] != length:
            raise ValueError(f"clips differ in length: {clip.shape[0]} frames vs {length}")
        width = max(1, round(clip.shape[2] * height / clip.shape[1]))
        parts.append(resize_frames(clip, (width, height)))
    return np.concatenate(parts, axis=2)


# ------------------------------------------------------------------- writing

def check_output_path(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Raise `UserError` now, before any heavy work, if `write_video` could not write `path`.

    The suffix must be one of VIDEO_FORMATS, or none for a folder of frames; an existing
    output needs `overwrite`, and an existing folder is only replaced if it holds nothing
    but frame images.
    """
    target = Path(path).expanduser()
    if target.suffix and target.suffix.lower() not in VIDEO_FORMATS:
        known = ", ".join(VIDEO_FORMATS)
        raise UserError(f"cannot write {target.suffix} videos: {target} (use {known}, or no suffix for frames)")
    target = check_writable(target, overwrite)
    if target.is_dir() and not target.is_symlink():
        foreign = [p.name for p in target.iterdir() if p.suffix.lower() not in IMAGE_SUFFIXES or p.is_dir()]
        if foreign:
            raise UserError(f"refusing to replace folder {target}: it holds more than frames (e.g. {foreign[0]})")
    return target


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or 0 in frames.shape:
        raise ValueError(f"frames must be a non-empty (T, H, W, 3) uint8 array, got {frames.shape} {frames.dtype}")
    return frames


def frame_rate(fps: float | Fraction, path: object = None) -> Fraction:
    """`fps` as an exact fraction: 30000/1001 from 29.97002997..., 25/2 from 12.5."""
    if isinstance(fps, Fraction):
        rate = fps
    else:
        try:
            rate = Fraction(fps).limit_denominator(1001)
        except (TypeError, ValueError, OverflowError):
            raise UserError(f"fps must be a number, got {fps!r} (writing {path})") from None
    if rate <= 0:
        raise UserError(f"fps must be positive, got {fps} (writing {path})")
    return rate


def _gif_palette(frames: np.ndarray) -> Image.Image:
    """One 256-colour palette for the whole clip, from up to 16 frames (no palette flicker)."""
    sample = frames[:: max(1, len(frames) // 16)][:16]
    return Image.fromarray(np.concatenate(list(sample), axis=0)).quantize(256, method=Image.Quantize.MEDIANCUT)


def _gif_frames(frames: np.ndarray) -> Iterator[av.VideoFrame]:
    """pal8 frames sharing one palette, quantized by Pillow (better than a fixed palette).

    No dithering: dither noise changes from frame to frame and shimmers in a video.
    """
    palette_image = _gif_palette(frames)
    rgb = np.zeros((256, 3), np.uint8)
    colours = np.asarray(palette_image.getpalette()[: 256 * 3], np.uint8).reshape(-1, 3)
    rgb[: len(colours)] = colours
    argb = np.concatenate([np.full((256, 1), 255, np.uint8), rgb], axis=1)
    for pixels in frames:
        indexed = Image.fromarray(pixels).quantize(palette=palette_image, dither=Image.Dither.NONE)
        yield av.VideoFrame.from_ndarray((np.asarray(indexed), argb), format="pal8")


def _rgb_frames(frames: np.ndarray) -> Iterator[av.VideoFrame]:
    for pixels in frames:
        yield av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")


def _encode(path: Path, suffix: str, frames: np.ndarray, rate: Fraction) -> None:
    """Encode `frames` at `rate` into a new file at `path` in the format of `suffix`."""
    container_format, codec, options = VIDEO_FORMATS[suffix]
    height, width = frames.shape[1:3]
    container_options = {"movflags": "+faststart"} if container_format in ("mp4", "mov") else {}
    with av.open(str(path), "w", format=container_format, options=container_options) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = width, height
        if codec == "gif":
            stream.pix_fmt = "pal8"
        elif codec == "libx264" and (width % 2 or height % 2):
            stream.pix_fmt = "yuv444p"  # 4:2:0 needs even sizes; 4:4:4 keeps the exact size
        else:
            stream.pix_fmt = "yuv420p"
        stream.options = dict(options)
        source = _gif_frames(frames) if codec == "gif" else _rgb_frames(frames)
        for index, frame in enumerate(source):
            frame.pts = index
            frame.time_base = 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _write_frames(folder: Path, frames: np.ndarray) -> None:
    """Write frames as 00000.png, 00001.png, ... into a new folder."""
    folder.mkdir()
    for index, pixels in enumerate(frames):
        name = str(folder / f"{index:05d}.png")
        if not cv2.imwrite(name, cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 3]):
            raise OSError(f"could not write {name}")


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float | Fraction, overwrite: bool = False) -> Path:
    """Write (T, H, W, 3) uint8 RGB frames to `path` and return it as a `Path`.

    The suffix picks the format (VIDEO_FORMATS); no suffix writes a folder of PNG frames.
    Width, height and frame count are kept exactly (H.264 with an odd width or height is
    stored as yuv444p, which some players cannot show); the frame rate is kept exactly as a
    fraction, except in GIF, whose 1/100 s clock `read_clip` snaps back to common rates.
    The output appears only when complete; an existing one is replaced only if `overwrite`.
    """
    target = check_output_path(path, overwrite)
    frames = _check_frames(frames)
    rate = frame_rate(fps, target)
    suffix = target.suffix.lower()
    with atomic_target(target, overwrite) as temp:
        try:
            if suffix:
                _encode(temp, suffix, frames, rate)
            else:
                _write_frames(temp, frames)
        except (av.FFmpegError, OSError) as error:
            reason = getattr(error, "strerror", None) or str(error)
            raise UserError(f"cannot write {target}: {reason}") from None
    return target

"""Video input/output: round trips through every format, selection, sizes and user errors."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from videdit import video
from videdit.errors import UserError
from videdit.fsutil import atomic_target, check_writable
from videdit.video import (
    DEFAULT_FPS,
    Clip,
    fps_from_timestamps,
    read_clip,
    read_image,
    resize_frames,
    select,
    side_by_side,
    working_size,
    write_video,
)

VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "videos"
SAMPLES = sorted(VIDEOS.glob("*.mp4")) if VIDEOS.is_dir() else []
needs_samples = pytest.mark.skipif(not SAMPLES, reason=f"sample videos not found in {VIDEOS}")

# (width, height, fps, frames) as listed in the samples' README.
KNOWN = {
    "wolf.mp4": (512, 512, 20, 40),
    "woman-running.mp4": (512, 512, 20, 120),
    "trucks-race.mp4": (480, 480, 10, 32),
    "puff.mp4": (512, 512, 30, 65),
    "fox.mp4": (512, 512, 4, 8),
    "man-walking.mp4": (512, 512, 8, 16),
}


# ------------------------------------------------------------------ helpers

def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 arrays."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def synthetic(frames: int = 12, width: int = 96, height: int = 64) -> np.ndarray:
    """A smooth gradient with a coloured square moving across it."""
    y, x = np.mgrid[0:height, 0:width]
    clip = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        clip[t, ..., 0] = 40 + 150 * x / width
        clip[t, ..., 1] = 60 + 120 * y / height
        clip[t, ..., 2] = 90 + 8 * t
        left = 4 + 5 * t
        clip[t, height // 4 : height // 2, left : left + width // 5] = (230, 40, 30)
    return clip


def assert_user_error(error: pytest.ExceptionInfo, path: Path | str) -> None:
    """The message is one line and names the path."""
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message, message


def listing(folder: Path) -> list[str]:
    """Names in `folder`, hidden ones included (a leftover temporary file would show)."""
    return sorted(os.listdir(folder))


def write_raw(path: Path, frames: np.ndarray | None, rate: int = 8, rotation: int = 0) -> Path:
    """Write H.264 with PyAV directly (for inputs write_video would not make)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        container.start_encoding()
        for index, pixels in enumerate([] if frames is None else frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


# ------------------------------------------------------------- round trips

@needs_samples
@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_sample_round_trip(sample: Path, tmp_path: Path) -> None:
    clip = read_clip(sample)
    if sample.name in KNOWN:
        width, height, fps, count = KNOWN[sample.name]
        assert (clip.size, clip.fps, len(clip.frames)) == ((width, height), fps, count)
    assert clip.frames.dtype == np.uint8 and clip.frame_indices == list(range(len(clip.frames)))
    assert clip.path == str(sample)

    out = write_video(tmp_path / sample.name, clip.frames, clip.fps)
    back = read_clip(out)
    assert back.frames.shape == clip.frames.shape
    assert back.fps == clip.fps
    assert back.size == clip.size
    assert psnr(back.frames, clip.frames) > 30


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif"])
def test_container_round_trip(suffix: str, tmp_path: Path) -> None:
    frames = synthetic()
    fps = 8.0 if suffix == ".gif" else 30000 / 1001  # GIF counts in 1/100 s: 8 fps is stored as 12/13
    out = write_video(tmp_path / f"clip{suffix}", frames, fps)
    assert out == tmp_path / f"clip{suffix}" and out.is_file()
    back = read_clip(out)
    assert back.frames.shape == frames.shape
    assert back.fps == fps
    assert psnr(back.frames, frames) > 30
    assert listing(tmp_path) == [f"clip{suffix}"]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".avi", ".webm", ".gif"])
def test_odd_sizes_are_kept(suffix: str, tmp_path: Path) -> None:
    frames = synthetic(frames=5, width=63, height=47)
    back = read_clip(write_video(tmp_path / f"odd{suffix}", frames, 10))
    assert back.frames.shape == frames.shape
    assert psnr(back.frames, frames) > 30


@pytest.mark.parametrize("fps", [Fraction(24000, 1001), Fraction(30000, 1001), Fraction(60000, 1001), 12.5, 25, 1])
def test_frame_rate_is_exact(fps: float | Fraction, tmp_path: Path) -> None:
    back = read_clip(write_video(tmp_path / "rate.mp4", synthetic(frames=4), fps))
    assert Fraction(back.fps).limit_denominator(1001) == Fraction(fps)
    assert back.fps == float(fps)


def test_gif_rate_snaps_to_common_rates() -> None:
    centiseconds = Fraction(1, 100)
    eight = [round(i * 12.5 + 1e-9) for i in range(10)]  # 0, 13, 25, 38, ... as a GIF stores 8 fps
    assert fps_from_timestamps(eight, centiseconds) == 8
    steady = list(range(0, 93, 3))  # 3/100 s per frame is no common rate: measured as it is
    assert fps_from_timestamps(steady, centiseconds) == Fraction(100, 3)
    assert fps_from_timestamps([0, 10, 20], centiseconds) == 10
    assert fps_from_timestamps([0, 13], centiseconds) == 8  # one delay: the nearest whole rate that fits
    assert fps_from_timestamps([0, 8, 16], centiseconds) == Fraction(25, 2)  # exact, though 12 and 13 fit
    assert fps_from_timestamps([0, 4, 8], centiseconds) == 25
    assert fps_from_timestamps([5], centiseconds) is None


def test_frame_folder_round_trip(tmp_path: Path) -> None:
    frames = synthetic(frames=11)
    out = write_video(tmp_path / "frames", frames, 24)
    names = listing(out)
    assert names == [f"{i:05d}.png" for i in range(11)]
    back = read_clip(out)
    assert np.array_equal(back.frames, frames)  # PNG is lossless
    assert back.fps == DEFAULT_FPS and back.frame_indices == list(range(11))


def test_frame_folder_order_and_filter(tmp_path: Path) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    frames = synthetic(frames=3)
    for number, pixels in zip((2, 10, 1), frames):
        Image.fromarray(pixels).save(folder / f"frame{number}.png")
    (folder / "notes.txt").write_text("not a frame")
    Image.fromarray(frames[0]).save(folder / ".hidden.png")
    clip = read_clip(folder)
    assert len(clip.frames) == 3
    assert np.array_equal(clip.frames, frames[[2, 0, 1]])  # frame1, frame2, frame10


def test_frame_folder_with_jpeg_and_webp(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    frames = synthetic(frames=2)
    Image.fromarray(frames[0]).save(folder / "a.jpg", quality=95)
    Image.fromarray(frames[1]).save(folder / "b.webp", lossless=True)
    clip = read_clip(folder)
    assert clip.frames.shape == frames.shape
    assert psnr(clip.frames[0], frames[0]) > 30 and np.array_equal(clip.frames[1], frames[1])


def test_single_image(tmp_path: Path) -> None:
    pixels = synthetic(frames=1)[0]
    path = tmp_path / "still.png"
    Image.fromarray(pixels).save(path)
    clip = read_clip(path)
    assert clip.frames.shape == (1,) + pixels.shape
    assert np.array_equal(clip.frames[0], pixels)
    assert (clip.fps, clip.frame_indices, clip.size) == (DEFAULT_FPS, [0], (96, 64))
    assert np.array_equal(read_image(path), pixels)


@needs_samples
def test_sample_edited_frames_are_images() -> None:
    folder = VIDEOS / "man-walking-edited-first-frame"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    for path in sorted(folder.glob("*.png")):
        image = read_image(path)
        assert image.shape == (512, 512, 3) and image.dtype == np.uint8


def test_read_image_follows_exif_orientation(tmp_path: Path) -> None:
    pixels = synthetic(frames=1)[0]  # 96 wide, 64 high
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: turn 90 degrees clockwise to show
    path = tmp_path / "phone.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    assert read_image(path).shape == (96, 64, 3)


def test_rotated_video_is_read_upright(tmp_path: Path) -> None:
    frames = np.zeros((3, 32, 64, 3), np.uint8)
    frames[:, :8, :8] = 255  # a white mark in the stored top-left corner
    path = write_raw(tmp_path / "phone.mp4", frames, rotation=90)
    clip = read_clip(path)
    assert clip.size == (32, 64)  # shown turned a quarter counter-clockwise
    assert clip.frames[0, -4, 4].min() > 200 and clip.frames[0, 4, 4].max() < 60


# ---------------------------------------------------------------- selection

@needs_samples
@pytest.mark.parametrize(
    "frames, stride, start, expected",
    [
        (None, 1, 0, list(range(8))),
        (3, 1, 0, [0, 1, 2]),
        (None, 2, 0, [0, 2, 4, 6]),
        (2, 3, 1, [1, 4]),
        (None, 1, 5, [5, 6, 7]),
        (10, 2, 3, [3, 5, 7]),  # fewer than asked: the video ends first
        (1, 5, 7, [7]),
    ],
)
def test_selection(frames: int | None, stride: int, start: int, expected: list[int]) -> None:
    path = VIDEOS / "fox.mp4"
    everything = read_clip(path)
    clip = read_clip(path, frames=frames, stride=stride, start=start)
    assert clip.frame_indices == expected
    assert np.array_equal(clip.frames, everything.frames[expected])
    assert clip.fps == everything.fps


def test_selection_in_a_folder(tmp_path: Path) -> None:
    frames = synthetic(frames=7)
    folder = write_video(tmp_path / "frames", frames, 8)
    clip = read_clip(folder, frames=2, stride=3, start=1)
    assert clip.frame_indices == [1, 4]
    assert np.array_equal(clip.frames, frames[[1, 4]])


def test_selection_stops_pulling_when_complete() -> None:
    pulled = []

    def items():
        for i in range(100):
            pulled.append(i)
            yield i

    assert list(select(items(), frames=3, stride=2, start=4)) == [(4, 4), (6, 6), (8, 8)]
    assert pulled == list(range(9))  # nothing decoded past frame 8


# ------------------------------------------------------------------- sizes

@pytest.mark.parametrize(
    "width, height, size, expected",
    [
        (512, 512, 512, (512, 512)),
        (960, 506, 512, (512, 272)),
        (506, 960, 512, (272, 512)),
        (1920, 1080, 512, (512, 288)),
        (1080, 1920, 768, (432, 768)),
        (256, 128, 512, (512, 256)),  # small clips are enlarged
        (1000, 3, 512, (512, 8)),  # never below one multiple
        (640, 480, 500, (504, 376)),  # size itself is rounded to the nearest multiple
    ],
)
def test_working_size(width: int, height: int, size: int, expected: tuple[int, int]) -> None:
    assert working_size(width, height, size) == expected


def test_working_size_keeps_aspect_and_multiples() -> None:
    for width in range(40, 2000, 37):
        for height in range(40, 2000, 53):
            w, h = working_size(width, height)
            assert w % 8 == 0 and h % 8 == 0 and max(w, h) == 512
            assert abs(w / h - width / height) <= (width / height) * (8 / min(w, h)) + 1e-9


def test_working_size_rejects_tiny_size() -> None:
    with pytest.raises(UserError):
        working_size(640, 480, size=4)


def test_resize_frames() -> None:
    frames = synthetic(frames=3)
    small = resize_frames(frames, (48, 32))
    assert small.shape == (3, 32, 48, 3) and small.dtype == np.uint8
    assert np.array_equal(small[1], cv2.resize(frames[1], (48, 32), interpolation=cv2.INTER_AREA))
    large = resize_frames(frames, (192, 128))
    assert np.array_equal(large[2], cv2.resize(frames[2], (192, 128), interpolation=cv2.INTER_CUBIC))
    assert resize_frames(frames, (96, 64)) is frames
    assert resize_frames(frames[0], (48, 32)).shape == (32, 48, 3)


def test_side_by_side() -> None:
    a = synthetic(frames=4, width=96, height=64)
    b = synthetic(frames=4, width=64, height=128)
    joined = side_by_side(a, b, a)
    assert joined.shape == (4, 64, 96 + 32 + 96, 3)
    assert np.array_equal(joined[:, :, :96], a)
    with pytest.raises(ValueError):
        side_by_side(a, b[:2])


def test_clip_size() -> None:
    clip = Clip(np.zeros((2, 10, 30, 3), np.uint8), 8.0, [0, 1])
    assert clip.size == (30, 10) and clip.path is None


# ------------------------------------------------------------------ errors

def test_missing_path(tmp_path: Path) -> None:
    for reader in (read_clip, read_image):
        with pytest.raises(UserError) as error:
            reader(tmp_path / "nowhere.mp4")
        assert_user_error(error, tmp_path / "nowhere.mp4")


def test_random_bytes_are_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(UserError) as error:
        read_clip(path)
    assert_user_error(error, path)


def test_garbage_image(tmp_path: Path) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(b"not a png at all")
    for reader in (read_clip, read_image):
        with pytest.raises(UserError) as error:
            reader(path)
        assert_user_error(error, path)


def test_video_without_frames(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "empty.avi", None)  # a video stream with no frames
    with pytest.raises(UserError, match="no frames") as error:
        read_clip(path)
    assert_user_error(error, path)


def test_file_without_video_stream(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "empty.mp4", None)  # mp4 drops the empty track
    with pytest.raises(UserError, match="no frames") as error:
        read_clip(path)
    assert_user_error(error, path)


def test_folder_without_frames(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no frames here")
    with pytest.raises(UserError) as error:
        read_clip(tmp_path)
    assert_user_error(error, tmp_path)


def test_folder_with_frames_of_different_sizes(tmp_path: Path) -> None:
    Image.fromarray(synthetic(frames=1)[0]).save(tmp_path / "0.png")
    Image.fromarray(synthetic(frames=1, width=32)[0]).save(tmp_path / "1.png")
    with pytest.raises(UserError) as error:
        read_clip(tmp_path)
    assert_user_error(error, tmp_path)


@needs_samples
@pytest.mark.parametrize(
    "selection",
    [dict(stride=0), dict(start=-1), dict(frames=0), dict(frames=-2), dict(start=8), dict(stride=1.5)],
    ids=str,
)
def test_bad_selection(selection: dict) -> None:
    path = VIDEOS / "fox.mp4"  # 8 frames
    with pytest.raises(UserError) as error:
        read_clip(path, **selection)
    assert_user_error(error, path)


def test_bad_selection_of_images(tmp_path: Path) -> None:
    image = tmp_path / "one.png"
    Image.fromarray(synthetic(frames=1)[0]).save(image)
    folder = write_video(tmp_path / "frames", synthetic(frames=3), 8)
    for path, selection in ((image, dict(start=1)), (folder, dict(start=3)), (folder, dict(stride=0))):
        with pytest.raises(UserError) as error:
            read_clip(path, **selection)
        assert_user_error(error, path)


@pytest.mark.parametrize("name", ["out.mp4", "out.gif", "frames"])
def test_existing_output_needs_overwrite(name: str, tmp_path: Path) -> None:
    target = write_video(tmp_path / name, synthetic(frames=2), 8)
    before = listing(tmp_path)
    stamp = target.stat().st_mtime_ns
    with pytest.raises(UserError) as error:
        write_video(target, synthetic(frames=5), 8)
    assert_user_error(error, target)
    assert listing(tmp_path) == before and target.stat().st_mtime_ns == stamp
    write_video(target, synthetic(frames=5), 8, overwrite=True)
    assert len(read_clip(target).frames) == 5
    assert listing(tmp_path) == before


def test_overwrite_swaps_file_and_folder(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.write_bytes(b"an old file")
    write_video(target, synthetic(frames=2), 8, overwrite=True)
    assert target.is_dir() and len(read_clip(target).frames) == 2
    assert listing(tmp_path) == ["out"]


def test_overwrite_never_replaces_a_folder_of_other_things(tmp_path: Path) -> None:
    target = tmp_path / "documents"
    target.mkdir()
    (target / "thesis.txt").write_text("precious")
    with pytest.raises(UserError) as error:
        write_video(target, synthetic(frames=2), 8, overwrite=True)
    assert_user_error(error, target)
    assert (target / "thesis.txt").read_text() == "precious"


def test_unwritable_output_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    target = blocker / "sub" / "out.mp4"  # its folder can never be created
    with pytest.raises(UserError) as error:
        write_video(target, synthetic(frames=2), 8)
    assert_user_error(error, target.parent)
    assert listing(tmp_path) == ["a-file"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="permissions do not bind root")
def test_read_only_output_folder(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(UserError) as error:
            write_video(folder / "out.mp4", synthetic(frames=2), 8)
        assert_user_error(error, folder)
        assert listing(folder) == []
    finally:
        folder.chmod(0o700)


def test_unknown_output_format(tmp_path: Path) -> None:
    target = tmp_path / "out.xyz"
    with pytest.raises(UserError) as error:
        write_video(target, synthetic(frames=2), 8)
    assert_user_error(error, target)
    assert listing(tmp_path) == []


@pytest.mark.parametrize("fps", [0, -5, float("nan")])
def test_bad_frame_rate(fps: float, tmp_path: Path) -> None:
    with pytest.raises(UserError) as error:
        write_video(tmp_path / "out.mp4", synthetic(frames=2), fps)
    assert_user_error(error, tmp_path / "out.mp4")
    assert listing(tmp_path) == []


def test_bad_frames_array(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_video(tmp_path / "out.mp4", synthetic(frames=2).astype(np.float32), 8)
    assert listing(tmp_path) == []


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def half_written(path, *args):
        Path(path).write_bytes(b"half a video")
        raise OSError("disk full")

    monkeypatch.setattr(video, "_encode", half_written)
    target = tmp_path / "new" / "deeper" / "out.mp4"
    with pytest.raises(UserError) as error:
        write_video(target, synthetic(frames=2), 8)
    assert_user_error(error, target)
    assert listing(tmp_path) == []  # temporary file and new folders are gone


def test_interrupted_write_keeps_old_output(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_target(target, overwrite=True) as temp:
            assert temp.parent == tmp_path and temp.suffix == ".mp4" and not temp.exists()
            temp.write_bytes(b"new")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old" and listing(tmp_path) == ["out.mp4"]


def test_check_writable(tmp_path: Path) -> None:
    assert check_writable(tmp_path / "a" / "b" / "out.mp4") == tmp_path / "a" / "b" / "out.mp4"
    assert listing(tmp_path) == []  # checking creates nothing
    (tmp_path / "x.mp4").write_bytes(b"")
    with pytest.raises(UserError):
        check_writable(tmp_path / "x.mp4")
    assert check_writable(tmp_path / "x.mp4", overwrite=True) == tmp_path / "x.mp4"

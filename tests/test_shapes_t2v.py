"""shapes-t2v, the shipped ShapesWorld text-to-video model: a long video that keeps its object and scene."""

from __future__ import annotations

import numpy as np
import pytest

from videdit.shapes import weights_path

pytestmark = pytest.mark.usefixtures("one_thread")
T2V = weights_path("shapes-t2v")


@pytest.fixture(scope="module")
def model():
    if not (T2V / "model_index.json").is_file():
        pytest.skip(f"shapes-t2v is not shipped ({T2V} has no model_index.json)")
    from videdit.generate.t2v import load_t2v

    return load_t2v("shapes-t2v", device="cpu", dtype="fp32")


def test_free_streaming_keeps_the_object_and_the_scene_across_chunks(tmp_path, model):
    """32 frames (3 chunks) of "a blue square on sky" with free conditioning: the oracle finds frame 0's
    object in every frame and the sky everywhere, and no chunk border is a scene cut. (A tuning caption,
    not one of benchmarks/generate_shapes.py's five.)"""
    from videdit import metrics
    from videdit.generate.options import GenerateOptions
    from videdit.generate.stream import generate
    from videdit.shapes.judge import locate
    from videdit.video import read_clip

    opts = GenerateOptions(prompt="a blue square on sky", model="shapes-t2v", frames=32, steps=10,
                           conditioning="free", progress=False)
    frames = read_clip(generate(opts, tmp_path / "long.mp4", model=model)).frames
    readings = [locate(f) for f in frames]
    first = max(readings[0][0], key=lambda f: f.area)
    assert (first.colour, first.shape) == ("blue", "square")
    kept = [any((f.colour, f.shape) == ("blue", "square") for f in found) for found, _ in readings]
    assert np.mean(kept) >= 0.9, kept
    assert all(bg == "sky" for _, bg in readings)
    assert metrics.scene_cuts(frames, min_scene_len=8).value == 0


def test_auto_conditioning_is_free_and_cam_still_loads(model):
    """shapes-t2v's CAM lost the object where free kept it (README), so its streaming config makes auto pick
    free; --conditioning cam loads the modules."""
    from videdit.generate.options import GenerateOptions
    from videdit.generate.stream import load_streaming

    assert load_streaming(model, GenerateOptions(model="shapes-t2v")) == ("free", (None, None))
    conditioning, (cam, apm) = load_streaming(model, GenerateOptions(model="shapes-t2v", conditioning="cam"))
    assert conditioning == "cam" and cam.cond_frames == 8 and apm is not None

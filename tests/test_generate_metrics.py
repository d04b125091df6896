"""Metrics for generated video: MAWE's forward splat as StreamingT2V's released code computes it."""

from __future__ import annotations

import numpy as np

from videdit import metrics as M


def test_splat_warp_error_follows_the_rounded_flow_over_reached_pixels():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    b = np.zeros_like(a)
    b[:, 2:] = a[:, :-2]  # a moved 2 px right; b's first two columns are new content
    flow = np.zeros((6, 8, 2), np.float32)
    flow[..., 0] = 1.6  # rounds to 2
    assert M.splat_warp_error(a, b, flow) == 0.0  # the unreached columns 0-1 do not count
    b[:, :2] = 255
    assert M.splat_warp_error(a, b, flow) == 0.0
    flow[..., 0] = 100.0  # nothing lands inside: every pixel counts, against zeros
    assert M.splat_warp_error(a, b, flow) == float(np.mean(b.astype(float) ** 2))
    # two pixels landing on one: the later (row-major) one wins, as numpy's and the released code's scatter
    flow[...] = 0
    flow[0, 1, 0] = -1.0
    expected = np.zeros((6, 8, 3))
    expected[:] = a
    expected[0, 0] = a[0, 1]
    expected[0, 1] = 0  # reached by nobody: left out
    reached = np.ones((6, 8), bool)
    reached[0, 1] = False
    assert np.isclose(M.splat_warp_error(a, a, flow), ((a.astype(float) - expected) ** 2)[reached].mean())


def test_mawe_splat_and_backward_are_named_variants():
    frames = np.zeros((4, 32, 32, 3), np.uint8)
    for t in range(4):
        frames[t, 10:20, 5 + 3 * t:15 + 3 * t] = 200
    splat, backward = M.mawe(frames, size=None), M.mawe(frames, size=None, warp="backward")
    assert splat.variant["warp"] == "splat" and backward.variant["warp"] == "backward"
    assert np.isfinite(splat.value) and len(splat.detail["per_pair"]) == 3

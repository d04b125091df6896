"""NLA checkpoints: a folder in the published layout, built from random weights of the published sizes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from videdit.atlas import render
from videdit.atlas.nla import build_nla
from videdit.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")

# (in, out) of each linear layer: mappings without positional encoding, the atlas with 10
# frequencies on (u, v) (40 inputs) taken again before layers 4 and 7, alpha with 5 on (x, y, t)
SIZES = {
    "model_F_mapping1_state_dict": [(3, 256)] + [(256, 256)] * 4 + [(256, 2)],
    "model_F_mapping2_state_dict": [(3, 256)] + [(256, 256)] * 2 + [(256, 2)],
    "model_F_atlas_state_dict": [(40, 256), (256, 256), (256, 256), (256, 256), (296, 256), (256, 256), (256, 256),
                                 (296, 3)],
    "model_F_alpha_state_dict": [(30, 256)] + [(256, 256)] * 6 + [(256, 1)],
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nla")
    g = torch.Generator().manual_seed(0)
    state = {key: {f"hidden.{i}.{p}": (torch.randn((o, n) if p == "weight" else (o,), generator=g) / np.sqrt(n))
                   for i, (n, o) in enumerate(shapes) for p in ("weight", "bias")}
             for key, shapes in SIZES.items()}
    state["model_F_atlas_state_dict"]["hidden.0.weight"] /= 4  # a smoother atlas
    torch.save(state, folder / "checkpoint")
    (folder / "config.json").write_text(json.dumps({"resx": 40, "resy": 30, "maximum_number_of_frames": 10}))
    return folder, state


def reference_mlp(state: dict, x: np.ndarray, frequencies: int, skips: tuple[int, ...]) -> np.ndarray:
    """The published forward pass written out for one point: gamma(x) per frequency sin then cos."""
    if frequencies:
        enc = []
        for j in range(frequencies):
            enc += [np.sin(2**j * np.pi * v) for v in x] + [np.cos(2**j * np.pi * v) for v in x]
        x = np.array(enc)
    h, first = x, x
    n = len([k for k in state if k.endswith(".weight")])
    for i in range(n):
        if i > 0:
            h = np.maximum(h, 0)
        if i in skips:
            h = np.concatenate([h, first])
        h = state[f"hidden.{i}.weight"].double().numpy() @ h + state[f"hidden.{i}.bias"].double().numpy()
    return np.tanh(h)


def test_pickle_is_refused_without_allow_pickle(checkpoint):
    with pytest.raises(UserError, match="--allow-pickle"):
        build_nla(checkpoint[0], 4, (20, 15), 10.0)


@pytest.mark.parametrize("n_frames", [3, 17])
def test_checkpoint_loads_and_renders_any_frame_count(checkpoint, n_frames):
    folder, state = checkpoint
    layers = build_nla(folder, n_frames, (20, 15), 10.0, allow_pickle=True, texels=24)
    assert layers.frames == n_frames and layers.size == (20, 15)
    frames = render(layers)
    assert frames.shape == (n_frames, 15, 20, 3)
    # one pixel by the published conventions, computed independently
    t, y, x = n_frames - 1, 7, 13
    xs, ys = (x + 0.5) * 40 / 20 - 0.5, (y + 0.5) * 30 / 15 - 0.5
    tt = t * 9 / (n_frames - 1)
    xyt = np.array([xs / 20 - 1, ys / 20 - 1, tt / 5 - 1])
    uv_fg = 0.5 * reference_mlp(state["model_F_mapping1_state_dict"], xyt, 0, ()) + 0.5
    uv_bg = 0.5 * reference_mlp(state["model_F_mapping2_state_dict"], xyt, 0, ()) - 0.5
    alpha = 0.99 * (reference_mlp(state["model_F_alpha_state_dict"], xyt, 5, ())[0] + 1) / 2 + 0.001
    assert layers.foregrounds[0].alpha[t, y, x] == pytest.approx(alpha, abs=1e-5)
    for layer, uv in ((layers.background, uv_bg), (layers.foregrounds[0], uv_fg)):
        px = layer.uv[t, y, x]
        texel = np.rint(px).astype(int)
        atlas_uv = uv + (texel - px) / 24  # the atlas coordinate of the nearest texel
        rgb = (reference_mlp(state["model_F_atlas_state_dict"], atlas_uv, 10, (4, 7)) + 1) / 2 * 255
        assert np.abs(layer.atlas[texel[1], texel[0]].astype(float) - rgb).max() <= 1.0


def test_missing_files_and_keys_are_one_line_errors(tmp_path, checkpoint):
    with pytest.raises(UserError, match="not an NLA checkpoint folder"):
        build_nla(tmp_path, 2, (8, 8), 8.0, allow_pickle=True)
    folder, state = checkpoint
    broken = tmp_path / "broken"
    broken.mkdir()
    torch.save({k: v for k, v in state.items() if k != "model_F_alpha_state_dict"}, broken / "checkpoint")
    (broken / "config.json").write_text(json.dumps({"resx": 40, "resy": 30, "number_of_frames": 10}))
    with pytest.raises(UserError, match="model_F_alpha_state_dict"):
        build_nla(broken, 2, (8, 8), 8.0, allow_pickle=True)

"""Layers from a Neural Layered Atlas checkpoint (Kasten et al., "Layered Neural Atlases for
Consistent Video Editing", SIGGRAPH Asia 2021), as StableVideo's and Text2LIVE's data folders hold them.

A folder holds ``checkpoint`` (a torch pickle) and ``config.json`` (``resx``, ``resy``,
``maximum_number_of_frames`` or ``number_of_frames``). The checkpoint's four MLPs (linear layers
``hidden.{i}.weight/bias``, ReLU between layers, tanh after the last):

- ``model_F_mapping1_state_dict``: foreground mapping (x, y, t) -> uv, no positional encoding;
- ``model_F_mapping2_state_dict``: background mapping (x, y, t) -> uv, no positional encoding;
- ``model_F_atlas_state_dict``: the atlas uv -> RGB shared by both layers, positional encoding with
  10 frequencies, the encoded input concatenated again before layers 4 and 7;
- ``model_F_alpha_state_dict``: (x, y, t) -> alpha, positional encoding with 5 frequencies.

Layer sizes and the layers that take the input again are read from the weights' shapes, so
variants load as long as they keep this layout. Coordinates (sec. 3 of the paper; the released
data's conventions): x' = x / (max(W, H) / 2) - 1, y' likewise, t' = t / (T / 2) - 1; the
foreground reads the atlas at 0.5 uv + 0.5 (in [0, 1]^2), the background at 0.5 uv - 0.5 (in
[-1, 0]^2); RGB = (o + 1) / 2; alpha = 0.99 (o + 1) / 2 + 0.001. t is continuous, so any number
of frames renders. Atlas images are the atlas MLP on a grid over the uv range the frames use.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from videdit.errors import UserError

from .layers import Layer, Layers

KEYS = {"fg_mapping": "model_F_mapping1_state_dict", "bg_mapping": "model_F_mapping2_state_dict",
        "atlas": "model_F_atlas_state_dict", "alpha": "model_F_alpha_state_dict"}
FREQUENCIES = {"fg_mapping": 0, "bg_mapping": 0, "atlas": 10, "alpha": 5}
CHUNK = 1 << 16  # points per MLP call


def positional_encoding(x: torch.Tensor, frequencies: int) -> torch.Tensor:
    """gamma(x) for (N, D) x: per frequency b_j = 2^j pi (j < ``frequencies``) the D values sin(b_j x),
    then the D values cos(b_j x): (N, 2 D frequencies), in the order the published weights expect."""
    b = (2.0 ** torch.arange(frequencies, dtype=x.dtype, device=x.device)) * np.pi
    projected = x[:, :, None] * b  # (N, D, F)
    return torch.cat([projected.sin(), projected.cos()], dim=1).transpose(1, 2).reshape(len(x), -1)


class AtlasMLP(torch.nn.Module):
    """h_0 = gamma(x) (or x); h_{i+1} = W_i [h_i, gamma(x) if i is a skip layer] + b_i, ReLU between
    layers, tanh after the last."""

    def __init__(self, shapes: list[tuple[int, int]], skips: set[int], frequencies: int):
        super().__init__()
        self.hidden = torch.nn.ModuleList(torch.nn.Linear(i, o) for o, i in shapes)
        self.skips = skips
        self.frequencies = frequencies

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        encoded = positional_encoding(x, self.frequencies) if self.frequencies else x
        h = encoded
        for i, layer in enumerate(self.hidden):
            if i > 0:
                h = torch.relu(h)
            if i in self.skips:
                h = torch.cat([h, encoded], dim=1)
            h = layer(h)
        return torch.tanh(h)


def mlp_from_state(state: dict, frequencies: int, input_dim: int, what: str) -> AtlasMLP:
    """An `AtlasMLP` with the layer sizes of ``state`` (``hidden.{i}.weight/bias``)."""
    indices = sorted({int(m[1]) for k in state if (m := re.match(r"hidden\.(\d+)\.weight$", k))})
    if not indices or indices != list(range(len(indices))):
        raise UserError(f"NLA checkpoint: {what} has no hidden.0 ... hidden.N linear layers")
    shapes = [tuple(state[f"hidden.{i}.weight"].shape) for i in indices]
    encoded = 2 * input_dim * frequencies if frequencies else input_dim
    if shapes[0][1] != encoded:
        raise UserError(f"NLA checkpoint: {what} takes {shapes[0][1]} inputs; expected {encoded}")
    skips = {i for i in indices[1:] if shapes[i][1] == shapes[i - 1][0] + encoded}
    mlp = AtlasMLP(shapes, skips, frequencies)
    mlp.load_state_dict({k: v for k, v in state.items() if k.startswith("hidden.")})
    return mlp.eval()


def read_checkpoint(folder: str | Path, allow_pickle: bool = False) -> tuple[dict[str, AtlasMLP], dict]:
    """The four MLPs and config.json of an NLA folder; the pickle is opened only with ``allow_pickle``."""
    folder = Path(folder)
    ckpt, config_path = folder / "checkpoint", folder / "config.json"
    if not ckpt.is_file() or not config_path.is_file():
        raise UserError(f"{folder} is not an NLA checkpoint folder: it needs 'checkpoint' and 'config.json'")
    if not allow_pickle:
        raise UserError(f"{ckpt} is a pickle file, and unpickling runs code: pass --allow-pickle to load it")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        frames = config.get("maximum_number_of_frames", config.get("number_of_frames"))
        config = dict(resx=int(config["resx"]), resy=int(config["resy"]), frames=int(frames))
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{config_path} needs resx, resy and maximum_number_of_frames or number_of_frames") from None
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - any unreadable file is a bad input
        raise UserError(f"cannot read NLA checkpoint {ckpt}: {error}") from None
    missing = [k for k in KEYS.values() if k not in state]
    if missing:
        raise UserError(f"NLA checkpoint {ckpt} lacks {', '.join(missing)}")
    inputs = {"fg_mapping": 3, "bg_mapping": 3, "atlas": 2, "alpha": 3}
    mlps = {name: mlp_from_state(state[key], FREQUENCIES[name], inputs[name], key) for name, key in KEYS.items()}
    return mlps, config


@torch.no_grad()
def _apply(mlp: AtlasMLP, points: np.ndarray) -> np.ndarray:
    out = [mlp(torch.from_numpy(points[i:i + CHUNK]).float()).numpy() for i in range(0, len(points), CHUNK)]
    return np.concatenate(out) if out else np.zeros((0, mlp.hidden[-1].out_features), np.float32)


def normalised_coordinates(n_frames: int, size: tuple[int, int], config: dict) -> np.ndarray:
    """(T, H, W, 3) (x', y', t') of every output pixel, the output grid laid over the checkpoint's
    resx x resy frames and its frames spread over the checkpoint's time span."""
    width, height = size
    resx, resy, T = config["resx"], config["resy"], config["frames"]
    half = max(resx, resy) / 2
    xs = ((np.arange(width) + 0.5) * resx / width - 0.5) / half - 1
    ys = ((np.arange(height) + 0.5) * resy / height - 0.5) / half - 1
    ts = (np.linspace(0, T - 1, n_frames) if n_frames > 1 else np.zeros(1)) / (T / 2) - 1
    t, y, x = np.meshgrid(ts, ys, xs, indexing="ij")
    return np.stack([x, y, t], -1).astype(np.float32)


def atlas_image(mlp: AtlasMLP, low: np.ndarray, high: np.ndarray, texels: int) -> np.ndarray:
    """The atlas MLP on a grid over [low, high] (atlas input coordinates), ``texels`` per unit: uint8 RGB."""
    width = max(2, int(np.ceil((high[0] - low[0]) * texels)) + 1)
    height = max(2, int(np.ceil((high[1] - low[1]) * texels)) + 1)
    v, u = np.meshgrid(low[1] + np.arange(height) / texels, low[0] + np.arange(width) / texels, indexing="ij")
    rgb = (_apply(mlp, np.stack([u, v], -1).reshape(-1, 2)) + 1) / 2
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8).reshape(height, width, 3)


def build_nla(folder: str | Path, n_frames: int, size: tuple[int, int], fps: float, allow_pickle: bool = False,
              texels: int = 1000) -> Layers:
    """Layers of ``n_frames`` frames at ``size`` = (width, height) from an NLA checkpoint folder."""
    mlps, config = read_checkpoint(folder, allow_pickle)
    width, height = size
    xyt = normalised_coordinates(n_frames, size, config).reshape(-1, 3)
    alpha = (0.99 * (_apply(mlps["alpha"], xyt)[:, 0] + 1) / 2 + 0.001).reshape(n_frames, height, width)
    layers = []
    for name, offset in (("bg_mapping", -0.5), ("fg_mapping", 0.5)):
        uv = 0.5 * _apply(mlps[name], xyt) + offset  # atlas input coordinates
        used = uv if name == "bg_mapping" else uv[alpha.reshape(-1) > 0.5]
        used = used if len(used) else uv
        low, high = used.min(0), used.max(0)
        atlas = atlas_image(mlps["atlas"], low, high, texels)
        pixels = ((uv - low) * texels).astype(np.float32).reshape(n_frames, height, width, 2)
        seen = np.ones(atlas.shape[:2], bool)
        layers.append(Layer("background" if name == "bg_mapping" else "foreground", atlas, seen, pixels,
                            None if name == "bg_mapping" else alpha.astype(np.float32)))
    info = dict(checkpoint=str(folder), checkpoint_frames=config["frames"], resx=config["resx"], resy=config["resy"],
                texels_per_unit=texels)
    return Layers(layers[0], layers[1:], fps, "nla", info)

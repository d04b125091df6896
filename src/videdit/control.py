"""ControlNet conditioning maps computed from the source frames.

Canny edges need no weights (OpenCV). Depth maps use a DPT depth estimator through transformers,
and pose maps need the controlnet_aux annotator; without their weights a run stops with a message.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from .errors import UserError


def canny_maps(frames: np.ndarray, low: int = 100, high: int = 200) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, H, W, 3) uint8 edge maps (white edges on black), as ControlNet canny expects."""
    edges = [cv2.Canny(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), low, high) for f in frames]
    return np.repeat(np.stack(edges)[..., None], 3, axis=-1)


def depth_maps(frames: np.ndarray, allow_pickle: bool = False) -> np.ndarray:
    """Relative depth from the DPT estimator (preset ``depth-annotator``), normalised per frame."""
    from transformers import DPTForDepthEstimation, DPTImageProcessor

    from .models import resolve

    folder = resolve("depth-annotator", allow_pickle=allow_pickle)
    processor = DPTImageProcessor.from_pretrained(folder)
    net = DPTForDepthEstimation.from_pretrained(folder, use_safetensors=not allow_pickle or None).eval()
    out = []
    with torch.no_grad():
        for f in frames:
            pred = net(**processor(images=f, return_tensors="pt")).predicted_depth[0].numpy()
            pred = cv2.resize(pred, (f.shape[1], f.shape[0]), interpolation=cv2.INTER_CUBIC)
            pred = (pred - pred.min()) / max(float(pred.max() - pred.min()), 1e-6)
            out.append(np.repeat((pred * 255).astype(np.uint8)[..., None], 3, axis=-1))
    return np.stack(out)


def pose_maps(frames: np.ndarray, allow_pickle: bool = False) -> np.ndarray:
    try:
        from controlnet_aux import OpenposeDetector
    except ImportError:
        raise UserError("--control openpose needs the pose annotator: pip install controlnet_aux "
                        "(its weights lllyasviel/Annotators are pickle files: add --allow-pickle)") from None
    if not allow_pickle:
        raise UserError("the openpose annotator weights are pickle files; pass --allow-pickle to load them")
    try:
        detector = OpenposeDetector.from_pretrained("lllyasviel/Annotators")
    except Exception as exc:
        raise UserError(f"cannot load the openpose annotator lllyasviel/Annotators ({type(exc).__name__}); "
                        "download it while online") from None
    return np.stack([np.asarray(detector(f, output_type="np")) for f in frames])


def control_maps(frames: np.ndarray, control: str, allow_pickle: bool = False) -> np.ndarray | None:
    if control in (None, "none"):
        return None
    if control == "canny":
        return canny_maps(frames)
    if control == "depth":
        return depth_maps(frames, allow_pickle)
    if control == "openpose":
        return pose_maps(frames, allow_pickle)
    raise UserError(f"unknown control {control!r}")


def maps_to_tensor(maps: np.ndarray, device, dtype) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, H, W) in [0, 1], the ControlNet conditioning image range."""
    x = torch.from_numpy(np.ascontiguousarray(maps)).permute(0, 3, 1, 2).float() / 255.0
    return x.to(device=device, dtype=dtype)

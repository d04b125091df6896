"""The field's quality metrics for an edited video, as pure functions on frame arrays.

Frames are ``(T, H, W, 3)`` uint8 RGB arrays; masks are ``(T, H, W)`` bool, True where the edit
may change the picture. Every metric returns a `Result`: the value, the variant it was computed
with (model, pairs, flow, detector, scale) and, where useful, the per-frame or per-pair values.

- CLIP-T: mean over frames of 100 x cos(image, prompt). Tune-A-Video (arXiv 2212.11565), Sec. 4,
  quantitative results ("textual faithfulness"); LOVEU-TGVE 2023 (arXiv 2310.16003).
- CLIP-F: mean cos(image, image) over consecutive frames (FateZero, arXiv 2303.09535, Sec. 4,
  "Tem-Con") or over all pairs (LOVEU-TGVE 2023, Tune-A-Video "frame consistency").
- Frame accuracy: fraction of frames closer to the target prompt than to the source prompt
  (FateZero, Sec. 4, "Frame-Acc").
- Warp error: MSE between frame t and frame t+1 warped back by optical flow, over non-occluded
  pixels. Learning Blind Video Temporal Consistency (ECCV 2018), Sec. 4, evaluation metrics,
  "E_warp"; occlusion test of Artistic Style Transfer for Videos (GCPR 2016), Sec. 3.2.
- MAWE: per pair, warp error / (c x mean flow magnitude), averaged. StreamingT2V
  (arXiv 2403.14773), Sec. 5.1 and the appendix "MAWE definition", and its released ``mave.py``.
- SCuts: number of scene cuts, PySceneDetect's content (default) or adaptive detector;
  StreamingT2V, Sec. 5.1, uses the adaptive one with default parameters.
- PSNR / SSIM against the source, whole frame and outside the mask. SSIM: Image Quality
  Assessment: From Error Visibility to Structural Similarity (IEEE TIP 2004), Sec. III.

Nothing here downloads anything: CLIP weights come from a folder or the local Hugging Face cache
(`load_clip`), optical flow is OpenCV's DIS, which has no weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import cv2
import numpy as np

DEFAULT_CLIP = "clip-l14"  # the preset (openai/clip-vit-large-patch14), as `videdit download` names it
PAIRS = ("consecutive", "all")
FLOWS = ("dis",)
DETECTORS = ("content", "adaptive")
MAWE_C = 9.5  # StreamingT2V: scale that aligns warp error and flow magnitude (regression on their videos)
MAWE_SIZE = 720  # StreamingT2V computes optical-flow metrics on frames resized to 720 x 720


@dataclass(frozen=True)
class Result:
    """One metric's value beside the variant that produced it; ``value`` is None when unavailable."""

    value: float | None
    variant: dict[str, Any]
    detail: dict[str, Any] = field(default_factory=dict)
    unavailable: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "variant": dict(self.variant)}
        if self.unavailable:
            out["unavailable"] = self.unavailable
        if self.detail:
            out["detail"] = dict(self.detail)
        return out


def unavailable(reason: str, **variant: Any) -> Result:
    return Result(None, variant, unavailable=reason)


def check_frames(frames: np.ndarray, name: str = "frames") -> np.ndarray:
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"{name} must be a (T, H, W, 3) uint8 array, got {getattr(frames, 'shape', type(frames))}")
    return frames


def check_same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"edited and source frames differ in shape: {a.shape} vs {b.shape}")


# ---------------------------------------------------------------------------------------------
# Optical flow, warping, occlusion


def dis_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Flow F (H, W, 2) from RGB frame a to b with OpenCV DIS (medium preset): a(x) ~ b(x + F(x))."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    gray = [cv2.cvtColor(np.ascontiguousarray(x), cv2.COLOR_RGB2GRAY) for x in (a, b)]
    return dis.calc(gray[0], gray[1], None)


def sample_at(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward warp: out(x) = image(x + flow(x)), bilinear (``image`` is (H, W) or (H, W, C) float32)."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def inside(flow: np.ndarray) -> np.ndarray:
    """Pixels whose flow target x + F(x) lies inside the frame."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    x, y = gx + flow[..., 0], gy + flow[..., 1]
    return (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)


def non_occluded(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Forward-backward consistency (Artistic Style Transfer for Videos, GCPR 2016, Sec. 3.2).

    With F_f the flow t -> t+1 and w(F_b) the flow t+1 -> t sampled at x + F_f(x), a pixel is
    occluded where |F_f + w(F_b)|^2 > 0.01 (|F_f|^2 + |w(F_b)|^2) + 0.5; pixels that flow out of
    the frame count as occluded too. Returns True where the pixel is visible in both frames.
    """
    wb = sample_at(backward, forward)
    lhs = np.sum((forward + wb) ** 2, axis=-1)
    rhs = 0.01 * (np.sum(forward**2, axis=-1) + np.sum(wb**2, axis=-1)) + 0.5
    return (lhs <= rhs) & inside(forward)


@dataclass(frozen=True)
class PairFlow:
    """Flow t -> t+1 and the pixels of frame t that it follows reliably."""

    forward: np.ndarray  # (H, W, 2) float32
    valid: np.ndarray  # (H, W) bool


def video_flows(frames: np.ndarray, method: str = "dis") -> list[PairFlow]:
    """Forward flow and non-occlusion mask for every consecutive pair of ``frames``."""
    check_frames(frames)
    if method not in FLOWS:
        raise ValueError(f"unknown flow method {method!r}: use one of {', '.join(FLOWS)}")
    out = []
    for a, b in zip(frames[:-1], frames[1:]):
        forward, backward = dis_flow(a, b), dis_flow(b, a)
        out.append(PairFlow(forward, non_occluded(forward, backward)))
    return out


def pair_warp_error(a: np.ndarray, b: np.ndarray, pair: PairFlow) -> float:
    """Mean over valid pixels and channels of (a - warp(b))^2, RGB scaled to [0, 1]."""
    a01 = a.astype(np.float32) / 255.0
    warped = sample_at(b.astype(np.float32) / 255.0, pair.forward)
    n = int(pair.valid.sum())
    if n == 0:
        return float("nan")
    return float(np.mean((a01 - warped)[pair.valid] ** 2))


def warp_error(frames: np.ndarray, flows: list[PairFlow], flow_on: str = "source") -> Result:
    """Warp error (Learning Blind Video Temporal Consistency, ECCV 2018, Sec. 4, evaluation metrics).

    E_warp(V) = 1/(T-1) sum_t [ sum_x M_t(x) |V_t(x) - V^_{t+1}(x)|^2 / sum_x M_t(x) ], where
    V^_{t+1} is frame t+1 backward-warped onto t by the flow F_f (t -> t+1) and M_t the
    non-occlusion mask. The flow comes from ``flows`` (normally computed on the *source* video, so
    the edited video is judged by the motion it should have). Here |.|^2 is averaged over the RGB
    channels in [0, 1] (a mean squared error); the per-pixel sum over channels of the paper's
    formula is 3 times this value.
    """
    check_frames(frames)
    if len(flows) != len(frames) - 1:
        raise ValueError(f"{len(frames)} frames need {len(frames) - 1} flows, got {len(flows)}")
    variant = {"flow": "dis", "flow_on": flow_on, "occlusion": "forward-backward", "scale": "rgb [0,1], mse"}
    if len(frames) < 2:
        return unavailable("needs at least 2 frames", **variant)
    per_pair = [pair_warp_error(a, b, p) for a, b, p in zip(frames[:-1], frames[1:], flows)]
    finite = [e for e in per_pair if not math.isnan(e)]
    value = float(np.mean(finite)) if finite else float("nan")
    return Result(value, variant, {"per_pair": per_pair})


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Frames resized to ``size`` = (width, height) with bilinear interpolation."""
    if frames.shape[2] == size[0] and frames.shape[1] == size[1]:
        return frames
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in frames])


def splat_warp_error(a: np.ndarray, b: np.ndarray, flow: np.ndarray) -> float:
    """Mean squared error (0-255 scale) between frame b and frame a forward-splatted by the rounded
    flow a -> b, over the pixels of b the splat reaches (every pixel if none), as StreamingT2V's
    released ``mawe.py`` computes it: pixel x of a lands at round(x + F(x)) when inside the frame,
    a later pixel (in row-major order) overwriting an earlier one."""
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    tx, ty = np.round(xs + flow[..., 0]).astype(np.int64), np.round(ys + flow[..., 1]).astype(np.int64)
    ok = (tx >= 0) & (ty >= 0) & (tx < w) & (ty < h)
    warped = np.zeros(a.shape, np.float64)
    reached = np.zeros((h, w), bool)
    warped[ty[ok], tx[ok]] = a[ys[ok], xs[ok]]
    reached[ty[ok], tx[ok]] = True
    squared = (b.astype(np.float64) - warped) ** 2
    return float(squared[reached].mean()) if reached.any() else float(squared.mean())


MAWE_WARPS = ("splat", "backward")


def mawe(frames: np.ndarray, c: float = MAWE_C, size: int | None = MAWE_SIZE, warp: str = "splat") -> Result:
    """Motion-aware warp error (StreamingT2V, arXiv 2403.14773, Sec. 5.1 and appendix).

    MAWE(V) = 1/(T-1) sum_t W_t / (c * m_t), where for the pair (t, t+1), with the flow F_t computed
    on V itself (StreamingT2V judges generated videos, which have no source):
      W_t = mean over the reached pixels and channels of (V_{t+1} - splat(V_t, round(F_t)))^2 on
            the 0-255 scale (`splat_warp_error`);
      m_t = mean over pixels of |F_t(x)|, the flow magnitude in pixels at the evaluated size;
      c   = 9.5.
    This follows the authors' released ``mawe.py`` (per-pair ratio, then the mean; frames resized
    to 720 x 720; c = 9.5), except that the flow is OpenCV's DIS instead of RAFT, so values are
    comparable between videos evaluated here, not with the paper's tables. (The paper's appendix
    writes a ratio of video means, W(V) / OFS(V), with OFS the mean *squared* magnitude; the code is
    what is followed here.) ``warp="backward"`` instead backward-warps frame t+1 with the
    forward-backward occlusion mask (the warp error of `warp_error`). No motion (m_t = 0) gives inf.
    """
    check_frames(frames)
    if warp not in MAWE_WARPS:
        raise ValueError(f"unknown MAWE warp {warp!r}: use one of {', '.join(MAWE_WARPS)}")
    variant = {"flow": "dis (RAFT in StreamingT2V)", "flow_on": "itself", "warp": warp, "c": c,
               "size": f"{size}x{size}" if size else "native", "scale": "rgb [0,255], mse"}
    if len(frames) < 2:
        return unavailable("needs at least 2 frames", **variant)
    if size:
        frames = resize_frames(frames, (size, size))
    ratios, errors, motions = [], [], []
    for a, b, pair in zip(frames[:-1], frames[1:], video_flows(frames)):
        w_t = splat_warp_error(a, b, pair.forward) if warp == "splat" else 255.0**2 * pair_warp_error(a, b, pair)
        m_t = float(np.mean(np.linalg.norm(pair.forward, axis=-1)))
        errors.append(w_t)
        motions.append(m_t)
        ratios.append(w_t / (c * m_t) if m_t > 1e-6 else float("inf"))
    return Result(float(np.mean(ratios)), variant, {"per_pair": ratios, "warp_error": errors, "motion": motions})


# ---------------------------------------------------------------------------------------------
# Scene cuts (PySceneDetect's content and adaptive detectors, re-implemented: the scenedetect
# package depends on the GUI build of OpenCV, which overwrites the cv2 of opencv-python-headless)

SCENE_WIDTH = 256  # PySceneDetect's SceneManager downscales frames to about this width first


def detection_frames(frames: np.ndarray) -> np.ndarray:
    """PySceneDetect's auto-downscale: factor = width / 256 when the width exceeds 256, bilinear."""
    h, w = frames.shape[1:3]
    if w < SCENE_WIDTH:
        return frames
    factor = w / float(SCENE_WIDTH)
    return resize_frames(frames, (max(1, round(w / factor)), max(1, round(h / factor))))


def content_scores(frames: np.ndarray) -> np.ndarray:
    """PySceneDetect ContentDetector frame score, default weights (hue, saturation, value 1; edges 0).

    score_t = mean over (H, S, V) of mean_x |C_t(x) - C_{t-1}(x)|, in OpenCV's 8-bit HSV
    (H in [0, 180), S and V in [0, 256)); score_0 = 0.
    """
    check_frames(frames)
    hsv = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2HSV) for f in detection_frames(frames)]).astype(np.int32)
    scores = np.zeros(len(frames))
    if len(frames) > 1:
        scores[1:] = np.abs(np.diff(hsv, axis=0)).mean(axis=(1, 2)).mean(axis=-1)
    return scores


def content_cuts(scores: np.ndarray, threshold: float = 27.0, min_scene_len: int = 15) -> list[int]:
    """Cuts of PySceneDetect's ContentDetector: score >= threshold, with its flash filter (merge mode).

    A cut is emitted when the score crosses the threshold at least ``min_scene_len`` frames after
    the previous frame above it; closer crossings are merged into one cut, emitted at the last
    crossing once the scores stay below the threshold long enough.
    """
    cuts: list[int] = []
    last_above, merging, merge_start, merge_enabled = 0, False, 0, False
    for t, score in enumerate(scores):
        above = score >= threshold
        far_enough = t - last_above >= min_scene_len
        if above:
            last_above = t
        if merging:
            if far_enough and not above and last_above - merge_start >= min_scene_len:
                merging = False
                cuts.append(last_above)
            continue
        if not above:
            continue
        if far_enough:
            merge_enabled = True
            cuts.append(t)
        elif merge_enabled:
            merging, merge_start = True, t
    return cuts


def adaptive_cuts(scores: np.ndarray, adaptive_threshold: float = 3.0, min_content_val: float = 15.0,
                  window_width: int = 2, min_scene_len: int = 15) -> list[int]:
    """Cuts of PySceneDetect's AdaptiveDetector (defaults), the detector StreamingT2V's SCuts uses.

    ratio_t = score_t / mean(score of the ``window_width`` frames on each side of t); a cut at t
    when ratio_t >= 3 and score_t >= 15, at least ``min_scene_len`` frames after the previous cut
    (the first frame counts as one). A window mean of 0 gives ratio 255 if score_t >= 15.
    """
    cuts: list[int] = []
    last_cut = 0
    for t in range(window_width, len(scores) - window_width):
        around = np.concatenate([scores[t - window_width:t], scores[t + 1:t + 1 + window_width]])
        mean = float(around.mean())
        if abs(mean) < 1e-5:
            ratio = 255.0 if scores[t] >= min_content_val else 0.0
        else:
            ratio = min(scores[t] / mean, 255.0)
        if ratio >= adaptive_threshold and scores[t] >= min_content_val and t - last_cut >= min_scene_len:
            last_cut = t
            cuts.append(t)
    return cuts


def scene_cuts(frames: np.ndarray, detector: str = "content", threshold: float = 27.0,
               min_scene_len: int = 15) -> Result:
    """SCuts (StreamingT2V, Sec. 5.1): the number of scene cuts found in the video.

    ``detector="content"`` is PySceneDetect's ContentDetector with ``threshold`` (default 27);
    ``"adaptive"`` its AdaptiveDetector with default parameters, the variant StreamingT2V reports.
    The adaptive detector compares each score with its neighbours', so a single odd frame (its
    score and the next one's are both high) is not a cut there, while the content detector counts
    it once; a real change of shot is a cut for both. As in PySceneDetect, no cut is found within
    ``min_scene_len`` frames (default 15) of the first frame or of the previous cut: lower it for
    short clips. Both agree cut for cut with the scenedetect package (0.7.2) on the sample clips and
    on spliced clips with hard cuts, a flash frame and a dissolve: benchmarks/scuts_scenedetect.py.
    """
    if detector not in DETECTORS:
        raise ValueError(f"unknown scene detector {detector!r}: use one of {', '.join(DETECTORS)}")
    scores = content_scores(frames)
    if detector == "adaptive":
        cuts = adaptive_cuts(scores, min_scene_len=min_scene_len)
        variant = {"detector": "adaptive", "adaptive_threshold": 3.0, "min_content_val": 15.0, "window_width": 2,
                   "min_scene_len": min_scene_len, "implementation": "PySceneDetect 0.7 re-implemented"}
    else:
        cuts = content_cuts(scores, threshold, min_scene_len)
        variant = {"detector": "content", "threshold": threshold, "min_scene_len": min_scene_len,
                   "implementation": "PySceneDetect 0.7 re-implemented"}
    return Result(float(len(cuts)), variant, {"cuts": cuts, "scores": [round(float(s), 3) for s in scores]})


# ---------------------------------------------------------------------------------------------
# Fidelity to the source: PSNR and SSIM over the whole frame or outside the edit mask


def psnr_from_mse(mse: float, peak: float = 255.0) -> float:
    """PSNR = 10 log10(peak^2 / MSE) in dB; infinite for identical pixels."""
    return float("inf") if mse == 0 else float(10.0 * math.log10(peak**2 / mse))


def region_or_all(shape: tuple[int, ...], keep: np.ndarray | None) -> np.ndarray:
    if keep is None:
        return np.ones(shape[:3], dtype=bool)
    if keep.shape != tuple(shape[:3]):
        raise ValueError(f"mask shape {keep.shape} does not match frames {shape[:3]}")
    return keep.astype(bool)


def psnr(edited: np.ndarray, source: np.ndarray, keep: np.ndarray | None = None) -> Result:
    """PSNR of ``edited`` against ``source`` over the pixels where ``keep`` is True (all if None).

    The squared error is pooled over all kept pixels, channels and frames, then turned into one
    PSNR (peak 255), so that one identical frame cannot make the video's PSNR infinite; the
    per-frame PSNRs are in the detail. Infinite when the kept pixels are identical.
    """
    check_frames(edited, "edited")
    check_frames(source, "source")
    check_same_shape(edited, source)
    region = region_or_all(edited.shape, keep)
    variant = {"region": "whole frame" if keep is None else "outside mask", "peak": 255,
               "pooling": "mse over all frames"}
    if not region.any():
        return unavailable("the region is empty (the mask covers every pixel)", **variant)
    sq = (edited.astype(np.float64) - source.astype(np.float64)) ** 2
    per_frame = [psnr_from_mse(float(sq[t][region[t]].mean())) if region[t].any() else None for t in range(len(sq))]
    return Result(psnr_from_mse(float(sq[region].mean())), variant, {"per_frame": per_frame})


SSIM_K1, SSIM_K2, SSIM_SIGMA, SSIM_WINDOW = 0.01, 0.03, 1.5, 11


def ssim_map(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> np.ndarray:
    """SSIM map of two (H, W, C) images (IEEE TIP 2004, Sec. III-B, eq. 13, and III-C).

    SSIM(x) = ((2 mu_a mu_b + C1)(2 s_ab + C2)) / ((mu_a^2 + mu_b^2 + C1)(s_a^2 + s_b^2 + C2)), with
    local means mu, variances s^2 and covariance s_ab under an 11 x 11 Gaussian window of
    sigma 1.5, C1 = (0.01 L)^2, C2 = (0.03 L)^2, L = 255; per channel, then averaged over channels.
    """
    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (SSIM_K1 * peak) ** 2, (SSIM_K2 * peak) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (SSIM_WINDOW, SSIM_WINDOW), SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean(axis=-1) if s.ndim == 3 else s


def ssim(edited: np.ndarray, source: np.ndarray, keep: np.ndarray | None = None) -> Result:
    """Mean SSIM of ``edited`` against ``source`` over the pixels where ``keep`` is True.

    Inside the edit (``keep`` False) the edited frame takes the source's pixels before the SSIM
    map is computed, as background-preservation scores mask the edited region out of both images,
    so that windows at the mask's border compare only what lies outside it; the map is then
    averaged over the kept pixels of every frame. 1 where the kept pixels are identical.
    """
    check_frames(edited, "edited")
    check_frames(source, "source")
    check_same_shape(edited, source)
    region = region_or_all(edited.shape, keep)
    variant = {"region": "whole frame" if keep is None else "outside mask", "window": "gaussian 11x11 sigma 1.5",
               "channels": "rgb, averaged"}
    if not region.any():
        return unavailable("the region is empty (the mask covers every pixel)", **variant)
    if keep is not None:
        edited = np.where(region[..., None], edited, source)
    maps = np.stack([ssim_map(a, b) for a, b in zip(edited, source)])
    per_frame = [float(maps[t][region[t]].mean()) if region[t].any() else None for t in range(len(maps))]
    return Result(float(maps[region].mean()), variant, {"per_frame": per_frame})


# ---------------------------------------------------------------------------------------------
# CLIP metrics


@dataclass
class Clip:
    """A CLIP model with its image processor and tokenizer, and the name it is reported under."""

    model: Any  # transformers.CLIPModel
    image_processor: Any  # transformers.CLIPImageProcessor (or a CLIPProcessor)
    tokenizer: Any  # transformers.CLIPTokenizer
    name: str
    device: str = "cpu"
    batch_size: int = 16


class ClipUnavailable(Exception):
    """The CLIP model cannot be loaded; the message says why and how to get it."""


def image_processor_class() -> Any:
    """`CLIPImageProcessor`; its PIL twin where transformers 5 would otherwise warn about torchvision."""
    import importlib.util

    import transformers

    if importlib.util.find_spec("torchvision") is None and hasattr(transformers, "CLIPImageProcessorPil"):
        return transformers.CLIPImageProcessorPil
    return transformers.CLIPImageProcessor


def load_clip(name: str = DEFAULT_CLIP, device: str | None = None) -> Clip:
    """Load a CLIP model from a folder, a preset (``clip-l14``) or the local Hugging Face cache.

    Never downloads: offline and without the weights, raises `ClipUnavailable` with the reason.
    """
    import torch
    from transformers import CLIPModel, CLIPTokenizer

    from .errors import UserError
    from .models import resolve

    try:
        folder = resolve(name, allow_download=False)
    except UserError as exc:
        raise ClipUnavailable(str(exc)) from None
    try:
        model = CLIPModel.from_pretrained(folder, local_files_only=True, use_safetensors=True)
        image_processor = image_processor_class().from_pretrained(folder, local_files_only=True)
        tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # missing files, wrong classes, pickle-only weights
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClipUnavailable(f"cannot load CLIP model {name!r} from {folder}: {first[:200]}") from None
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return Clip(model.to(device).eval(), image_processor, tokenizer, name, device)


def _pooled(out: Any) -> Any:
    """``get_*_features`` returns a tensor in transformers 4 and an output with ``pooler_output`` in 5."""
    import torch

    return out if isinstance(out, torch.Tensor) else out.pooler_output


def image_embeddings(clip: Clip, frames: np.ndarray) -> np.ndarray:
    """Unit-norm CLIP image embeddings (T, D); frames are resized and cropped by the model's processor."""
    import torch

    check_frames(frames)
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(frames), clip.batch_size):
            batch = [f for f in frames[start:start + clip.batch_size]]
            pixels = clip.image_processor(images=batch, return_tensors="pt")["pixel_values"].to(clip.device)
            emb = _pooled(clip.model.get_image_features(pixel_values=pixels)).float()
            chunks.append(torch.nn.functional.normalize(emb, dim=-1).cpu().numpy())
    return np.concatenate(chunks)


def text_embeddings(clip: Clip, prompts: list[str]) -> np.ndarray:
    """Unit-norm CLIP text embeddings (N, D), prompts truncated to the model's 77 tokens."""
    import torch

    tokens = clip.tokenizer(prompts, padding="max_length", truncation=True, max_length=clip.tokenizer.model_max_length,
                            return_tensors="pt").to(clip.device)
    with torch.inference_mode():
        emb = _pooled(clip.model.get_text_features(input_ids=tokens["input_ids"],
                                                   attention_mask=tokens["attention_mask"])).float()
    return torch.nn.functional.normalize(emb, dim=-1).cpu().numpy()


def clip_text_score(images: np.ndarray, text: np.ndarray) -> np.ndarray:
    """CLIP-T per frame: 100 x cos(E_I(frame_t), E_T(prompt)) with unit-norm embeddings (T, D), (D,)."""
    return 100.0 * images @ text


def frame_pairs(n: int, pairs: str) -> list[tuple[int, int]]:
    if pairs not in PAIRS:
        raise ValueError(f"unknown pairs {pairs!r}: use one of {', '.join(PAIRS)}")
    return [(i, i + 1) for i in range(n - 1)] if pairs == "consecutive" else list(combinations(range(n), 2))


def clip_frame_score(images: np.ndarray, pairs: str = "consecutive") -> np.ndarray:
    """CLIP-F per pair: cos(E_I(frame_i), E_I(frame_j)) over consecutive (i, i+1) or all i < j pairs."""
    return np.array([float(images[i] @ images[j]) for i, j in frame_pairs(len(images), pairs)])


def frame_accuracy_hits(images: np.ndarray, target: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Frame-Acc per frame: 1 where cos(E_I(frame_t), E_T(target)) > cos(E_I(frame_t), E_T(source))."""
    return (images @ target > images @ source).astype(np.float64)


def clip_t(clip: Clip, frames: np.ndarray, prompt: str, images: np.ndarray | None = None) -> Result:
    """CLIP-T: mean over frames of 100 x cos(image, prompt)."""
    images = image_embeddings(clip, frames) if images is None else images
    per_frame = clip_text_score(images, text_embeddings(clip, [prompt])[0])
    return Result(float(per_frame.mean()), {"model": clip.name, "scale": "100 x cos", "prompt": prompt},
                  {"per_frame": per_frame.tolist()})


def clip_f(clip: Clip, frames: np.ndarray, pairs: str = "consecutive", images: np.ndarray | None = None) -> Result:
    """CLIP-F: mean cosine similarity of the image embeddings of consecutive or all frame pairs."""
    variant = {"model": clip.name, "pairs": pairs, "scale": "cos"}
    if len(frames) < 2:
        return unavailable("needs at least 2 frames", **variant)
    images = image_embeddings(clip, frames) if images is None else images
    per_pair = clip_frame_score(images, pairs)
    return Result(float(per_pair.mean()), variant, {"per_pair": per_pair.tolist()})


def frame_accuracy(clip: Clip, frames: np.ndarray, prompt: str, source_prompt: str,
                   images: np.ndarray | None = None) -> Result:
    """Frame accuracy: fraction of frames that CLIP finds closer to ``prompt`` than to ``source_prompt``."""
    images = image_embeddings(clip, frames) if images is None else images
    target, source = text_embeddings(clip, [prompt, source_prompt])
    hits = frame_accuracy_hits(images, target, source)
    return Result(float(hits.mean()), {"model": clip.name, "prompt": prompt, "source_prompt": source_prompt},
                  {"per_frame": hits.tolist()})

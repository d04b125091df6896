"""Layers without training: a mosaic background and a flow-mapped foreground (OpenCV only).

Background (a panorama, Szeliski, "Image Alignment and Stitching: A Tutorial", 2006, sec. 2-3 and
6): each frame maps to a reference keyframe by a homography x_ref ~ H_t x_t, fitted by RANSAC
(Fischler and Bolles, 1981) to DIS optical flow (Kroeger et al., ECCV 2016) sampled on a grid
outside the foreground, where the flow passes a forward-backward check. Frames are fitted to their
nearest keyframe and keyframes to the next one towards the reference, so a frame's chain has
about T / K links, not T, and drift stays bounded. The atlas is the per-texel median of the frames
warped into the reference's coordinates (outside the foreground), so moving things do not vote.

Foreground: a canonical image in the coordinates of a reference keyframe (the one that shows the
most of it). Each frame's foreground pixels map to their nearest keyframe by DIS flow computed
on the foreground alone (the background blanked), forward-backward checked; keyframes map to the
reference through the chain of neighbouring keyframes. Pixels whose flow fails the check, and
pixels just outside the mask, take the map of their nearest valid pixel shifted by their offset
to it (a local translation). This covers near-rigid objects and moderate deformation; it breaks
where the foreground shows sides the reference never saw in a way flow cannot follow: strong 3D
rotation, self-occlusion, fast motion across many pixels between keyframes (as the atlas papers
say of their own mappings).

Alpha: the given masks, feathered, or, without masks, the pixels whose flow disagrees with the
background homography (motion segmentation), cleaned with a morphological close and open.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from videdit.errors import UserError

from .layers import Layer, Layers, uv_from_homographies

log = logging.getLogger("videdit")


@dataclass(frozen=True)
class MosaicSettings:
    keyframe_interval: int = 8      # K: frames between keyframes
    grid_step: int = 4              # background flow sampled every this many pixels
    fb_threshold: float = 1.0       # forward-backward flow error (pixels) that still counts as consistent
    ransac_threshold: float = 1.0   # RANSAC reprojection error, pixels
    exclude_margin: int = 3         # pixels around the foreground left out of the background fit and atlas
    feather: float = 0.7            # sigma (pixels) of the alpha feather
    motion_threshold: float = 24.0  # motion alpha: difference from the panorama (0-255) that is foreground
    flow_threshold: float = 1.0     # motion alpha: flow against the background's (pixels) that is evidence of motion
    max_atlas_scale: float = 4.0    # the background atlas is at most this many frame widths / heights
    median_frames: int = 15         # frames in the background median (evenly spaced; the rest fill gaps)
    analysis_size: int = 256        # background motion is estimated at this long side (then refined at full size)
    ecc_iterations: int = 30        # refinement of each frame's homography against the panorama (0: none)


def keyframes(n_frames: int, interval: int) -> list[int]:
    """0, K, 2K, ... and the last frame when it is more than K / 2 past the last keyframe."""
    keys = list(range(0, n_frames, max(1, interval)))
    if n_frames - 1 - keys[-1] > interval // 2:
        keys.append(n_frames - 1)
    return keys


def nearest(keys: list[int], t: int) -> int:
    return min(keys, key=lambda k: (abs(k - t), k))


def _dis() -> cv2.DISOpticalFlow:
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)


def _flow(dis, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(H, W, 2) float32 DIS flow from gray image a to gray image b: a(p) ~ b(p + f(p))."""
    return dis.calc(a, b, None)


def _grid(height: int, width: int) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.stack([xs, ys], -1)


def _consistent(forward: np.ndarray, backward: np.ndarray, threshold: float) -> np.ndarray:
    """(H, W) bool: |f_ab(p) + f_ba(p + f_ab(p))| < threshold (forward-backward check)."""
    h, w = forward.shape[:2]
    target = _grid(h, w) + forward
    back = cv2.remap(backward, target[..., 0], target[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=(1e4, 1e4))
    return np.linalg.norm(forward + back, axis=-1) < threshold


# ---------------------------------------------------------------------------------------
# Background: homographies and the panorama

def fit_homography(dis, a: np.ndarray, b: np.ndarray, exclude: np.ndarray | None, s: MosaicSettings) -> np.ndarray:
    """3x3 H with b(H p) ~ a(p) for background pixels p of gray frame a (affine where the fit is degenerate)."""
    forward, backward = _flow(dis, a, b), _flow(dis, b, a)
    h, w = a.shape
    good = _consistent(forward, backward, s.fb_threshold)
    if exclude is not None:
        good &= ~exclude
    ys, xs = np.mgrid[s.grid_step // 2:h:s.grid_step, s.grid_step // 2:w:s.grid_step]
    keep = good[ys, xs]
    src = np.stack([xs[keep], ys[keep]], -1).astype(np.float32)
    dst = src + forward[ys[keep], xs[keep]]
    if len(src) >= 8:
        H, inliers = cv2.findHomography(src, dst, cv2.RANSAC, s.ransac_threshold, maxIters=2000, confidence=0.999)
        if H is not None and inliers is not None and inliers.sum() >= max(8, 0.2 * len(src)) and _sane(H, w, h):
            return H / H[2, 2]
    if len(src) >= 3:
        A, _ = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=s.ransac_threshold)
        if A is not None:
            return np.vstack([A, [0, 0, 1]])
    shift = np.median(dst - src, axis=0) if len(src) else np.zeros(2)
    return np.array([[1, 0, shift[0]], [0, 1, shift[1]], [0, 0, 1]], np.float64)


def _sane(H: np.ndarray, width: int, height: int) -> bool:
    """A homography that keeps the frame's corners in front and its area within a factor of 4."""
    corners = np.array([[0, 0, 1], [width, 0, 1], [width, height, 1], [0, height, 1]], np.float64).T
    mapped = H @ corners
    if (mapped[2] <= 0).any():
        return False
    xy = (mapped[:2] / mapped[2]).T
    area = 0.5 * abs(np.dot(xy[:, 0], np.roll(xy[:, 1], 1)) - np.dot(xy[:, 1], np.roll(xy[:, 0], 1)))
    return 0.25 < area / (width * height) < 4.0


def background_homographies(gray: np.ndarray, exclude: np.ndarray | None, keys: list[int], ref: int,
                            s: MosaicSettings) -> np.ndarray:
    """(T, 3, 3): H_t, frame t -> reference keyframe, = H_{k(t) -> ref} H_{t -> k(t)}, keyframes chained.

    Fitted on frames scaled to ``analysis_size`` (S) and brought back: H = S^-1 H_small S."""
    T, h, w = gray.shape
    scale = min(1.0, s.analysis_size / max(h, w))
    if scale < 1:
        size = (max(8, round(w * scale)), max(8, round(h * scale)))
        gray = np.stack([cv2.resize(g, size, interpolation=cv2.INTER_AREA) for g in gray])
        if exclude is not None:
            exclude = np.stack([cv2.resize(e.astype(np.uint8), size, interpolation=cv2.INTER_AREA) > 0 for e in exclude])
    dis = _dis()
    ex = (lambda t: None) if exclude is None else (lambda t: exclude[t])
    to_ref = {ref: np.eye(3)}
    i_ref = keys.index(ref)
    for direction in (-1, 1):  # keyframes outward from the reference, each fitted to its neighbour
        i = i_ref + direction
        while 0 <= i < len(keys):
            k, toward = keys[i], keys[i - direction]
            to_ref[k] = to_ref[toward] @ fit_homography(dis, gray[k], gray[toward], ex(k), s)
            i += direction
    out = np.empty((T, 3, 3))
    for t in range(T):
        k = nearest(keys, t)
        out[t] = to_ref[k] if t == k else to_ref[k] @ fit_homography(dis, gray[t], gray[k], ex(t), s)
    if scale < 1:
        S = np.diag([gray.shape[2] / w, gray.shape[1] / h, 1.0])
        out = np.linalg.inv(S) @ out @ S
    return out / out[:, 2:3, 2:3]


def refine_to_atlas(gray: np.ndarray, to_atlas: np.ndarray, atlas: np.ndarray, seen: np.ndarray, valid: np.ndarray,
                    s: MosaicSettings) -> np.ndarray:
    """(T, 3, 3) frame -> atlas homographies refined by maximising the enhanced correlation coefficient
    between each frame's background and the panorama (Evangelidis and Psarakis, "Parametric Image
    Alignment Using Enhanced Correlation Coefficient Maximization", TPAMI 2008), from the chained
    estimates: every frame meets the same panorama, so what chaining left over is corrected."""
    atlas_gray = cv2.cvtColor(atlas, cv2.COLOR_RGB2GRAY).astype(np.float32)
    atlas_mask = seen.astype(np.uint8)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, s.ecc_iterations, 1e-6)
    out = to_atlas.copy()
    for t in range(len(gray)):
        warp = (to_atlas[t] / to_atlas[t][2, 2]).astype(np.float32)
        try:
            _, warp = cv2.findTransformECCWithMask(gray[t].astype(np.float32), atlas_gray, valid[t].astype(np.uint8),
                                                   atlas_mask, warp, cv2.MOTION_HOMOGRAPHY, criteria, 3)
        except cv2.error:
            continue  # no convergence: keep the chained estimate
        if _sane(np.linalg.inv(to_atlas[t]) @ warp, gray.shape[2], gray.shape[1]):
            out[t] = warp
    return out


def atlas_frame(homographies: np.ndarray, width: int, height: int, s: MosaicSettings) -> np.ndarray:
    """3x3 translation T so that T H_t maps every frame into an atlas of non-negative pixel coordinates."""
    corners = np.array([[0, 0, 1], [width - 1, 0, 1], [width - 1, height - 1, 1], [0, height - 1, 1]], np.float64).T
    mapped = homographies @ corners  # (T, 3, 4)
    xy = mapped[:, :2] / mapped[:, 2:3]
    low = np.maximum(np.floor(xy.min(axis=(0, 2))) - 1, [-(s.max_atlas_scale - 1) / 2 * width,
                                                          -(s.max_atlas_scale - 1) / 2 * height])
    return np.array([[1, 0, -low[0]], [0, 1, -low[1]], [0, 0, 1]], np.float64)


def atlas_extent(homographies: np.ndarray, width: int, height: int, s: MosaicSettings) -> tuple[int, int]:
    corners = np.array([[0, 0, 1], [width - 1, 0, 1], [width - 1, height - 1, 1], [0, height - 1, 1]], np.float64).T
    mapped = homographies @ corners
    xy = mapped[:, :2] / mapped[:, 2:3]
    high = np.ceil(xy.max(axis=(0, 2))) + 2
    return (int(min(high[0], s.max_atlas_scale * width)), int(min(high[1], s.max_atlas_scale * height)))


def background_atlas(frames: np.ndarray, to_atlas: np.ndarray, valid: np.ndarray, size: tuple[int, int],
                     s: MosaicSettings) -> tuple[np.ndarray, np.ndarray]:
    """The panorama (Ha, Wa, 3) uint8 and the texels it saw (Ha, Wa) bool.

    Per texel, the median of the frames that saw it as background among ``median_frames`` evenly
    spaced ones; texels only the other frames saw take those frames' mean; texels no frame saw as
    background but inside some frame (always behind the foreground) are inpainted.
    """
    wa, ha = size
    T = len(frames)
    chosen = set(np.unique(np.linspace(0, T - 1, min(T, s.median_frames)).round().astype(int)).tolist())
    warped = np.full((len(chosen), ha, wa, 3), np.nan, np.float32)
    total = np.zeros((ha, wa, 3), np.float32)
    count = np.zeros((ha, wa), np.int32)
    footprint = np.zeros((ha, wa), bool)
    j = 0
    for t in range(T):
        image = cv2.warpPerspective(frames[t].astype(np.float32), to_atlas[t], (wa, ha), flags=cv2.INTER_LINEAR)
        ok = cv2.warpPerspective(valid[t].astype(np.float32), to_atlas[t], (wa, ha), flags=cv2.INTER_LINEAR) > 0.999
        footprint |= cv2.warpPerspective(np.ones(frames.shape[1:3], np.float32), to_atlas[t], (wa, ha)) > 0
        total += image * ok[..., None]
        count += ok
        if t in chosen:
            warped[j] = np.where(ok[..., None], image, np.float32(np.nan))
            j += 1
    median = np.empty((ha, wa, 3), np.float32)
    rows = max(1, int(2e7 // max(1, len(chosen) * wa * 3)))
    for r in range(0, ha, rows):  # in strips, to bound memory
        median[r:r + rows] = nan_median(warped[:, r:r + rows])
    seen = count > 0
    mean = total / np.maximum(count, 1)[..., None]
    atlas = np.where(np.isnan(median), mean, median)
    atlas[~seen] = 0
    return fill_unseen(np.clip(np.rint(atlas), 0, 255).astype(np.uint8), seen, footprint), seen


def nan_median(values: np.ndarray) -> np.ndarray:
    """The median over axis 0 of the values that are not NaN (NaN where all are): sorted, NaN last."""
    ordered = np.sort(values, axis=0)
    n = (~np.isnan(ordered)).sum(0)
    low = np.take_along_axis(ordered, np.maximum((n - 1) // 2, 0)[None], 0)[0]
    high = np.take_along_axis(ordered, np.maximum(n // 2, 0)[None], 0)[0]
    return np.where(n > 0, 0.5 * (low + high), np.nan)


def fill_unseen(atlas: np.ndarray, seen: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``atlas`` with unseen texels given the colour of the nearest seen texel, then those inside
    ``region`` (where frames read) inpainted (Telea, J. Graphics Tools 2004) from their surroundings."""
    if seen.all() or not seen.any():
        return atlas
    _, labels = cv2.distanceTransformWithLabels((~seen).astype(np.uint8), cv2.DIST_L2, 5,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    ys, xs = np.nonzero(seen)
    filled = atlas[ys[labels - 1], xs[labels - 1]]
    filled[seen] = atlas[seen]
    hole = (region & ~seen).astype(np.uint8)
    return cv2.inpaint(filled, hole, 3, cv2.INPAINT_TELEA) if hole.any() else filled


# ---------------------------------------------------------------------------------------
# Alpha

def feathered(masks: np.ndarray, sigma: float) -> np.ndarray:
    """(T, H, W) float32 alpha: the masks blurred by a Gaussian of ``sigma`` pixels (3 sigma support)."""
    if sigma <= 0:
        return masks.astype(np.float32)
    k = 2 * int(np.ceil(2 * sigma)) + 1
    return np.stack([cv2.GaussianBlur(m.astype(np.float32), (k, k), sigma) for m in masks])


def flow_motion(gray: np.ndarray, homographies: np.ndarray, s: MosaicSettings) -> np.ndarray:
    """(T, H, W) bool: pixels whose flow to the frame 2 on (or back) is not the background's.

    The background moves p -> H_u^-1 H_t p from frame t to frame u; a residual |f_tu(p) - (that - p)|
    above ``flow_threshold`` pixels marks a mover (precise where it has texture or edges, silent
    inside uniform regions and over the ground it uncovers).
    """
    dis = _dis()
    T, full_h, full_w = gray.shape
    gray, homographies = _analysis_scale(gray, homographies, s)
    h, w = gray.shape[1:]
    grid = _grid(h, w)
    out = np.zeros((T, full_h, full_w), bool)
    for t in range(T):
        u = t + 2 if t + 2 < T else max(t - 2, 0) if T > 2 else (1 - t)
        if u == t or not 0 <= u < T:
            continue
        flow, back = _flow(dis, gray[t], gray[u]), _flow(dis, gray[u], gray[t])
        H = np.linalg.inv(homographies[u]) @ homographies[t]
        expected = cv2.perspectiveTransform(grid.reshape(-1, 1, 2), H).reshape(h, w, 2) - grid
        residual = np.linalg.norm(flow - expected, axis=-1)
        moving = (residual > s.flow_threshold) & _consistent(flow, back, 2 * s.fb_threshold)
        out[t] = cv2.resize(moving.astype(np.uint8), (full_w, full_h), interpolation=cv2.INTER_NEAREST) > 0
    return out


def _analysis_scale(gray: np.ndarray, homographies: np.ndarray, s: MosaicSettings) -> tuple[np.ndarray, np.ndarray]:
    """Frames scaled to ``analysis_size`` (long side) and their homographies S H S^-1 (as they were if smaller)."""
    T, h, w = gray.shape
    scale = min(1.0, s.analysis_size / max(h, w))
    if scale == 1:
        return gray, homographies
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    S = np.diag([size[0] / w, size[1] / h, 1.0])
    small = np.stack([cv2.resize(g, size, interpolation=cv2.INTER_AREA) for g in gray])
    return small, S @ homographies @ np.linalg.inv(S)


def motion_masks(frames: np.ndarray, to_atlas: np.ndarray, atlas: np.ndarray, evidence: np.ndarray,
                 s: MosaicSettings) -> np.ndarray:
    """(T, H, W) bool: pixels that differ from the background panorama seen through their frame's
    homography, |I_t(p) - A_bg(H_t p)| above ``motion_threshold`` (mean over channels, 0-255), cleaned
    by an open and a close, holes filled; only regions that hold ``evidence`` of motion in this frame
    (`flow_motion`) are kept, which drops the ghosts a slow mover leaves in the panorama."""
    from .layers import sample

    T, h, w = frames.shape[:3]
    radius = max(1, round(min(h, w) / 100))
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    out = np.zeros((T, h, w), bool)
    uv = uv_from_homographies(to_atlas, h, w)
    min_area = 0.002 * h * w
    for t in range(T):
        diff = np.abs(frames[t].astype(np.float32) - sample(atlas, uv[t])).mean(-1)
        moving = (diff > s.motion_threshold).astype(np.uint8)
        moving = cv2.morphologyEx(moving, cv2.MORPH_OPEN, element)
        moving = cv2.morphologyEx(moving, cv2.MORPH_CLOSE, element)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(_fill_holes(moving).astype(np.uint8), connectivity=8)
        support = np.bincount(labels[evidence[t]], minlength=count)
        keep = (stats[:, cv2.CC_STAT_AREA] >= min_area) & (support >= np.maximum(3, 0.02 * stats[:, cv2.CC_STAT_AREA]))
        keep[0] = False
        out[t] = keep[labels]
    return out


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every region of zeros that does not touch the border set to one."""
    count, labels = cv2.connectedComponents((mask == 0).astype(np.uint8), connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    holes = (mask == 0) & ~np.isin(labels, border)
    return (mask > 0) | holes


# ---------------------------------------------------------------------------------------
# Foreground: dense maps to the reference keyframe, and the canonical image

def _extend(target: np.ndarray, known: np.ndarray) -> np.ndarray:
    """``target`` (H, W, 2) with each unknown pixel p set to target(n) + (p - n), n its nearest known pixel."""
    if known.all():
        return target
    h, w = known.shape
    _, labels = cv2.distanceTransformWithLabels((~known).astype(np.uint8), cv2.DIST_L2, 5,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    ky, kx = np.nonzero(known)  # label i (1-based) is the i-th known pixel in row-major order
    index = labels - 1
    grid = _grid(h, w)
    ny, nx = ky[index], kx[index]
    extended = target[ny, nx] + (grid - np.stack([nx, ny], -1).astype(np.float32))
    return np.where(known[..., None], target, extended).astype(np.float32)


def _blanked(frame_gray: np.ndarray, mask: np.ndarray, fill: int) -> np.ndarray:
    return np.where(mask, frame_gray, np.uint8(fill)).astype(np.uint8)


def map_to(dis, a: np.ndarray, b: np.ndarray, mask_a: np.ndarray, mask_b: np.ndarray, s: MosaicSettings) -> np.ndarray:
    """(H, W, 2): where each pixel of frame a's foreground lies in frame b (blanked gray frames a, b).

    DIS flow, kept where it passes the forward-backward check and lands in b's mask; elsewhere
    extended from the nearest kept pixel. Without any kept pixel: the shift between mask centroids.
    """
    h, w = a.shape
    grid = _grid(h, w)
    forward, backward = _flow(dis, a, b), _flow(dis, b, a)
    target = grid + forward
    tx = np.clip(np.rint(target[..., 0]), 0, w - 1).astype(int)
    ty = np.clip(np.rint(target[..., 1]), 0, h - 1).astype(int)
    known = mask_a & _consistent(forward, backward, s.fb_threshold) & mask_b[ty, tx]
    if known.sum() < 3:
        shift = np.zeros(2, np.float32)
        if mask_a.any() and mask_b.any():
            ya, xa = np.nonzero(mask_a)
            yb, xb = np.nonzero(mask_b)
            shift = np.array([xb.mean() - xa.mean(), yb.mean() - ya.mean()], np.float32)
        return grid + shift
    return _extend(target, known)


def foreground_maps(gray: np.ndarray, masks: np.ndarray, keys: list[int], ref: int, s: MosaicSettings) -> np.ndarray:
    """(T, H, W, 2): each frame's pixels in the reference keyframe's coordinates (foreground motion).

    Maps compose flows between consecutive frames (small displacements, which flow follows): a
    frame goes to its nearest keyframe, a keyframe to its neighbour towards the reference.
    """
    dis = _dis()
    T, h, w = gray.shape
    inside = gray[masks]
    fill = 0 if (inside.mean() if inside.size else 255) > 127 else 255
    blank = np.stack([_blanked(g, m, fill) for g, m in zip(gray, masks)])
    steps: dict[tuple[int, int], np.ndarray] = {}

    def step(a: int, b: int) -> np.ndarray:  # frame a's pixels in frame b, |a - b| = 1
        if (a, b) not in steps:
            steps[(a, b)] = map_to(dis, blank[a], blank[b], masks[a], masks[b], s)
        return steps[(a, b)]

    def carry(target_map: np.ndarray, a: int, b: int) -> np.ndarray:
        """Frame a's pixels in the coordinates of ``target_map`` (defined on frame b's pixels)."""
        direction = 1 if b > a else -1
        out = target_map
        for u in range(b - direction, a - direction, -direction):  # from b back to a
            m = step(u, u + direction)
            out = cv2.remap(out, m[..., 0], m[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return out

    to_ref = {ref: _grid(h, w)}
    i_ref = keys.index(ref)
    for direction in (-1, 1):
        i = i_ref + direction
        while 0 <= i < len(keys):
            k, toward = keys[i], keys[i - direction]
            to_ref[k] = carry(to_ref[toward], k, toward)
            i += direction
    out = np.empty((T, h, w, 2), np.float32)
    for t in range(T):
        k = nearest(keys, t)
        out[t] = to_ref[k] if t == k else carry(to_ref[k], t, k)
    return out


def splat_atlas(frames: np.ndarray, uv: np.ndarray, weights: np.ndarray, order: list[int],
                size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """An atlas (Ha, Wa, 3) float32 and its filled texels from frames splatted at uv, bilinear weights.

    Frames are taken in ``order``; a texel takes the colour of the first frame whose splat weight
    there reaches 0.5 (no blur from misregistration), so the earliest in ``order`` wins.
    Texels with weight 0 in a frame (unseen by it) do not vote.
    """
    wa, ha = size
    atlas = np.zeros((ha, wa, 3), np.float32)
    filled = np.zeros((ha, wa), bool)
    for t in order:
        colour, weight = splat(frames[t], uv[t], weights[t], size)
        new = (weight >= 0.5) & ~filled
        atlas[new] = colour[new]
        filled |= new
    return atlas, filled


def splat(frame: np.ndarray, uv: np.ndarray, weight: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One frame's pixels with ``weight`` > 0 splatted bilinearly at atlas positions ``uv``:
    the weighted mean colour per texel (Ha, Wa, C) and the summed weight (Ha, Wa)."""
    wa, ha = size
    sel = weight > 0
    x, y = uv[sel, 0], uv[sel, 1]
    colour = frame[sel].astype(np.float64)
    w0 = weight[sel].astype(np.float64)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    idx = np.concatenate([(y0 + dy) * wa + (x0 + dx) for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1))])
    xi = np.concatenate([x0, x0 + 1, x0, x0 + 1])
    yi = np.concatenate([y0, y0, y0 + 1, y0 + 1])
    ww = np.concatenate([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy]) * np.tile(w0, 4)
    ok = (xi >= 0) & (yi >= 0) & (xi < wa) & (yi < ha)
    idx, ww = idx[ok], ww[ok]
    wsum = np.bincount(idx, ww, minlength=ha * wa)
    acc = np.stack([np.bincount(idx, ww * np.tile(colour[:, c], 4)[ok], minlength=ha * wa)
                    for c in range(colour.shape[1])], -1)
    mean = acc / np.maximum(wsum, 1e-12)[:, None]
    return mean.reshape(ha, wa, -1).astype(np.float32), wsum.reshape(ha, wa).astype(np.float32)


def foreground_layer(frames: np.ndarray, masks: np.ndarray, to_ref: np.ndarray, alpha: np.ndarray, ref: int,
                     s: MosaicSettings, name: str = "foreground") -> Layer:
    """The canonical image in the reference keyframe's coordinates (plus a margin) and the frames' uv into it."""
    T, h, w = masks.shape
    pts = to_ref[alpha > 0]
    low = np.floor(pts.min(0)) - 4
    high = np.ceil(pts.max(0)) + 4
    low = np.maximum(low, [-(s.max_atlas_scale - 1) / 2 * w, -(s.max_atlas_scale - 1) / 2 * h])
    high = np.minimum(high, [(s.max_atlas_scale + 1) / 2 * w, (s.max_atlas_scale + 1) / 2 * h])
    size = (int(high[0] - low[0]) + 1, int(high[1] - low[1]) + 1)
    uv = (to_ref - low.astype(np.float32)).astype(np.float32)
    interior = np.stack([cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0 for m in masks])
    order = sorted(range(T), key=lambda t: (abs(t - ref), t))
    atlas, filled = splat_atlas(frames, uv, interior.astype(np.float32), order, size)
    reached = np.zeros_like(filled)
    seen = filled.copy()
    for t in range(T):  # every texel a frame's alpha reads must hold a colour
        _, weight = splat(np.zeros((h, w, 1), np.float32), uv[t], (alpha[t] > 0).astype(np.float32), size)
        reached |= weight > 0
    region = cv2.dilate(reached.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    atlas = fill_unseen(np.clip(np.rint(atlas), 0, 255).astype(np.uint8), filled, region)
    return Layer(name, atlas, seen, uv, alpha)


# ---------------------------------------------------------------------------------------
# Everything

def build_mosaic(frames: np.ndarray, masks: np.ndarray | None = None, fps: float = 8.0,
                 settings: MosaicSettings = MosaicSettings()) -> Layers:
    """Layers of ``frames`` (T, H, W, 3) uint8: the background mosaic and a foreground layer per mask.

    ``masks`` are (T, H, W) bool (one foreground layer) or (N, T, H, W) (N layers, composed in
    order over the background, e.g. one per object); None: one layer from motion against the
    background.
    """
    s = settings
    T, h, w = frames.shape[:3]
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])
    keys = keyframes(T, s.keyframe_interval)
    ref_bg = keys[len(keys) // 2]
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * s.exclude_margin + 1,) * 2)

    def grown(m):
        return np.stack([cv2.dilate(x.astype(np.uint8), element) > 0 for x in m])

    per_layer = None if masks is None else (masks[None] if masks.ndim == 3 else masks).astype(bool)
    union = None if per_layer is None else per_layer.any(0)
    border = np.zeros((h, w), bool)
    border[1:-1, 1:-1] = True

    def panorama(homographies, exclude):
        to_atlas = atlas_frame(homographies, w, h, s) @ homographies
        size = atlas_extent(to_atlas, w, h, s)
        valid = np.broadcast_to(border, (T, h, w)) if exclude is None else ~grown(exclude) & border
        return (to_atlas, size) + background_atlas(frames, to_atlas, valid, size, s)

    homographies = background_homographies(gray, None if union is None else grown(union), keys, ref_bg, s)
    source = "masks"
    if per_layer is None:  # what does not move with the background (the median rejects movers)
        source = "motion"
        evidence = flow_motion(gray, homographies, s)
        wide = np.stack([cv2.dilate(e.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0 for e in evidence])
        to_atlas, size, bg_atlas, seen = panorama(homographies, wide)
        union = motion_masks(frames, to_atlas, bg_atlas, evidence, s)
        if union.any():  # refit and rebuild without the moving pixels, then look again
            homographies = background_homographies(gray, grown(union), keys, ref_bg, s)
            to_atlas, size, bg_atlas, seen = panorama(homographies, union | wide)
            union = motion_masks(frames, to_atlas, bg_atlas, evidence, s)
        per_layer = union[None]
    if not union.any():
        raise UserError("no foreground found: the masks are empty" if source == "masks" else
                        "no foreground found: nothing moves against the background; give masks (--atlas-mask)")
    if source == "masks" or s.ecc_iterations <= 0:
        to_atlas, size, bg_atlas, seen = panorama(homographies, union)
    if s.ecc_iterations > 0:
        valid = ~grown(union) & border
        homographies = np.linalg.inv(to_atlas[ref_bg]) @ refine_to_atlas(gray, to_atlas, bg_atlas, seen, valid, s)
        to_atlas, size, bg_atlas, seen = panorama(homographies, union)
    background = Layer("background", bg_atlas, seen, uv_from_homographies(to_atlas, h, w), None, to_atlas)
    foregrounds, refs = [], []
    for i, layer_masks in enumerate(per_layer):
        if not layer_masks.any():
            log.warning("atlas: foreground mask %d is empty in every frame; no layer for it", i + 1)
            continue
        area = layer_masks.reshape(T, -1).sum(1)
        ref_fg = max(keys, key=lambda k: (area[k], -abs(k - ref_bg)))
        to_ref = foreground_maps(gray, layer_masks, keys, ref_fg, s)
        name = "foreground" if len(per_layer) == 1 else f"foreground{i + 1}"
        foregrounds.append(foreground_layer(frames, layer_masks, to_ref, feathered(layer_masks, s.feather), ref_fg, s, name))
        refs.append(ref_fg)
    info = dict(keyframes=keys, reference_background=ref_bg, reference_foreground=refs, alpha_from=source,
                atlas_bg_size=list(size), atlas_fg_size=[list(f.atlas_size) for f in foregrounds])
    return Layers(background, foregrounds, fps, "mosaic", info)

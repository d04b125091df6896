"""ST-Layout attention: per-region modulation of cross- and self-attention over space and time.

Source: "VideoGrain: Modulating Space-Time Attention for Multi-Grained Video Editing" (ICLR 2025),
section 3.3 (ST-Layout Attention), which extends the attention modulation of DenseDiffusion
(ICCV 2023, section 3.2) from images to clips. With S = Q K^T * scale the pre-softmax logits of
one attention layer and M a binary matrix (1: this query should attend to this key),

    S' = S + lambda * xi(t) * sigma(q) * [ M * (S_max - S)  -  (1 - M) * (S - S_min) ]

    S_max, S_min   per query row, over the keys
    xi(t)          = ((t - 1) / 1000)^5, t the scheduler timestep: strong early, nothing late
    sigma(q)       = 1 - |region of q| / |positions|: large regions are pushed less
    lambda         1.0 for cross-attention, 0.3 for self-attention

then softmax as usual. Positive pairs are pulled up towards the row's maximum, negative pairs
pushed down towards its minimum.

- Cross-attention (pixels -> prompt tokens): M[q, k] = 1 where pixel q lies in region i and token k
  in the span of region i's prompt; pixels outside all regions, and tokens outside all spans
  (start, end, padding, glue words), are negative everywhere.
- Self-attention (pixels -> pixels of the whole clip): queries and keys are (frame, position)
  pairs; M[q, k] = 1 where q and k lie in the same region, in any frame.

Regions are given as per-token region ids (-1: outside every region), and M is built on the fly
for one chunk of queries, M[q, k] = (id[q] >= 0) & (id[q] == id[k]): the (frames x tokens)^2
matrix of the self-attention of a clip is never materialised (at 32x32 with 16 frames it would be
16384^2 per head). Self-attention hands the modulation to torch's ``scaled_dot_product_attention``
as scaled queries and an additive bias (`modulated_attention` shows the algebra).
``dense_modulated_attention`` is the literal formula for tests and benchmarks.

Which layers: a layer's resolution is derived from its token count and the latent size (a UNet
level halves the latent with ceil: 45 -> 23 -> 12), and modulation applies at the levels listed in
``LayoutState.factors`` (SD 1.5 at 512 px: factors 2, 4, 8 = 32x32, 16x16 and 8x8; the full latent
resolution keeps plain cross-frame attention).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from videdit.attention import install_processors, is_cross_attention, is_temporal, run_attention_layer
from videdit.attention.frames import (
    attention,
    default_chunk_size,
    frame_attention,
    is_spatial_self_attention,
    num_branches,
    output_like,
)

if TYPE_CHECKING:
    from diffusers.models.attention_processor import Attention

__all__ = [
    "CROSS_STRENGTH",
    "SELF_STRENGTH",
    "CrossAttentionRecorder",
    "LayoutCrossAttnProcessor",
    "LayoutSelfAttnProcessor",
    "LayoutState",
    "dense_modulated_attention",
    "layout_attention",
    "level_of",
    "modulate_logits",
    "modulated_attention",
    "region_sizes",
    "same_region",
    "xi",
]

CROSS_STRENGTH = 1.0  # lambda of cross-attention (paper, section 3.3)
SELF_STRENGTH = 0.3   # lambda of self-attention
DEFAULT_FACTORS = (2, 4, 8)
MAX_LEVELS = 8


# ---------------------------------------------------------------------------------------
# The formula

def xi(t: float) -> float:
    """xi(t) = ((t - 1) / 1000)^5: the modulation's weight at scheduler timestep t (0 at t <= 1)."""
    return max(float(t) - 1.0, 0.0) ** 5 / 1000.0**5


def same_region(q_ids: torch.Tensor, k_ids: torch.Tensor) -> torch.Tensor:
    """M[..., q, k] = 1 where query q and key k lie in the same region; queries outside all (-1) get none.

    q_ids (..., Nq), k_ids (..., Nk) integer region ids, broadcastable.
    """
    q = q_ids[..., :, None]
    return (q >= 0) & (q == k_ids[..., None, :])


def modulate_logits(s: torch.Tensor, m: torch.Tensor, sigma: torch.Tensor, weight: float) -> torch.Tensor:
    """S' = S + w * sigma * [M (S_max - S) - (1 - M)(S - S_min)], with w = lambda * xi(t).

    s: (..., Nq, Nk) logits; m: bool, broadcastable to s; sigma: (..., Nq) broadcastable per query.
    """
    return _modulate_(s.clone(), m, sigma, weight)


def _modulate_(s: torch.Tensor, m: torch.Tensor, sigma: torch.Tensor, weight: float) -> torch.Tensor:
    """`modulate_logits` in place of ``s``, with one temporary of its size."""
    s_max = s.amax(dim=-1, keepdim=True)
    s_min = s.amin(dim=-1, keepdim=True)
    push = torch.where(m, s_max, s_min).sub_(s)  # up to the row's max, or down to its min
    push.mul_((weight * sigma)[..., None].to(s.dtype))
    return s.add_(push)


def _softmax_v(s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.softmax(s, dim=-1, dtype=torch.float32).to(v.dtype) @ v


def modulated_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_ids: torch.Tensor,
    k_ids: torch.Tensor,
    sigma: torch.Tensor,
    weight: float,
    scale: float | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """softmax(modulate_logits(q k^T * scale, same_region(q_ids, k_ids), sigma, weight)) v, through SDPA.

    Given a row's S_max and S_min the modulation is linear in S, and a term constant along a row
    leaves its softmax unchanged, so with w = ``weight``:

        S' = (1 - w sigma) S + w sigma (S_max - S_min) M + w sigma S_min
           ~ (1 - w sigma) S + B,        B = w sigma (S_max - S_min) M

    SDPA gets the queries scaled by (1 - w sigma) and B as its additive mask, which torch's fused
    kernels take (the memory-efficient one on CUDA, flash on the CPU). B is built for one chunk of
    queries at a time: the chunk's logits give S_max and S_min, then their buffer holds B, with M
    from the region ids; so chunk x Nk values per batch element exist at once (default chunk:
    `default_chunk_size`), never the (Nq x Nk) mask.

    q: (..., Nq, d); k, v: (..., Nk, d); q_ids, sigma: (..., Nq) and k_ids: (..., Nk), broadcastable
    to the batch dims of q and k (e.g. (Nq,) for all heads).
    """
    if q.ndim == 3:  # the fused kernels take (batch, heads, tokens, d) only
        return modulated_attention(q[None], k[None], v[None], q_ids, k_ids, sigma, weight, scale, chunk_size)[0]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    if weight == 0:
        return attention(q, k, v, chunk_size, scale)
    num_queries, num_keys = q.shape[-2], k.shape[-2]
    if chunk_size is None:
        chunk_size = default_chunk_size(math.prod(q.shape[:-2]), num_keys)
    out = output_like(q, v)
    kt = k.transpose(-1, -2)
    for first in range(0, num_queries, chunk_size):
        rows = slice(first, min(first + chunk_size, num_queries))
        s = (q[..., rows, :] @ kt).mul_(scale)  # S of this chunk, only for its row extremes
        s_min, s_max = torch.aminmax(s, dim=-1)
        w_sigma = (weight * sigma[..., rows]).to(q.dtype)
        bias = torch.mul(same_region(q_ids[..., rows], k_ids), (w_sigma * (s_max - s_min))[..., None], out=s)
        out[..., rows, :] = F.scaled_dot_product_attention(
            q[..., rows, :] * (1 - w_sigma)[..., None], k, v, attn_mask=bias, scale=scale
        )
        del s, bias  # before the next chunk's logits exist
    return out


def dense_modulated_attention(q, k, v, m: torch.Tensor, sigma: torch.Tensor, weight: float,
                              scale: float | None = None) -> torch.Tensor:
    """Reference: the formula with a dense M (..., Nq, Nk), all queries at once (tests, benchmarks)."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = (q @ k.transpose(-1, -2)) * scale
    return _softmax_v(_modulate_(s, m, sigma, weight), v)


def region_sizes(ids: torch.Tensor) -> torch.Tensor:
    """For every entry of ``ids`` (..., N), how many entries of its row share its id (-1 included)."""
    shifted = ids + 1  # -1 -> 0
    counts = torch.zeros(*ids.shape[:-1], int(shifted.max()) + 1, dtype=torch.long, device=ids.device)
    counts.scatter_add_(-1, shifted, torch.ones_like(shifted))
    return counts.gather(-1, shifted)


# ---------------------------------------------------------------------------------------
# State

def level_of(num_tokens: int, latent_size: tuple[int, int]) -> tuple[int, int, int] | None:
    """(factor, h, w) of a layer with ``num_tokens`` = h * w, for a latent (H, W); None if no level fits.

    Each UNet level halves the previous one with ceil (a stride-2 convolution with padding 1).
    """
    h, w = latent_size
    factor = 1
    for _ in range(MAX_LEVELS):
        if h * w == num_tokens:
            return factor, h, w
        h, w, factor = (h + 1) // 2, (w + 1) // 2, factor * 2
    return None


@dataclass
class CrossAttentionRecorder:
    """Sums of cross-attention maps of token groups, at one UNet level, over the layers and steps it sees.

    ``groups``: name -> token positions in the prompt; ``factor``: the level (2**n); ``branch``: the
    index of the branch whose maps are kept (-1: the last, the conditional half of a guided batch).
    """

    groups: dict[str, list[int]]
    factor: int
    branch: int = -1
    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    count: int = 0

    def add(self, probs: torch.Tensor, num_frames: int, h: int, w: int) -> None:
        """probs: (branches * F, heads, h*w, L) attention probabilities of one layer call."""
        branches = num_branches(probs.shape[0], num_frames)
        b = self.branch % branches
        mean = probs[b * num_frames:(b + 1) * num_frames].float().mean(dim=1)  # (F, hw, L)
        for name, tokens in self.groups.items():
            amap = mean[..., tokens].sum(-1).reshape(num_frames, h, w).cpu()
            self.sums[name] = self.sums[name] + amap if name in self.sums else amap
        self.count += 1

    def maps(self) -> dict[str, torch.Tensor]:
        """name -> (F, h, w) mean attention map."""
        return {name: total / max(self.count, 1) for name, total in self.sums.items()}


@dataclass
class LayoutState:
    """What the layout processors read at each call. The sampling loop sets ``timestep`` before each
    step (None: no modulation, plain cross-frame attention) and the processors do the rest.

    masks: per region (F, H, W) bool (any size; resized per level with nearest neighbour);
    token_ids: (L,) per prompt token the region whose span holds it, -1 outside every span;
    cross_regions: which regions take part in cross-attention (a background region without a
    prompt takes part in self-attention only: its pixels are left unmodulated there);
    self_branch: which half of a guided batch gets the self-attention term ("cond"; "uncond" is
    what the original code does); self_sigma: "clip" (sigma = 1 - |region| / (F hw)) or
    "frames2" (the original code's 1 - |region| / (F^2 hw)).
    """

    num_frames: int
    latent_size: tuple[int, int]
    masks: Sequence[Any] = ()
    token_ids: torch.Tensor | None = None
    cross_regions: Sequence[bool] | None = None
    factors: tuple[int, ...] = DEFAULT_FACTORS
    cross_strength: float = CROSS_STRENGTH
    self_strength: float = SELF_STRENGTH
    self_branch: str = "cond"
    self_sigma: str = "clip"
    frame_mode: str = "full"
    chunk_size: int | None = None
    timestep: float | None = None
    dense: bool = False  # the dense reference instead of chunks (benchmarks only)
    recorder: CrossAttentionRecorder | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.self_branch not in ("cond", "uncond"):
            raise ValueError(f"self_branch must be 'cond' or 'uncond', got {self.self_branch!r}")
        if self.self_sigma not in ("clip", "frames2"):
            raise ValueError(f"self_sigma must be 'clip' or 'frames2', got {self.self_sigma!r}")

    def level(self, num_tokens: int) -> tuple[int, int, int] | None:
        return level_of(num_tokens, self.latent_size)

    def weight(self, strength: float) -> float:
        return 0.0 if self.timestep is None else strength * xi(self.timestep)

    def modulated(self, factor: int) -> bool:
        return self.timestep is not None and bool(len(self.masks)) and factor in self.factors

    def ids(self, h: int, w: int, device) -> torch.Tensor:
        """(F, h*w) region id per position at this resolution (first region wins), computed once."""
        key = ("ids", h, w, str(device))
        if key not in self._cache:
            from videdit.masks import region_ids

            self._cache[key] = region_ids(list(self.masks), (h, w)).to(device)
        return self._cache[key]

    def cross_layout(self, h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(same (F, 1, hw, L), sigma (F, hw)) for cross-attention, computed once per resolution:
        ``same`` tells whether a position's region holds a prompt token, sigma = 1 - |region in frame| / hw,
        and 0 for regions without a prompt (left unmodulated)."""
        key = ("cross", h, w, str(device))
        if key not in self._cache:
            ids = self.ids(h, w, device)
            sigma = 1.0 - region_sizes(ids).float() / ids.shape[-1]
            if self.cross_regions is not None:
                silent = torch.tensor([not c for c in self.cross_regions] + [False], device=device)
                sigma = torch.where(silent[ids], torch.zeros_like(sigma), sigma)  # id -1 -> last: False
            same = same_region(ids[:, None, :], self.token_ids.to(device))
            self._cache[key] = (same, sigma)
        return self._cache[key]

    def self_layout(self, h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids (F*hw,), sigma (F*hw,)) over the whole clip for self-attention."""
        key = ("self", h, w, str(device))
        if key not in self._cache:
            ids = self.ids(h, w, device).reshape(-1)
            norm = ids.numel() * (self.num_frames if self.self_sigma == "frames2" else 1)
            self._cache[key] = (ids, 1.0 - region_sizes(ids).float() / norm)
        return self._cache[key]


def _token_count(hidden_states: torch.Tensor) -> int:
    return hidden_states.shape[-2] * hidden_states.shape[-1] if hidden_states.ndim == 4 else hidden_states.shape[1]


# ---------------------------------------------------------------------------------------
# Processors

class LayoutSelfAttnProcessor:
    """Self-attention (``attn1``) processor: cross-frame attention, and at modulated levels and steps
    one branch's queries attend to all (frame, position) keys of the clip through `modulated_attention`."""

    def __init__(self, state: LayoutState, name: str = "") -> None:
        self.state, self.name = state, name

    def attend(self, attn: Attention, q, k, v, mask=None):
        st, frames = self.state, self.state.num_frames
        n = q.shape[-2]
        level = st.level(n)
        plain = lambda a, b, c: frame_attention(a, b, c, frames, st.frame_mode, st.chunk_size, scale=attn.scale)
        if level is None or not st.modulated(level[0]):
            return plain(q, k, v)
        branches = num_branches(q.shape[0], frames, self.name)
        b = branches - 1 if st.self_branch == "cond" else 0
        ids, sigma = st.self_layout(level[1], level[2], q.device)
        out = q.new_empty(*q.shape[:-1], v.shape[-1])
        heads = q.shape[1]
        for i in range(branches):
            rows = slice(i * frames, (i + 1) * frames)
            if i != b:
                out[rows] = plain(q[rows], k[rows], v[rows])
                continue
            # (F, heads, n, d) -> (heads, F*n, d): queries and keys are the (frame, position) pairs of the clip
            qb, kb, vb = (t[rows].transpose(0, 1).reshape(heads, frames * n, t.shape[-1]) for t in (q, k, v))
            weight = st.weight(st.self_strength)
            if st.dense:
                ob = dense_modulated_attention(qb, kb, vb, same_region(ids, ids), sigma, weight, attn.scale)
            else:
                ob = modulated_attention(qb, kb, vb, ids, ids, sigma, weight, attn.scale, st.chunk_size)
            out[rows] = ob.reshape(heads, frames, n, -1).transpose(0, 1)
        return out

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        if attention_mask is not None:
            raise ValueError(f"layout self-attention in {self.name or 'a layer'} takes no attention_mask")
        return run_attention_layer(attn, hidden_states, lambda q, k, v, m: self.attend(attn, q, k, v, m),
                                   encoder_hidden_states, None, temb)


class LayoutCrossAttnProcessor:
    """Cross-attention (``attn2``) processor: at modulated levels and steps, the conditional half's
    pixels of region i are pulled towards the tokens of span i and pushed from all others. Records
    attention maps into ``state.recorder`` at its level."""

    def __init__(self, state: LayoutState, name: str = "") -> None:
        self.state, self.name = state, name

    def attend(self, attn: Attention, q, k, v, mask=None):
        st, frames = self.state, self.state.num_frames
        level = st.level(q.shape[-2])
        modulate = level is not None and st.modulated(level[0]) and st.token_ids is not None
        record = level is not None and st.recorder is not None and st.recorder.factor == level[0]
        if not modulate and not record:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attn.scale)
        branches = num_branches(q.shape[0], frames, self.name)
        s = (q @ k.transpose(-1, -2)) * attn.scale  # (B*F, heads, hw, L): small, the prompt has L tokens
        if mask is not None:
            s = s + mask
        if modulate:
            m, sigma = st.cross_layout(level[1], level[2], q.device)
            cond = slice((branches - 1) * frames, branches * frames)
            _modulate_(s[cond], m, sigma[:, None, :], st.weight(st.cross_strength))  # s[cond] is a view
        probs = torch.softmax(s, dim=-1, dtype=torch.float32)
        if record:
            st.recorder.add(probs, frames, level[1], level[2])
        return probs.to(v.dtype) @ v

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        return run_attention_layer(attn, hidden_states, lambda q, k, v, m: self.attend(attn, q, k, v, m),
                                   encoder_hidden_states, attention_mask, temb)


@contextmanager
def layout_attention(unet: Any, state: LayoutState) -> Iterator[LayoutState]:
    """ST-Layout processors on every spatial self- and cross-attention layer; restored on exit.

    With ``state.timestep`` None they compute plain cross-frame attention (self) and standard
    attention (cross), so inversion can run under them too (to record cross-attention maps).
    """

    def make(name: str, attn: Attention):
        if is_spatial_self_attention(name, attn):
            return LayoutSelfAttnProcessor(state, name)
        if is_cross_attention(name) and not is_temporal(name):
            return LayoutCrossAttnProcessor(state, name)
        return None

    with install_processors(unet, make):
        yield state

"""Cross-frame self-attention: the frames of a clip share keys and values.

An image UNet denoises each frame alone; letting each frame's self-attention queries see the
keys/values of other frames makes the frames agree on appearance.

- ``"full"``: every frame attends to all frames of its clip, as if the clip were one large image
  ("fully cross-frame interaction" of ControlVideo, method section).
- ``"sparse"``: frame f attends to the first frame and the previous one, {0, f-1} (sparse-causal
  attention of Tune-A-Video, section 4.1 "Network Inflation", also used by FateZero); a frame
  listed twice is used once, which does not change the result: duplicated keys with duplicated
  values give the same softmax average.

A batch holds B branches (e.g. the unconditional and conditional halves of classifier-free
guidance) of F frames each, frame f of branch b at index b*F + f.

Memory: the logits of all frames against all frames, (F*N)^2 per head, are never built. Queries
go through ``scaled_dot_product_attention`` a chunk at a time, so at most
chunk x keys logits per (branch, head) exist at once, and fused kernels may not build even those.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from videdit.attention import install_processors, is_self_attention, is_temporal, run_attention_layer

if TYPE_CHECKING:
    from diffusers.models.attention_processor import Attention

__all__ = [
    "LOGITS_BUDGET",
    "MODES",
    "CrossFrameAttnProcessor",
    "FrameAttentionState",
    "chunked_attention",
    "cross_frame_attention",
    "default_chunk_size",
    "frame_attention",
    "gather_frames",
    "is_spatial_self_attention",
    "key_frames",
    "num_branches",
]

MODES = ("full", "sparse")

LOGITS_BUDGET = 2**26
"""Attention logits held at once by one chunk, in elements (256 MiB in fp32, 128 MiB in fp16).

Smaller chunks cost time: on a 2-core CPU, 8 heads x 8192 keys, 1024 queries per call ran as fast
as one call over all queries, 512 about 10% and 128 about 30% slower
(benchmarks/frame_attention_memory.py). Fused GPU kernels never build the logits and want large
chunks to fill the device; set ``chunk_size`` there."""

Bias = Callable[[int, int], "torch.Tensor | None"]
"""(first query, end query) -> additive logits bias for those query rows, broadcastable to
(..., end - first, keys), or None."""


def default_chunk_size(batch_heads: int, num_keys: int, budget: int = LOGITS_BUDGET) -> int:
    """Queries per chunk so that batch_heads x chunk x num_keys logits stay within ``budget``."""
    return max(1, budget // max(1, batch_heads * num_keys))


def chunked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    chunk_size: int | None = None,
    scale: float | None = None,
    bias: Bias | None = None,
) -> torch.Tensor:
    """Attention computed ``chunk_size`` queries at a time.

        out = softmax(q k^T * s + b) v

    q: (..., Nq, d) queries; k: (..., Nk, d) keys; v: (..., Nk, dv) values; s: ``scale``,
    1/sqrt(d) if None; b: ``bias(first, end)`` for the rows of one chunk (layout modulation adds
    its per-region terms there), zero if None. ``chunk_size`` None: ``default_chunk_size``.
    """
    num_queries, num_keys = q.shape[-2], k.shape[-2]
    if chunk_size is None:
        chunk_size = default_chunk_size(math.prod(q.shape[:-2]), num_keys)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    out = q.new_empty(*q.shape[:-1], v.shape[-1])
    for first in range(0, num_queries, chunk_size):
        end = min(first + chunk_size, num_queries)
        mask = None if bias is None else bias(first, end)
        out[..., first:end, :] = F.scaled_dot_product_attention(
            q[..., first:end, :], k, v, attn_mask=mask, scale=scale
        )
    return out


def key_frames(frame: int, num_frames: int, mode: str) -> list[int]:
    """The frames whose keys/values ``frame`` attends to, each once.

    full: 0..F-1. sparse: {0, f-1} (frame 0: itself; frame 1: frame 0).
    """
    if mode == "full":
        return list(range(num_frames))
    if mode == "sparse":
        return sorted({0, max(frame - 1, 0)})
    raise ValueError(f"frame attention mode must be one of {MODES}, got {mode!r}")


def gather_frames(x: torch.Tensor, frames: list[int]) -> torch.Tensor:
    """(B, F, heads, M, d) -> (B, heads, len(frames) * M, d): the listed frames' tokens, side by side."""
    return torch.cat([x[:, g] for g in frames], dim=-2)


def num_branches(batch: int, num_frames: int, where: str = "") -> int:
    """B for a batch of B branches x F frames; a clear error if the batch does not split."""
    if num_frames < 1 or batch % num_frames:
        at = f" in {where}" if where else ""
        raise ValueError(
            f"cross-frame attention{at}: a batch of {batch} is not a multiple of num_frames={num_frames}; "
            "the batch must hold all frames of each branch (branches x frames)"
        )
    return batch // num_frames


def frame_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    num_frames: int,
    mode: str = "full",
    chunk_size: int | None = None,
    scale: float | None = None,
    bias: Callable[[int, int, int], torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """Each frame's queries attend to the keys/values of ``key_frames(f)`` of its own branch.

        out[b, f] = softmax(q[b, f] K_bf^T * s + bias) V_bf,   K_bf = [k[b, g] for g in key_frames(f)]

    q: (B*F, heads, N, d); k, v: (B*F, heads, M, d), frame f of branch b at index b*F + f;
    s: ``scale`` (1/sqrt(d) if None); ``bias(frame, first, end)``: optional additive logits bias
    for one chunk of one frame's queries against K_bf. Returns (B*F, heads, N, dv).
    """
    if mode not in MODES:
        raise ValueError(f"frame attention mode must be one of {MODES}, got {mode!r}")
    branches = num_branches(q.shape[0], num_frames)
    q5, k5, v5 = (t.unflatten(0, (branches, num_frames)) for t in (q, k, v))
    out = q.new_empty(*q5.shape[:-1], v.shape[-1])
    frames, keys, values = None, None, None
    for f in range(num_frames):
        wanted = key_frames(f, num_frames, mode)
        if wanted != frames:  # "full": gathered once for all frames
            frames, keys, values = wanted, gather_frames(k5, wanted), gather_frames(v5, wanted)
        out[:, f] = chunked_attention(
            q5[:, f], keys, values, chunk_size, scale, None if bias is None else partial(bias, f)
        )
    return out.flatten(0, 1)


@dataclass
class FrameAttentionState:
    """What cross-frame processors read at each call; change it between calls, not during one."""

    num_frames: int
    mode: str = "full"
    chunk_size: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"frame attention mode must be one of {MODES}, got {self.mode!r}")


class CrossFrameAttnProcessor:
    """A diffusers attention processor for self-attention (``attn1``) layers: the standard steps
    of ``AttnProcessor2_0`` with ``frame_attention`` in place of per-frame attention."""

    def __init__(self, state: FrameAttentionState, name: str = "") -> None:
        self.state = state
        self.name = name

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        where = self.name or "a self-attention layer"
        num_branches(hidden_states.shape[0], self.state.num_frames, where)
        if attention_mask is not None:
            raise ValueError(f"cross-frame attention in {where} takes no attention_mask")

        return run_attention_layer(attn, hidden_states, lambda q, k, v, mask: self.attend(attn, q, k, v, mask),
                                   encoder_hidden_states, None, temb)

    def attend(self, attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask=None) -> torch.Tensor:
        """The attention itself, for processors that wrap this one (injection)."""
        return frame_attention(q, k, v, self.state.num_frames, self.state.mode, self.state.chunk_size,
                               scale=attn.scale)


def is_spatial_self_attention(name: str, attn: Attention) -> bool:
    """Self-attention among the tokens of one frame: ``attn1``, not temporal, no prompt keys."""
    return is_self_attention(name) and not is_temporal(name) and not attn.is_cross_attention


@contextmanager
def cross_frame_attention(
    unet: Any,
    num_frames: int,
    mode: str = "full",
    chunk_size: int | None = None,
    select: Callable[[str, Attention], bool] = is_spatial_self_attention,
) -> Iterator[FrameAttentionState]:
    """Cross-frame attention on every spatial self-attention layer while the block runs.

    Cross-attention (``attn2``) and temporal layers keep their processors; all processors are
    restored on exit. Yields the shared ``FrameAttentionState``: set ``state.num_frames`` to run
    a clip of another length through the same context.
    """
    state = FrameAttentionState(num_frames, mode, chunk_size)

    def make(name: str, attn: Attention) -> CrossFrameAttnProcessor | None:
        return CrossFrameAttnProcessor(state, name) if select(name, attn) else None

    with install_processors(unet, make):
        yield state

"""Cross-frame self-attention: the frames of a clip share keys and values.

An image UNet denoises each frame alone; letting each frame's self-attention queries see the
keys/values of other frames makes the frames agree on appearance.

- ``"full"``: every frame attends to all frames of its clip, as if the clip were one large image
  ("fully cross-frame interaction" of ControlVideo, method section).
- ``"sparse"``: frame f attends to the first frame and the previous one, [0, f-1] (sparse-causal
  attention of Tune-A-Video, section 4.1 "Network Inflation", also used by FateZero); frames 0 and 1
  read frame 0 twice, which does not change the result: duplicated keys with duplicated values give
  the same softmax average.

A batch holds B branches (e.g. the unconditional and conditional halves of classifier-free
guidance) of F frames each, frame f of branch b at index b*F + f.

Memory and speed: the logits of all frames against all frames, (F*N)^2 per head, are never held.
The keys and values of the attended frames go side by side into one call of torch's
``scaled_dot_product_attention`` (SDPA), whose fused kernels (flash and memory-efficient on CUDA,
flash on the CPU) stream the keys and keep memory linear in the frames. Only where torch would pick
its math kernel, which writes the logits out (`sdpa_writes_logits`), or where the caller sets a
chunk size (``--attention-chunk``), do queries go through SDPA a chunk at a time, so that at most
chunk x keys logits per (branch, head) exist at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
    "as_frames",
    "as_sequence",
    "attention",
    "chunked_attention",
    "cross_frame_attention",
    "default_chunk_size",
    "frame_attention",
    "gather_frames",
    "is_spatial_self_attention",
    "key_frames",
    "num_branches",
    "output_like",
    "sdpa_writes_logits",
    "sparse_causal",
]

MODES = ("full", "sparse")

LOGITS_BUDGET = 2**24
"""Attention logits (or additive bias) held at once by one chunk, in elements (64 MiB in fp32).

Only chunked paths read it: the math kernel's fallback and biased attention (ST-Layout). For one
ST-Layout self-attention call of 16 frames of 16x16 tokens (8 heads) it means chunks of 512
queries: about 1/10 of the dense formula's memory, in the same time as chunks of 2048
(benchmarks/attention_speed.py, benchmarks/layout_attention.py --only layer --chunk 0)."""

Bias = Callable[[int, int], "torch.Tensor | None"]
"""(first query, end query) -> additive logits bias for those query rows, broadcastable to
(..., end - first, keys), or None."""

# The kernels of torch.nn.attention.SDPBackend that write out all logits: MATH, and ERROR (none fits).
_MATH, _ERROR = 0, -1


def sdpa_writes_logits(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> bool:
    """Whether ``scaled_dot_product_attention(q, k, v, mask)`` would run torch's math kernel, which
    holds all queries x keys logits (and their softmax) at once, rather than a fused kernel (flash,
    memory-efficient, cuDNN) that streams the keys a block at a time.

    torch is asked directly, through the choice its dispatcher makes for these very tensors
    (``torch._fused_sdp_choice``). That choice weighs the device (CUDA has flash, memory-efficient
    and cuDNN kernels, the CPU a flash kernel), the dtype (CUDA flash: fp16/bf16 only;
    memory-efficient: fp32 too), the head dim (flash: at most 256; q, k and v equal), the shapes
    (4-D only), the mask (CUDA flash takes none), and the backend flags
    (``torch.backends.cuda.enable_flash_sdp``, ``enable_mem_efficient_sdp``, ``enable_cudnn_sdp``,
    or ``torch.nn.attention.sdpa_kernel``), which also govern the CPU's flash kernel. Where torch
    cannot answer (a device without that choice, such as MPS, or an older torch) the answer is
    True: chunk, to be safe.
    """
    try:
        choice = torch._fused_sdp_choice(q, k, v, mask, 0.0, False)
    except (AttributeError, NotImplementedError, RuntimeError):
        return True
    return int(choice) in (_MATH, _ERROR)


def default_chunk_size(batch_heads: int, num_keys: int, budget: int | None = None) -> int:
    """Queries per chunk so that batch_heads x chunk x num_keys logits stay within ``budget``
    (default `LOGITS_BUDGET`)."""
    budget = LOGITS_BUDGET if budget is None else budget
    return max(1, budget // max(1, batch_heads * num_keys))


def output_like(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """An empty (..., Nq, dv) output in the memory layout of q where it can be (same head dim), so
    that merging heads afterwards needs no copy."""
    return torch.empty_like(q) if v.shape[-1] == q.shape[-1] else q.new_empty(*q.shape[:-1], v.shape[-1])


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
    1/sqrt(d) if None; b: ``bias(first, end)`` for the rows of one chunk, zero if None.
    ``chunk_size`` None: ``default_chunk_size``. The output has the memory layout of q.
    """
    num_queries, num_keys = q.shape[-2], k.shape[-2]
    if chunk_size is None:
        chunk_size = default_chunk_size(math.prod(q.shape[:-2]), num_keys)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    out = output_like(q, v)
    for first in range(0, num_queries, chunk_size):
        end = min(first + chunk_size, num_queries)
        mask = None if bias is None else bias(first, end)
        out[..., first:end, :] = F.scaled_dot_product_attention(
            q[..., first:end, :], k, v, attn_mask=mask, scale=scale
        )
    return out


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    chunk_size: int | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """out = softmax(q k^T * s) v: one SDPA call, unless its kernel would write out the logits
    (`sdpa_writes_logits`) or ``chunk_size`` is set; then `chunked_attention`."""
    if chunk_size is None and not sdpa_writes_logits(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    return chunked_attention(q, k, v, chunk_size, scale)


def key_frames(frame: int, num_frames: int, mode: str) -> list[int]:
    """The frames whose keys/values ``frame`` attends to.

    full: 0..F-1. sparse: [0, f-1] (frame 0: [0, 0]), as Tune-A-Video writes it.
    """
    if mode == "full":
        return list(range(num_frames))
    if mode == "sparse":
        return [0, max(frame - 1, 0)]
    raise ValueError(f"frame attention mode must be one of {MODES}, got {mode!r}")


def gather_frames(x: torch.Tensor, frames: list[int]) -> torch.Tensor:
    """(B, F, heads, M, d) -> (B, heads, len(frames) * M, d): the listed frames' tokens, side by side."""
    return torch.cat([x[:, g] for g in frames], dim=-2)


def as_sequence(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B*F, heads, N, d) -> (B, heads, F*N, d): the frames of a branch as one sequence.

    A view, no copy, when x comes from a (B*F, N, heads*d) projection split into heads, as in
    `run_attention_layer`; a copy otherwise."""
    return x.unflatten(0, (-1, num_frames)).transpose(1, 2).flatten(2, 3)


def as_frames(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B, heads, F*N, d) -> (B*F, heads, N, d), the inverse of `as_sequence`."""
    return x.unflatten(2, (num_frames, -1)).transpose(1, 2).flatten(0, 1)


def sparse_causal(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B*F, heads, N, d) -> (B*F, heads, 2N, d): frame f's row holds the tokens of frames [0, f-1]
    (`key_frames`, mode "sparse")."""
    x5 = x.unflatten(0, (-1, num_frames))
    n = x.shape[-2]
    out = x.new_empty(*x5.shape[:-2], 2 * n, x.shape[-1])
    out[..., :n, :] = x5[:, :1]
    out[:, :1, ..., n:, :] = x5[:, :1]
    out[:, 1:, ..., n:, :] = x5[:, :-1]
    return out.flatten(0, 1)


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
) -> torch.Tensor:
    """Each frame's queries attend to the keys/values of ``key_frames(f)`` of its own branch.

        out[b, f] = softmax(q[b, f] K_bf^T * s) V_bf,   K_bf = [k[b, g] for g in key_frames(f)]

    q: (B*F, heads, N, d); k, v: (B*F, heads, M, d), frame f of branch b at index b*F + f;
    s: ``scale`` (1/sqrt(d) if None). Returns (B*F, heads, N, dv).

    full: K_bf is the same for every frame, so the branch's F*N queries meet its F*N keys in one
    `attention` call over `as_sequence` views. sparse: every frame's two frames of keys are laid
    out side by side (`sparse_causal`, 2x the keys in memory) and all frames go in one call.
    """
    if mode not in MODES:
        raise ValueError(f"frame attention mode must be one of {MODES}, got {mode!r}")
    num_branches(q.shape[0], num_frames)
    if mode == "full":
        q, k, v = (as_sequence(t, num_frames) for t in (q, k, v))
        return as_frames(attention(q, k, v, chunk_size, scale), num_frames)
    return attention(q, sparse_causal(k, num_frames), sparse_causal(v, num_frames), chunk_size, scale)


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

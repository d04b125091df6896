"""Anchor-based cross-frame attention: every frame attends to itself and a few cached anchor frames.

After Fairy ("Fast Parallelized Instruction-Guided Video-to-Video Synthesis", CVPR 2024,
section 3.1, anchor-based attention). The K anchor frames are denoised first, together, with full
cross-frame attention among themselves (`videdit.attention.frames`, mode "full"); their keys and
values are kept for every self-attention layer, every step and every guidance branch. Every other
frame's self-attention then reads

    out_f = softmax(Q_f [K_f, K_anc]^T / sqrt(d)) [V_f, V_anc]

    Q_f, K_f, V_f   queries, keys and values of frame f's own N tokens (one head: N x d)
    K_anc, V_anc    the cached keys and values of the K anchors' tokens, side by side (K*N x d)
    d               the head dimension

Nothing of frame f depends on any other non-anchor frame, so frames can be edited in chunks of
any size, in any order, on any number of workers, with memory that does not grow with the clip.

A frame that is itself an anchor reads [K_anc] alone: its own keys are already there, and a key
listed twice would count twice in the softmax (each frame's keys once, as in ``frames.py``).
So with every frame an anchor, this is exactly full cross-frame attention.

Batch layout (as in ``frames.py``): B branches (the guidance branches) x F frames, frame f of
branch b at index b*F + f. The cache holds, per (layer, step), K_anc and V_anc of all branches:
(B, heads, K*N, d).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from videdit.attention import install_processors, run_attention_layer
from videdit.attention.frames import (
    as_frames,
    as_sequence,
    attention,
    gather_frames,
    is_spatial_self_attention,
    num_branches,
    output_like,
)

if TYPE_CHECKING:
    from diffusers.models.attention_processor import Attention

__all__ = [
    "AnchorAttnProcessor",
    "AnchorCache",
    "AnchorState",
    "anchor_attention",
    "anchor_attention_processors",
]


def anchor_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    k_anc: torch.Tensor,
    v_anc: torch.Tensor,
    num_frames: int,
    is_anchor: list[bool] | None = None,
    chunk_size: int | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """out_f = softmax(Q_f [K_f, K_anc]^T * s) [V_f, V_anc] for every frame f of every branch.

    q, k, v: (B*F, heads, N, d), frame f of branch b at index b*F + f; k_anc, v_anc:
    (B, heads, K*N, d), branch b's anchors; s: ``scale`` (1/sqrt(d) if None). ``is_anchor[f]``:
    frame f is one of the anchors, so it reads [K_anc] alone; when every frame is, the branch's
    F*N queries go in one call. Each call is `videdit.attention.frames.attention`: one SDPA call,
    chunked only where its kernel would write out the logits or ``chunk_size`` is set.
    Returns (B*F, heads, N, dv).
    """
    branches = num_branches(q.shape[0], num_frames)
    if k_anc.shape[0] != branches:
        raise ValueError(f"anchor cache holds {k_anc.shape[0]} branches, the batch {branches}")
    if is_anchor is not None and all(is_anchor):
        return as_frames(attention(as_sequence(q, num_frames), k_anc, v_anc, chunk_size, scale), num_frames)
    q5, k5, v5 = (t.unflatten(0, (branches, num_frames)) for t in (q, k, v))
    out = output_like(q5, v5)
    for f in range(num_frames):
        if is_anchor is not None and is_anchor[f]:
            keys, values = k_anc, v_anc
        else:
            keys, values = torch.cat([k5[:, f], k_anc], dim=-2), torch.cat([v5[:, f], v_anc], dim=-2)
        out[:, f] = attention(q5[:, f], keys, values, chunk_size, scale)
    return out.flatten(0, 1)


@dataclass
class AnchorCache:
    """The anchors' keys and values, K_anc and V_anc (B, heads, K*N, d), per (layer name, step).

    ``keep_steps`` False keeps one step only (``--anchor-cache recompute``: the anchors run again
    beside every chunk, and memory stays at one step's worth).
    """

    keep_steps: bool = True
    entries: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def put(self, layer: str, step: int, k_anc: torch.Tensor, v_anc: torch.Tensor) -> None:
        if not self.keep_steps:
            for key in [key for key in self.entries if key[1] != step]:
                del self.entries[key]
        self.entries[(layer, step)] = (k_anc, v_anc)

    def get(self, layer: str, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            return self.entries[(layer, step)]
        except KeyError:
            raise RuntimeError(
                f"no anchor keys/values for layer {layer} at step {step}: denoise the anchors first "
                "(with the same steps and guidance branches)"
            ) from None

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for pair in self.entries.values() for t in pair)

    def clear(self) -> None:
        self.entries.clear()


@dataclass
class AnchorState:
    """What anchor processors read at each UNet call; set it between calls, never during one.

    ``anchors``: clip indices of the anchor frames. ``frames``: clip indices of the frames in the
    batch (one branch's worth). ``record``: the batch is exactly the anchors: full cross-frame
    attention among them, and their keys/values go into ``cache`` under ``step``. Otherwise the
    frames read the cache of ``step``.
    """

    anchors: list[int]
    cache: AnchorCache = field(default_factory=AnchorCache)
    frames: list[int] = field(default_factory=list)
    step: int = 0
    record: bool = False
    chunk_size: int | None = None

    def set(self, frames: list[int], step: int, record: bool) -> None:
        if record and list(frames) != list(self.anchors):
            raise ValueError(f"recording needs the anchors {self.anchors} as the batch, got {frames}")
        self.frames, self.step, self.record = list(frames), int(step), bool(record)


class AnchorAttnProcessor:
    """A diffusers attention processor for spatial self-attention layers: the standard steps of
    ``AttnProcessor2_0`` with full attention among the anchors (record) or ``anchor_attention``."""

    def __init__(self, state: AnchorState, name: str) -> None:
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
        num_branches(hidden_states.shape[0], len(self.state.frames), self.name)
        if attention_mask is not None:
            raise ValueError(f"anchor attention in {self.name} takes no attention_mask")
        return run_attention_layer(attn, hidden_states, lambda q, k, v, mask: self.attend(attn, q, k, v, mask),
                                   encoder_hidden_states, None, temb)

    def attend(self, attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask=None) -> torch.Tensor:
        """The attention itself (record: full attention among the anchors, whose keys and values are
        cached; otherwise every frame attends to the cached anchors), for processors that wrap this one."""
        s = self.state
        num_frames = len(s.frames)
        branches = num_branches(q.shape[0], num_frames, self.name)
        if s.record:
            every = list(range(num_frames))
            k_anc = gather_frames(k.unflatten(0, (branches, num_frames)), every)
            v_anc = gather_frames(v.unflatten(0, (branches, num_frames)), every)
            s.cache.put(self.name, s.step, k_anc, v_anc)
            return anchor_attention(q, k, v, k_anc, v_anc, num_frames, [True] * num_frames, s.chunk_size, attn.scale)
        k_anc, v_anc = s.cache.get(self.name, s.step)
        is_anchor = [f in s.anchors for f in s.frames]
        return anchor_attention(q, k, v, k_anc, v_anc, num_frames, is_anchor, s.chunk_size, attn.scale)


@contextmanager
def anchor_attention_processors(
    unet: Any,
    state: AnchorState,
    select: Callable[[str, Attention], bool] = is_spatial_self_attention,
) -> Iterator[AnchorState]:
    """Anchor attention on every spatial self-attention layer while the block runs; cross-attention
    (``attn2``) keeps its processor. All processors are restored on exit."""

    def make(name: str, attn: Attention) -> AnchorAttnProcessor | None:
        return AnchorAttnProcessor(state, name) if select(name, attn) else None

    with install_processors(unet, make):
        yield state

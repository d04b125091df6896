"""Attention processors, installed by layer name through diffusers' AttnProcessor API.

Every idea that changes attention (cross-frame, anchor, layout modulation, injection) is a
processor object set with ``unet.set_attn_processor({name: processor})``. Nothing here patches
``forward`` or counts layer calls: a processor learns where it is from the name it was installed
under, and what step it is at from an explicit state object.

Layer names are the keys of ``unet.attn_processors``, e.g.
``up_blocks.1.attentions.2.transformer_blocks.0.attn1.processor``; the helpers below accept a
name with or without the trailing ``.processor``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from diffusers.models.attention_processor import Attention

__all__ = [
    "Attend",
    "LayerName",
    "attention_layer",
    "install_processors",
    "is_cross_attention",
    "is_self_attention",
    "is_temporal",
    "parse_layer_name",
    "run_attention_layer",
]

MakeProcessor = Callable[[str, "Attention"], Any]
"""(layer name, its ``Attention`` module) -> a processor to install there, or None to keep the current one."""

Attend = Callable[["torch.Tensor", "torch.Tensor", "torch.Tensor", "torch.Tensor | None"], "torch.Tensor"]
"""(q, k, v, attention_mask) -> out, all (batch, heads, tokens, head_dim); the mask is already
prepared to (batch, heads, 1 or queries, keys) or None."""


def _strip(name: str) -> str:
    return name.removesuffix(".processor")


def is_self_attention(name: str) -> bool:
    """True for the first attention of a transformer block (``attn1``): tokens attend to tokens."""
    return _strip(name).rsplit(".", 1)[-1] == "attn1"


def is_cross_attention(name: str) -> bool:
    """True for the second attention of a transformer block (``attn2``): tokens attend to the prompt."""
    return _strip(name).rsplit(".", 1)[-1] == "attn2"


def is_temporal(name: str) -> bool:
    """True for attention over time in video UNets (``temp_attentions``, ``transformer_in``).

    Their batch is (batch x tokens) and their sequence is the frames, so per-frame processors
    must not go there.
    """
    parts = _strip(name).split(".")
    return "temp_attentions" in parts or parts[0] == "transformer_in"


@dataclass(frozen=True)
class LayerName:
    """Where an attention layer sits in a UNet.

    ``up_blocks.1.attentions.2.transformer_blocks.0.attn1`` is
    ``LayerName(kind="up", block=1, attention=2, transformer_block=0, attn="attn1")``;
    the mid block has ``block=0``; ``temporal`` marks ``temp_attentions``.
    """

    kind: str  # "down" | "mid" | "up"
    block: int
    attention: int
    transformer_block: int
    attn: str  # "attn1" | "attn2"
    temporal: bool = False


_LAYER_NAME = re.compile(
    r"^(?:(?P<kind>down|up)_blocks\.(?P<block>\d+)|mid_block)"
    r"\.(?P<group>attentions|temp_attentions)\.(?P<attention>\d+)"
    r"\.transformer_blocks\.(?P<transformer_block>\d+)"
    r"\.(?P<attn>attn1|attn2)$"
)


def parse_layer_name(name: str) -> LayerName | None:
    """Parse a UNet attention layer name; None for names outside the down/mid/up block pattern
    (e.g. ``transformer_in`` of a video UNet, or attention inside a VAE)."""
    match = _LAYER_NAME.match(_strip(name))
    if match is None:
        return None
    return LayerName(
        kind=match["kind"] or "mid",
        block=int(match["block"] or 0),
        attention=int(match["attention"]),
        transformer_block=int(match["transformer_block"]),
        attn=match["attn"],
        temporal=match["group"] == "temp_attentions",
    )


def attention_layer(unet: Any, name: str) -> Attention:
    """The ``Attention`` module that a key of ``unet.attn_processors`` names."""
    return unet.get_submodule(_strip(name))


@contextmanager
def install_processors(unet: Any, make_processor: MakeProcessor) -> Iterator[dict[str, Any]]:
    """Install processors chosen per layer; on exit put back exactly the ones that were there.

    ``make_processor(name, attn)`` is asked once for every key of ``unet.attn_processors``;
    a None answer keeps that layer's current processor. Yields ``{name: processor}`` for the
    layers that got a new one. The same processor objects come back on exit, even if the body
    raises, so a pipeline object can be reused by the next method.
    """
    before = dict(unet.attn_processors)
    installed = {}
    for name in before:
        processor = make_processor(name, attention_layer(unet, name))
        if processor is not None:
            installed[name] = processor
    # set_attn_processor consumes the dict it is given, so hand it a fresh one each time.
    unet.set_attn_processor({**before, **installed})
    try:
        yield installed
    finally:
        unet.set_attn_processor(dict(before))


def run_attention_layer(
    attn: Attention,
    hidden_states: torch.Tensor,
    attend: Attend,
    encoder_hidden_states: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    temb: torch.Tensor | None = None,
) -> torch.Tensor:
    """Everything an attention processor does around the attention itself, with ``attend`` in the middle.

    The steps are those of diffusers' ``AttnProcessor2_0`` (diffusers 0.42,
    ``models/attention_processor.py``): spatial norm, (B, C, H, W) -> (B, HW, C), mask preparation,
    group norm, q/k/v projections (keys from the prompt if given, after norm_cross), split heads,
    q/k norms, attention, merge heads, output projection and dropout, back to (B, C, H, W),
    residual, rescale. A processor that only changes which keys a query sees is then one line.
    """
    residual = hidden_states
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)

    input_ndim = hidden_states.ndim
    if input_ndim == 4:
        batch_size, channel, height, width = hidden_states.shape
        hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)

    context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
    batch_size, sequence_length, _ = context.shape

    if attention_mask is not None:
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
        attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])

    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

    query = attn.to_q(hidden_states)
    if encoder_hidden_states is None:
        encoder_hidden_states = hidden_states
    elif attn.norm_cross:
        encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
    key = attn.to_k(encoder_hidden_states)
    value = attn.to_v(encoder_hidden_states)

    head_dim = key.shape[-1] // attn.heads
    query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
    key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
    value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)

    hidden_states = attend(query, key, value, attention_mask)

    hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
    hidden_states = hidden_states.to(query.dtype)
    hidden_states = attn.to_out[0](hidden_states)  # linear
    hidden_states = attn.to_out[1](hidden_states)  # dropout

    if input_ndim == 4:
        hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
    if attn.residual_connection:
        hidden_states = hidden_states + residual
    return hidden_states / attn.rescale_output_factor

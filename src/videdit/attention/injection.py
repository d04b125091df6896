"""Plug-and-play injection: the source's features replace the edit's in the first editing steps.

Source: "Plug-and-Play Diffusion Features for Text-Driven Image-to-Image Translation" (CVPR 2023,
section 4): the residual-block features (the output of a ResNet block's second convolution,
before the skip is added) and the self-attention queries and keys of the source image at
timestep t carry its layout; putting them into the edit's UNet at the same t keeps the layout
while the prompt changes the appearance. VideoGrain (ICLR 2025, section 4, implementation details)
uses the layers in ``SD15_RESNETS`` and ``SD15_ATTENTIONS``; they are parameters here, so other
UNets (image-to-video models) pass their own.

Mechanics, all restored on exit:
- the current timestep comes from the UNet's own input (a forward pre-hook reading ``timestep``);
- ``{resnet}.conv2`` of each named ResNet block gets a forward hook that stores its output
  (``state.mode == "record"``) or returns the stored one (``"inject"``);
- each self-attention layer under the named transformer modules gets an `InjectionAttnProcessor`
  that wraps the processor already there: q and k are stored or replaced, then the wrapped
  processor's attention runs on them (its ``attend(attn, q, k, v, mask)`` if it has one, cross-frame
  attention for `CrossFrameAttnProcessor`, standard attention otherwise).
Names that do not exist in the UNet (smaller models have fewer levels and layers) are skipped.
A stored feature of F frames replaces all branches of a guided batch of B*F.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from videdit.attention import install_processors, is_self_attention, run_attention_layer

if TYPE_CHECKING:
    from diffusers.models.attention_processor import Attention

__all__ = [
    "SD15_ATTENTIONS",
    "SD15_RESNETS",
    "InjectionAttnProcessor",
    "InjectionState",
    "existing_modules",
    "feature_injection",
    "injected_attention_layers",
    "layout_resnets",
    "plug_and_play",
]

SD15_RESNETS = ("up_blocks.1.resnets.0", "up_blocks.1.resnets.1", "up_blocks.2.resnets.0")
SD15_ATTENTIONS = ("up_blocks.1.attentions.1", "up_blocks.1.attentions.2", "up_blocks.2.attentions.0",
                   "up_blocks.2.attentions.1", "up_blocks.2.attentions.2", "up_blocks.3.attentions.0")

MODES = ("off", "record", "inject")


@dataclass
class InjectionState:
    """mode: "off", "record" (store features per timestep) or "inject" (replace them where stored);
    ``keep``: the timesteps worth storing (None: all); ``timestep`` is set from the UNet's input."""

    mode: str = "off"
    keep: set[int] | None = None
    timestep: int | None = None
    features: dict[tuple[str, str, int], torch.Tensor] = field(default_factory=dict, repr=False)
    replaced: int = 0  # how many times a stored feature took the place of the running one

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"injection mode must be one of {MODES}, got {self.mode!r}")

    def exchange(self, layer: str, what: str, x: torch.Tensor) -> torch.Tensor:
        """Record ``x`` or return the stored feature in its place (repeated over the batch's branches)."""
        if self.timestep is None or self.mode == "off":
            return x
        key = (layer, what, self.timestep)
        if self.mode == "record":
            if self.keep is None or self.timestep in self.keep:
                self.features[key] = x.detach().clone()
            return x
        stored = self.features.get(key)
        if stored is None:
            return x
        if x.shape[0] % stored.shape[0] or x.shape[1:] != stored.shape[1:]:
            raise ValueError(f"injection at {layer}: stored {what} {tuple(stored.shape)} does not fit {tuple(x.shape)}")
        self.replaced += 1
        return stored.to(x.dtype).repeat(x.shape[0] // stored.shape[0], *([1] * (x.ndim - 1)))


def existing_modules(unet: Any, names: Sequence[str]) -> list[str]:
    """The names among ``names`` that are submodules of ``unet`` (others are skipped)."""
    present = []
    for name in names:
        try:
            unet.get_submodule(name)
        except AttributeError:
            continue
        present.append(name)
    return present


def layout_resnets(unet: Any, resnets: Sequence[str] = SD15_RESNETS) -> tuple[str, ...]:
    """The named ResNet blocks less those of the last up block, which runs at the full latent resolution.

    Plug-and-play injects residual features of the decoder's coarse levels (the paper's layer 4, 16x16 of
    SD's 64x64 latent): they hold the layout. At the full latent resolution they hold the appearance too:
    on shapes-sd (three levels, so ``up_blocks.2`` is full resolution) injecting
    ``up_blocks.2.resnets.0`` kept a red circle's place and also its colour, and "a red circle" ->
    "a blue circle" came out green-grey in every frame; without it, blue in 8 of 8 frames, in place.
    For SD 1.5 (four levels) this removes nothing."""
    last = f"up_blocks.{len(unet.up_blocks) - 1}."
    return tuple(r for r in resnets if not r.startswith(last))


def injected_attention_layers(unet: Any, attentions: Sequence[str]) -> list[str]:
    """Self-attention processor names (``...attn1.processor``) inside the named transformer modules."""
    prefixes = tuple(a.rstrip(".") + "." for a in existing_modules(unet, attentions))
    return [n for n in unet.attn_processors if n.startswith(prefixes) and is_self_attention(n)]


class InjectionAttnProcessor:
    """Stores or replaces the self-attention queries and keys, then runs the wrapped processor's attention."""

    def __init__(self, state: InjectionState, name: str, inner: Any = None) -> None:
        self.state, self.name, self.inner = state, name, inner

    def inner_attend(self, attn: Attention, q, k, v, mask):
        inner = self.inner
        if hasattr(inner, "attend"):  # cross-frame and layout processors expose their attention
            return inner.attend(attn, q, k, v, mask)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attn.scale)

    def attend(self, attn: Attention, q, k, v, mask=None):
        q = self.state.exchange(self.name, "q", q)
        k = self.state.exchange(self.name, "k", k)
        return self.inner_attend(attn, q, k, v, mask)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        return run_attention_layer(attn, hidden_states, lambda q, k, v, m: self.attend(attn, q, k, v, m),
                                   encoder_hidden_states, attention_mask, temb)


def _timestep_of(args: tuple, kwargs: dict) -> int | None:
    t = kwargs.get("timestep", args[1] if len(args) > 1 else None)
    if t is None:
        return None
    return int(torch.as_tensor(t).flatten()[0].item())


@contextmanager
def feature_injection(unet: Any, state: InjectionState, resnets: Sequence[str] = SD15_RESNETS,
                      attentions: Sequence[str] = SD15_ATTENTIONS) -> Iterator[dict[str, list[str]]]:
    """Record or inject the named layers' features while the block runs (see the module docstring).

    Install it inside the context that sets the attention processors it should wrap (cross-frame
    or layout attention). Yields the layers actually used: {"resnets": [...], "attentions": [...]}.
    """
    handles = []

    def on_unet_call(module, args, kwargs):
        state.timestep = _timestep_of(args, kwargs)

    handles.append(unet.register_forward_pre_hook(on_unet_call, with_kwargs=True))
    used_resnets = existing_modules(unet, [f"{r}.conv2" for r in resnets])
    for conv in used_resnets:
        def on_conv2(module, args, output, layer=conv):
            return state.exchange(layer, "conv2", output)

        handles.append(unet.get_submodule(conv).register_forward_hook(on_conv2))
    layers = set(injected_attention_layers(unet, attentions))

    def make(name: str, attn: Attention):
        return InjectionAttnProcessor(state, name, attn.processor) if name in layers else None

    try:
        with install_processors(unet, make):
            yield {"resnets": [c.removesuffix(".conv2") for c in used_resnets], "attentions": sorted(layers)}
    finally:
        for handle in handles:
            handle.remove()
        state.timestep = None


def plug_and_play(unet: Any, editing_timesteps: Sequence, steps: int) -> tuple[InjectionState, AbstractContextManager]:
    """Plug-and-play injection of a Stable-Diffusion-class UNet for the first ``steps`` editing timesteps:
    the state (it keeps only those timesteps' features) and the context that installs it on the layers
    of `layout_resnets` and ``SD15_ATTENTIONS`` (a no-op yielding {} when ``steps`` is 0). The caller
    sets ``state.mode``: "record" while inverting, "inject" while editing."""
    state = InjectionState(keep={int(t) for t in editing_timesteps[:steps]})
    if steps <= 0:
        return state, nullcontext({})
    return state, feature_injection(unet, state, layout_resnets(unet), SD15_ATTENTIONS)

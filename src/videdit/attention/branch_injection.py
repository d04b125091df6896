"""In-batch feature injection: the source branch of a batch lends its features to the editing branches.

AnyV2V (TMLR 2024, arXiv 2403.14468, section 3.3): the image-to-video UNet runs once per step on a
batch of branches [source, negative, positive]. The source branch sees the source clip's inverted
latent z^src_t (and the source first frame); the editing branches see the current latent (and the
edited first frame). During the first steps, in place,
- the residual feature f = conv2 output of named ResNet blocks (until step tau_conv * N),
- the spatial self-attention queries and keys Q, K of named transformer layers (until tau_sa * N),
- the temporal attention queries and keys of named temporal layers (until tau_ta * N)
of the editing branches are replaced by the source branch's, while their values stay their own:
the edit keeps the source's layout (Q, K decide where each token looks) and motion (temporal Q, K
decide which frames follow which), and takes its appearance from the edited first frame.

The hooks and processors are those of `videdit.attention.injection.feature_injection` (installed
by layer name, restored on exit); this module gives it a state whose ``exchange`` copies branch 0
over the others instead of replaying stored features. Batch layout (diffusers' video UNets): spatial
layers and ResNets see (branches x frames) images, temporal layers (branches x pixels) sequences,
branch-major in both, so branch b is the b-th of ``branches`` equal slices of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = [
    "I2VGEN_XL_RESNETS",
    "I2VGEN_XL_SPATIAL",
    "I2VGEN_XL_TEMPORAL",
    "BranchInjectionState",
    "injection_timesteps",
    "layer_kind",
]

# The layers AnyV2V injects into I2VGen-XL (its public code, configs of the paper's results).
I2VGEN_XL_RESNETS = ("up_blocks.1.resnets.1",)
I2VGEN_XL_SPATIAL = ("up_blocks.1.attentions.1", "up_blocks.1.attentions.2",
                     "up_blocks.2.attentions.0", "up_blocks.2.attentions.1", "up_blocks.2.attentions.2",
                     "up_blocks.3.attentions.0", "up_blocks.3.attentions.1", "up_blocks.3.attentions.2")
I2VGEN_XL_TEMPORAL = tuple(name.replace(".attentions.", ".temp_attentions.") for name in I2VGEN_XL_SPATIAL)

KINDS = ("conv", "spatial", "temporal")


def layer_kind(layer: str, what: str) -> str:
    """"conv" for a ResNet feature, "temporal" for attention over frames, "spatial" otherwise."""
    if what == "conv2":
        return "conv"
    return "temporal" if "temp_attentions" in layer.split(".") else "spatial"


def injection_timesteps(timesteps, tau: float) -> frozenset[int]:
    """The timesteps of the first int(tau * N) of the N sampling steps (AnyV2V's thresholds)."""
    n = int(tau * len(timesteps))
    return frozenset(int(t) for t in list(timesteps)[:n])


@dataclass
class BranchInjectionState:
    """``at[kind]``: the timesteps at which layers of that kind inject; ``timestep`` is set from the
    UNet's input by `feature_injection`; ``branches``: how many equal slices the batch holds."""

    at: dict[str, frozenset[int]] = field(default_factory=dict)
    branches: int = 3
    timestep: int | None = None

    def active(self, kind: str) -> bool:
        return self.timestep is not None and self.timestep in self.at.get(kind, ())

    def exchange(self, layer: str, what: str, x: torch.Tensor) -> torch.Tensor:
        """x with every branch replaced by branch 0, while ``layer`` injects at the current timestep."""
        if not self.active(layer_kind(layer, what)) or x.shape[0] % self.branches:
            return x
        source = x[: x.shape[0] // self.branches]
        return source.repeat(self.branches, *([1] * (x.ndim - 1)))

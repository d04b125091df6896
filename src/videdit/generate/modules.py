"""The streaming modules of StreamingT2V (arXiv 2403.14773, section 4): CAM and APM.

CAM, the conditional attention module (section 4.1), gives a new chunk of F = 16 frames the last
F_cond = 8 frames of the video so far. A copy of the base UNet's encoder (conv_in, time embedding,
``transformer_in``, the down blocks, the mid block) reads the first 8 frames of the noisy latent plus
an embedding of the 8 conditioning frames E(frames), added after its ``transformer_in``. Each of its
outputs c_i (every skip connection and the mid block) enters the base UNet through a temporal
cross-attention per pixel, whose queries are the base UNet's F frames x_i and whose keys and values
are the branch's 8 frames:

    x_i <- x_i + W_out Attn(Q = W_in GN(x_i), K = V = c_i)      (W_out zero-initialised)

APM, the appearance preservation module (section 4.2), keeps the look of an anchor frame (frame 0 of
the first chunk): its CLIP image embedding becomes 16 tokens (Linear, SiLU, Linear), appended after
the 77 text tokens; every spatial cross-attention of the base UNet mixes them into its context,

    context = text_77 + SiLU(alpha) LayerNorm(Conv1d_{93 -> 77}(tokens_93)),  alpha initialised to 0.

Both start as the identity (zero W_out, zero conv_out of E, alpha = 0), so training begins from the
base model. Sizes (320 ... 1280 channels, 1024-d tokens) come from the base model; the frame
encoder's widths (32, 96, 256, 512) are the paper code's.
"""

from __future__ import annotations

import contextlib
import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from .t2v import unet_encoder

FRAME_CHANNELS = (32, 96, 256, 512)
COND_FRAMES = 8
IMAGE_TOKENS = 16
IMAGE_HIDDEN = 1280


class FrameEmbedding(nn.Module):
    """E: conditioning frames (N, 3, H, W) in [-1, 1] -> (N, C0, H/d, W/d), d the VAE's downsampling
    (8 for the paper's base); SiLU after each conv, pairs of convs whose second one has stride 2 in the
    last log2(d) pairs (all three for d = 8), a zero-initialised 3x3 conv to the UNet's first width."""

    def __init__(self, out_channels: int, channels=FRAME_CHANNELS, downsample: int = 8):
        super().__init__()
        pairs, halvings = len(channels) - 1, int(downsample).bit_length() - 1
        if downsample < 1 or 2 ** halvings != downsample or halvings > pairs:
            raise ValueError(f"frame embedding: downsampling {downsample} is not a power of two up to {2 ** pairs}")
        self.conv_in = nn.Conv2d(3, channels[0], 3, padding=1)
        blocks = []
        for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:])):
            stride = 2 if i >= pairs - halvings else 1
            blocks += [nn.Conv2d(c_in, c_in, 3, padding=1), nn.Conv2d(c_in, c_out, 3, padding=1, stride=stride)]
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(channels[-1], out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.conv_in(frames))
        for conv in self.blocks:
            h = F.silu(conv(h))
        return self.conv_out(h)


class CrossFrameMerger(nn.Module):
    """x + W_out Attn(Q = W_in GN(x), K = V = c) over the frames of each pixel, heads C/64.

    The queries are the base UNet's frames after GroupNorm and W_in; keys and values are the branch's
    raw features; ``attention`` is a diffusers `Attention` (its to_q, to_k, to_v, to_out)."""

    def __init__(self, channels: int, head_dim: int = 64):
        from diffusers.models.attention_processor import Attention

        super().__init__()
        head_dim = min(head_dim, channels)
        self.norm = nn.GroupNorm(math.gcd(32, channels), channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.attention = Attention(query_dim=channels, cross_attention_dim=channels, heads=channels // head_dim,
                                   dim_head=head_dim, bias=False)
        self.proj_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    @staticmethod
    def _per_pixel(x: torch.Tensor, frames: int) -> torch.Tensor:
        """(B F, C, h, w) -> (B h w, F, C)."""
        n, c, hh, ww = x.shape
        return x.reshape(n // frames, frames, c, hh * ww).permute(0, 3, 1, 2).reshape(-1, frames, c)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, frames: int) -> torch.Tensor:
        n, c, hh, ww = x.shape
        batch = n // frames
        q = self.proj_in(self._per_pixel(self.norm(x), frames))
        kv = self._per_pixel(cond, cond.shape[0] // batch)
        a = self.proj_out(self.attention(q, encoder_hidden_states=kv))  # (B h w, F, C)
        return x + a.reshape(batch, hh * ww, frames, c).permute(0, 2, 3, 1).reshape(n, c, hh, ww)


def skip_channels(unet) -> list[int]:
    """Channels of the UNet encoder's outputs, in `unet_encoder`'s order (skips, then the mid block)."""
    out = [unet.config.block_out_channels[0]]
    for block in unet.down_blocks:
        width = block.resnets[-1].out_channels
        out += [width] * (len(block.resnets) + (1 if block.downsamplers else 0))
    return out + [unet.config.block_out_channels[-1]]


class CAM(nn.Module):
    """The conditional attention module: a trainable copy of the base UNet's encoder, the frame
    embedding E and one merger per encoder output."""

    def __init__(self, unet, frame_channels=FRAME_CHANNELS, cond_frames: int = COND_FRAMES, downsample: int = 8):
        super().__init__()
        self.cond_frames, self.downsample = cond_frames, downsample
        for name in ("conv_in", "time_proj", "time_embedding", "transformer_in", "down_blocks", "mid_block"):
            setattr(self, name, copy.deepcopy(getattr(unet, name)))
        self.frame_embedding = FrameEmbedding(unet.config.block_out_channels[0], tuple(frame_channels), downsample)
        self.mergers = nn.ModuleList(CrossFrameMerger(c) for c in skip_channels(unet))

    @property
    def dtype(self) -> torch.dtype:
        return self.conv_in.weight.dtype

    def branch(self, x: torch.Tensor, t, text: torch.Tensor, frames: torch.Tensor) -> list[torch.Tensor]:
        """The branch's outputs c_i for the noisy latent x (B, C, F, h, w) and conditioning ``frames``
        (B, 8, 3, H, W) in [-1, 1]: the branch reads x's first 8 frames."""
        x8 = x[:, :, : self.cond_frames]
        # contiguous: frames made by permuting (H, W, 3) images are channels-last, whose conv backward
        # crashed torch 2.13 on the CPU
        added = self.frame_embedding(frames.flatten(0, 1).to(self.dtype).contiguous())
        return unet_encoder(self, x8, t, text, added=added)

    def merge_fn(self, features: list[torch.Tensor]):
        """merge(i, x_i, F) for `unet_forward`: the i-th merger with the branch's i-th output."""
        return lambda i, x, frames: self.mergers[i](x, features[i], frames)


def spatial_cross_attentions(unet) -> list[str]:
    """Processor names of the base UNet's spatial cross-attentions (attn2 of the Transformer2D layers;
    the temporal transformers take no context)."""
    return [n for n in unet.attn_processors if n.endswith("attn2.processor") and "temp_attentions" not in n
            and not n.startswith("transformer_in")]


class ContextMixer(nn.Module):
    """context = text_L + SiLU(alpha) LayerNorm(Conv1d_{L + 16 -> L}(tokens))."""

    def __init__(self, text_tokens: int, image_tokens: int, dim: int):
        super().__init__()
        self.text_tokens = text_tokens
        self.conv = nn.Conv1d(text_tokens + image_tokens, text_tokens, kernel_size=3, padding=1)
        self.norm = nn.LayerNorm(dim)
        self.alpha = nn.Parameter(torch.zeros(1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, : self.text_tokens] + F.silu(self.alpha) * self.norm(self.conv(tokens))


class APMProcessor:
    """Attention with the APM's mixed context when the context holds image tokens; plain otherwise.
    Not an nn.Module, so that installing it adds no parameters to the UNet."""

    def __init__(self, mixer: ContextMixer, inner):
        self.mixer, self.inner = mixer, inner

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        if encoder_hidden_states is not None and encoder_hidden_states.shape[1] > self.mixer.text_tokens:
            encoder_hidden_states = self.mixer(encoder_hidden_states)
        return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)


class APM(nn.Module):
    """The appearance preservation module: the image-token MLP (``resampler``) and one context mixer
    per spatial cross-attention of the base UNet, keyed by layer name."""

    def __init__(self, unet, image_dim: int, text_tokens: int = 77, image_tokens: int = IMAGE_TOKENS,
                 hidden: int = IMAGE_HIDDEN):
        super().__init__()
        dim = unet.config.cross_attention_dim
        self.image_tokens, self.dim = image_tokens, dim
        self.resampler = nn.Sequential(nn.Linear(image_dim, hidden), nn.SiLU(), nn.Linear(hidden, image_tokens * dim))
        self.layers = spatial_cross_attentions(unet)
        self.mixers = nn.ModuleDict({_key(n): ContextMixer(text_tokens, image_tokens, dim) for n in self.layers})

    def tokens(self, image_embedding: torch.Tensor) -> torch.Tensor:
        """(B, D_image) pooled image embedding -> (B, 16, D) tokens."""
        return self.resampler(image_embedding).reshape(-1, self.image_tokens, self.dim)

    @contextlib.contextmanager
    def installed(self, unet):
        """Install the mixing processors in ``unet`` by layer name; restore the previous ones after."""
        from diffusers.models.attention_processor import AttnProcessor2_0

        before = dict(unet.attn_processors)
        mine = {n: APMProcessor(self.mixers[_key(n)], AttnProcessor2_0()) for n in self.layers}
        unet.set_attn_processor({n: mine.get(n, p) for n, p in before.items()})
        try:
            yield
        finally:
            unet.set_attn_processor(before)


def _key(processor_name: str) -> str:
    return processor_name.removesuffix(".processor").replace(".", "_")


# --- saving and loading: <model>/streaming/{config.json, model.safetensors} -----------------------

def save_modules(folder, cam: CAM | None, apm: APM | None, dtype: torch.dtype | None = None) -> None:
    """Write CAM and APM as one safetensors file (keys ``cam.*``, ``apm.*``) and the sizes that rebuild them."""
    import json
    from pathlib import Path

    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config, tensors = {}, {}
    if cam is not None:
        config["cam"] = dict(frame_channels=[cam.frame_embedding.conv_in.out_channels]
                             + [b.out_channels for b in cam.frame_embedding.blocks[1::2]], cond_frames=cam.cond_frames,
                             downsample=cam.downsample)
        tensors.update({f"cam.{k}": v for k, v in cam.state_dict().items()})
    if apm is not None:
        first = next(iter(apm.mixers.values()))
        config["apm"] = dict(image_dim=apm.resampler[0].in_features, hidden=apm.resampler[0].out_features,
                             image_tokens=apm.image_tokens, text_tokens=first.text_tokens)
        tensors.update({f"apm.{k}": v for k, v in apm.state_dict().items()})
    tensors = {k: (v.to(dtype) if dtype is not None else v).detach().contiguous().clone() for k, v in tensors.items()}
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def load_modules(folder, unet) -> tuple[CAM | None, APM | None]:
    """CAM and APM from a ``streaming/`` folder, for ``unet``; a `UserError` on missing or unexpected keys."""
    import json
    from pathlib import Path

    from safetensors.torch import load_file

    from ..errors import UserError
    from ..models import check_safetensors

    folder = Path(folder)
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise UserError(f"{folder} holds no streaming modules (config.json and model.safetensors)")
    check_safetensors(folder / "model.safetensors")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    state = load_file(str(folder / "model.safetensors"))
    cam = CAM(unet, **config["cam"]) if "cam" in config else None
    apm = APM(unet, **config["apm"]) if "apm" in config else None
    for prefix, module in (("cam.", cam), ("apm.", apm)):
        if module is None:
            continue
        part = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        missing, unexpected = module.load_state_dict(part, strict=False)
        if missing or unexpected:
            what = (missing or unexpected)[0]
            raise UserError(f"streaming modules in {folder} do not fit this base model ({len(missing)} missing, "
                            f"{len(unexpected)} unexpected weights, e.g. {prefix}{what})")
        module.to(device=next(unet.parameters()).device, dtype=unet.dtype).requires_grad_(False).eval()
    return cam, apm

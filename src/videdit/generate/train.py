"""Training for long text-to-video: ``shapes-t2v`` (a small UNet3D on ShapesWorld clips) and the
streaming modules CAM and APM (StreamingT2V, arXiv 2403.14773, section 4) on any base model.

Both reuse the ShapesWorld trainer's loop (`videdit.shapes.train.diffusion_loop`: eps-prediction,
min-SNR weights, gradient clipping, EMA, a wall-time budget, resumable checkpoints in the run folder).

Streaming modules are trained as the paper trains them: a clip of F = 16 frames is the target, its
first 8 frames (RGB) are the CAM's conditioning frames, frame 0 the APM's anchor; the base UNet is
frozen except its temporal layers (``--train-base temporal``, the issue's reading of the paper; the
public training config instead trains the spatial layers and freezes the temporal ones:
``--train-base spatial``), and ``none`` trains the modules alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import UserError

TEMPORAL = ("transformer_in", "temp_attentions", "temp_convs")
TRAIN_BASE = ("temporal", "spatial", "none")


def _clips(data: str, rng: np.random.Generator, n: int, frames: int, size: int) -> tuple[np.ndarray, list[str]]:
    """(n, F, H, W, 3) uint8 clips and captions: ShapesWorld, or windows of the videos of ``data``."""
    if data == "shapes":
        from ..shapes.train import clip_batch

        batch = clip_batch(rng, n, frames)
        return batch.frames, batch.captions
    return VideoFolder.get(data).sample(rng, n, frames, size)


@dataclass
class VideoFolder:
    """A folder of videos with captions: ``metadata.jsonl`` lines of ``{"video": PATH, "caption": TEXT}``."""

    root: Path
    items: list[tuple[Path, str]]
    _cache = {}

    @classmethod
    def get(cls, data: str) -> "VideoFolder":
        if data not in cls._cache:
            root = Path(data)
            meta = root / "metadata.jsonl"
            if not meta.is_file():
                raise UserError(f"{root}: no metadata.jsonl (lines of {{\"video\": ..., \"caption\": ...}}); or use 'shapes'")
            items = []
            for number, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                        items.append((root / row["video"], str(row["caption"])))
                    except (ValueError, KeyError, TypeError):
                        raise UserError(f"{meta}:{number}: not a {{\"video\", \"caption\"}} object") from None
            if not items:
                raise UserError(f"{meta} lists no videos")
            cls._cache[data] = cls(root, items)
        return cls._cache[data]

    def sample(self, rng, n, frames, size):
        from ..video import read_clip, resize_frames

        clips, captions = [], []
        for i in rng.integers(0, len(self.items), n):
            path, caption = self.items[i]
            clip = read_clip(path).frames
            if len(clip) < frames:
                clip = np.concatenate([clip, clip[-1:].repeat(frames - len(clip), 0)])
            start = int(rng.integers(0, len(clip) - frames + 1))
            clips.append(resize_frames(clip[start:start + frames], (size, size)))
            captions.append(caption)
        return np.stack(clips), captions


def inflate_unet(image_unet) -> "UNet3DConditionModel":
    """A UNet3DConditionModel that starts as ``image_unet`` applied to each frame: the image model's blocks
    (same widths, depth and heads) with its weights, and temporal layers that start as the identity.

    This is how text-to-video models are built from a text-to-image model (ModelScope T2V, arXiv 2308.06571,
    section 3; Video LDM, arXiv 2304.08818, section 3.1): the spatial layers keep what the image model knows
    about single frames, and training only has to add time. Temporal convolutions are zero-initialised by
    diffusers already; the temporal transformers' output projections are zeroed here, so that each one,
    being residual, is the identity until trained."""
    from diffusers import UNet3DConditionModel

    c = image_unet.config
    kind = {"CrossAttnDownBlock2D": "CrossAttnDownBlock3D", "DownBlock2D": "DownBlock3D",
            "CrossAttnUpBlock2D": "CrossAttnUpBlock3D", "UpBlock2D": "UpBlock3D"}
    try:
        down, up = [kind[b] for b in c.down_block_types], [kind[b] for b in c.up_block_types]
    except KeyError as e:
        raise UserError(f"cannot inflate a UNet with a {e.args[0]} block into a video UNet") from None
    # Both classes read `attention_head_dim` as a number of heads n (diffusers keeps the old name), but
    # UNet3DConditionModel gives its spatial transformers C / n heads of width n, and its input temporal
    # transformer takes one number only. One width for every block: the image UNet's first-block head
    # width, so the first blocks split heads exactly as the image UNet does; deeper blocks get more,
    # narrower heads than it had (same weights, another split), which training adjusts.
    heads = c.num_attention_heads or c.attention_head_dim
    heads = heads[0] if isinstance(heads, (list, tuple)) else heads
    per_block = c.block_out_channels[0] // heads
    unet = UNet3DConditionModel(sample_size=c.sample_size, in_channels=c.in_channels, out_channels=c.out_channels,
                                down_block_types=down, up_block_types=up, block_out_channels=c.block_out_channels,
                                layers_per_block=c.layers_per_block, norm_num_groups=c.norm_num_groups,
                                cross_attention_dim=c.cross_attention_dim, attention_head_dim=per_block)
    # The video UNet's spatial transformers project with linear layers where the image UNet may use 1x1
    # convolutions: the same map, stored with two trailing unit dimensions.
    own = unet.state_dict()
    weights = {k: v.reshape(own[k].shape) if k in own and v.dim() == 4 and own[k].dim() == 2 else v
               for k, v in image_unet.state_dict().items()}
    missing, unexpected = unet.load_state_dict(weights, strict=False)
    spatial_missing = [k for k in missing if not any(part in k for part in TEMPORAL)]
    if spatial_missing or unexpected:
        raise UserError(f"the image UNet does not map onto the video UNet: missing {spatial_missing[:3]}, "
                        f"unexpected {unexpected[:3]}")
    with torch.no_grad():
        for name, module in unet.named_modules():
            if name.endswith("proj_out") and any(part in name for part in ("transformer_in", "temp_attentions")):
                module.weight.zero_()
                module.bias.zero_()
    return unet


def train_t2v(out: Path, seed: int, minutes: float, steps: int | None, init_dir: Path, batch: int = 4,
              frames: int = 16, lr: float = 5e-4, drop_caption: float = 0.1, data: str = "shapes",
              checkpoint_minutes: float = 5.0, device: torch.device = torch.device("cpu")) -> Path:
    """shapes-t2v: a UNet3DConditionModel on 16-frame clips with their captions, inflated from the UNet of
    shapes-sd (``init_dir``, `inflate_unet`) whose VAE, tokenizer and text encoder it keeps, frozen. Writes ``OUT/pipeline`` (and ``-fp16``) in the layout
    `videdit.generate.t2v.load_t2v` reads."""
    from diffusers import StableDiffusionPipeline, UNet3DConditionModel

    from ..shapes.train import TokenCache, diffusion_loop, posterior_sample, to_tensor

    sd = StableDiffusionPipeline.from_pretrained(init_dir, torch_dtype=torch.float32)
    vae, text_encoder = sd.vae.eval().requires_grad_(False), sd.text_encoder.eval().requires_grad_(False)
    tokens = TokenCache(sd.tokenizer)
    torch.manual_seed(seed)
    unet = inflate_unet(sd.unet)
    for m in (vae, text_encoder):
        m.to(device)
    scale = vae.config.scaling_factor

    def sample_batch(rng, n):
        clips, captions = _clips(data, rng, n, frames, 64)
        captions = ["" if rng.random() < drop_caption else c for c in captions]
        with torch.no_grad():
            post = vae.encode(to_tensor(clips.reshape(-1, *clips.shape[2:])).to(device)).latent_dist
            z0 = (posterior_sample(post, rng) * scale).view(n, frames, -1, *post.mean.shape[-2:]).permute(0, 2, 1, 3, 4)
            hidden = text_encoder(tokens(captions).to(device))[0]
        return z0, None, hidden

    diffusion_loop(out, "t2v", {"unet": unet}, ["unet"], sample_batch, seed, minutes, steps, lr, batch,
                   checkpoint_minutes=checkpoint_minutes, device=device)
    return write_t2v(out / "pipeline", unet, sd)


def write_t2v(dest: Path, unet, sd, dtype: torch.dtype = torch.float32) -> Path:
    """A text-to-video model folder: the trained UNet3D with shapes-sd's VAE, text encoder and tokenizer."""
    import diffusers

    from ..shapes.train import ddim_scheduler

    for sub, module in (("unet", unet), ("vae", sd.vae), ("text_encoder", sd.text_encoder)):
        module.to(dtype).save_pretrained(dest / sub, safe_serialization=True)
        module.to(torch.float32)
    sd.tokenizer.save_pretrained(dest / "tokenizer")
    ddim_scheduler("epsilon").save_pretrained(dest / "scheduler")
    index = {"_class_name": "TextToVideoSDPipeline", "_diffusers_version": diffusers.__version__,
             "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet3DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"]}
    (dest / "model_index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return dest


@dataclass
class StreamingCondition:
    """What the streaming denoiser sees besides the noisy latent (passed as the loop's hidden states)."""

    text: torch.Tensor      # (B, L, D)
    frames: torch.Tensor    # (B, 8, 3, H, W) in [-1, 1], the CAM's conditioning frames
    image: torch.Tensor     # (B, D_image), the anchor's pooled embedding (zeros: no anchor)


class StreamingDenoiser(nn.Module):
    """The base UNet with CAM and APM: eps(x_t, t | text, conditioning frames, anchor)."""

    def __init__(self, unet, cam, apm):
        super().__init__()
        self.unet, self.cam, self.apm = unet, cam, apm

    def forward(self, x, t, encoder_hidden_states: StreamingCondition):
        from types import SimpleNamespace

        from .t2v import unet_forward

        c = encoder_hidden_states
        context = torch.cat([c.text, self.apm.tokens(c.image)], 1) if self.apm is not None else c.text
        merge = self.cam.merge_fn(self.cam.branch(x, t, c.text, c.frames)) if self.cam is not None else None
        if self.apm is None:
            return SimpleNamespace(sample=unet_forward(self.unet, x, t, context, merge))
        with self.apm.installed(self.unet):
            return SimpleNamespace(sample=unet_forward(self.unet, x, t, context, merge))


def train_streaming(data: str, base: str, out: Path, seed: int = 0, minutes: float = 60.0, steps: int | None = None,
                    batch: int = 2, lr: float = 1e-4, train_base: str = "temporal", device: str = "cpu",
                    checkpoint_minutes: float = 5.0, p_drop: float = 0.1, size: int | None = None) -> Path:
    """Train CAM and APM for ``base`` on ``data`` (``shapes`` or a folder with metadata.jsonl); resumable
    from ``out``; writes ``OUT/streaming`` (and ``OUT/unet`` when base layers were trained)."""
    from ..i2v import encode_image
    from ..models import pick_device
    from ..shapes.train import diffusion_loop, posterior_sample, to_tensor
    from .modules import APM, CAM, save_modules
    from .stream import load_image_encoder
    from .t2v import load_t2v, native_size

    if train_base not in TRAIN_BASE:
        raise UserError(f"--train-base must be one of {', '.join(TRAIN_BASE)}")
    dev = pick_device(device)
    model = load_t2v(base, device=str(dev), dtype="fp32")
    has_image = (model.path / "image_encoder").is_dir()
    if has_image:
        load_image_encoder(model)
    unet = model.unet
    torch.manual_seed(seed)
    cam = CAM(unet, downsample=2 ** (len(model.vae.config.block_out_channels) - 1))  # frames to latent size
    image_dim = model.extras["image_encoder"].config.projection_dim if has_image else None
    apm = APM(unet, image_dim=image_dim, text_tokens=model.tokenizer.model_max_length) if has_image else None
    for name, p in unet.named_parameters():
        temporal = any(part in name for part in TEMPORAL)
        p.requires_grad_(train_base == "temporal" and temporal or train_base == "spatial" and not temporal)
    denoiser = StreamingDenoiser(unet, cam, apm)
    size, scale, vae = size or native_size(model), model.vae.config.scaling_factor, model.vae
    out.mkdir(parents=True, exist_ok=True)

    def sample_batch(rng, n):
        from ..diffusion import encode_text

        clips, captions = _clips(data, rng, n, 16, size)
        captions = ["" if rng.random() < p_drop else c for c in captions]
        with torch.no_grad():
            pixels = to_tensor(clips.reshape(-1, *clips.shape[2:])).to(dev)
            post = vae.encode(pixels).latent_dist
            z0 = (posterior_sample(post, rng) * scale).view(n, 16, -1, *post.mean.shape[-2:]).permute(0, 2, 1, 3, 4)
            images = (torch.cat([encode_image(model, c[0])[:, 0] for c in clips]) if has_image
                      else torch.zeros(n, 1, device=dev))
            drop = torch.from_numpy(rng.random(n) < p_drop).to(dev)
            images = torch.where(drop[:, None], torch.zeros_like(images), images)
        frames = pixels.view(n, 16, *pixels.shape[1:])[:, :cam.cond_frames]
        return z0, None, StreamingCondition(encode_text(model, captions), frames, images)

    diffusion_loop(out, "streaming", {"unet": denoiser}, ["unet"], sample_batch, seed, minutes, steps, lr, batch,
                   checkpoint_minutes=checkpoint_minutes, device=dev)
    save_modules(out / "streaming", cam, apm)
    if train_base != "none":
        unet.save_pretrained(out / "unet", safe_serialization=True)
    return out

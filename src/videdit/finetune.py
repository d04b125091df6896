"""Equivariant finetuning of an instruction editor: ``videdit finetune-equivariant MODEL DATA -o OUT``.

After Fairy (CVPR 2024, section 3.3, equivariant finetuning): training continues on
(source, instruction, target) triples where one random affine transform A is applied to both the
source and the target image, so the editor learns edit(A x) = A edit(x): an edit that moves with
the camera and the objects, which is what consecutive video frames ask of it. A is drawn per triple:

    A = T(c + t) R(theta) H(phi) S(s) T(-c)

    theta  rotation, uniform in [-5, 5] degrees       phi  shear, uniform in [-5, 5] degrees
    t      translation, uniform in [-5%, 5%] of the width and of the height
    s      scale, uniform in [0.95, 1.05]             c    the image centre

The loss is the one the editor was trained with: its scheduler's prediction type (epsilon or v) with the InstructPix2Pix
conditioning dropout (text dropped for 5% of samples, image for 5%, both for 5%), min-SNR weights
and EMA (the shared ShapesWorld training loop, `videdit.shapes.train.diffusion_loop`).

DATA is ``shapes`` (ShapesWorld triples rendered on the fly by `videdit.shapes.world`) or a folder
with ``metadata.jsonl``: one JSON object per line, ``{"source": "a.png", "target": "a_edit.png",
"instruction": "make the circle blue"}``, image paths relative to the folder.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import torch

from .errors import UserError

MAX_ROTATION = 5.0      # degrees
MAX_TRANSLATION = 0.05  # fraction of width / height
SCALE_RANGE = (0.95, 1.05)
MAX_SHEAR = 5.0         # degrees


def random_affine(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A = T(c + t) R(theta) H(phi) S(s) T(-c) as a 2x3 matrix (OpenCV's layout), parameters drawn
    uniformly within the limits above."""
    theta = math.radians(rng.uniform(-MAX_ROTATION, MAX_ROTATION))
    phi = math.radians(rng.uniform(-MAX_SHEAR, MAX_SHEAR))
    s = rng.uniform(*SCALE_RANGE)
    tx, ty = rng.uniform(-MAX_TRANSLATION, MAX_TRANSLATION) * width, rng.uniform(-MAX_TRANSLATION, MAX_TRANSLATION) * height
    cx, cy = (width - 1) / 2, (height - 1) / 2
    rotate = np.array([[math.cos(theta), -math.sin(theta), 0], [math.sin(theta), math.cos(theta), 0], [0, 0, 1]])
    shear = np.array([[1, math.tan(phi), 0], [0, 1, 0], [0, 0, 1]])
    scale = np.diag([s, s, 1.0])
    to_origin = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]])
    back = np.array([[1, 0, cx + tx], [0, 1, cy + ty], [0, 0, 1]])
    return (back @ rotate @ shear @ scale @ to_origin)[:2]


def apply_affine(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Warp an (H, W, 3) uint8 image by a 2x3 matrix; borders are filled by reflection."""
    import cv2

    h, w = image.shape[:2]
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def transform_pair(rng: np.random.Generator, source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same random affine transform applied to the source and the target image."""
    m = random_affine(rng, source.shape[1], source.shape[0])
    return apply_affine(source, m), apply_affine(target, m)


class FolderTriples:
    """(source, target, instruction) triples from a folder's ``metadata.jsonl``, resized to ``size``."""

    def __init__(self, folder: Path, size: int) -> None:
        from .video import read_image, resize_frames

        meta = folder / "metadata.jsonl"
        if not meta.is_file():
            raise UserError(f"{folder} has no metadata.jsonl (one line per triple: "
                            '{"source": ..., "target": ..., "instruction": ...}); or use DATA = shapes')
        self.items = []
        for n, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                src, tgt, text = row["source"], row["target"], row["instruction"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UserError(f"{meta}:{n}: expected a JSON object with source, target and instruction") from None
            images = []
            for name in (src, tgt):
                if not (folder / name).is_file():
                    raise UserError(f"{meta}:{n}: image not found: {folder / name}")
                images.append(resize_frames(read_image(folder / name), (size, size)))
            self.items.append((images[0], images[1], str(text)))
        if not self.items:
            raise UserError(f"{meta} lists no triples")

    def __call__(self, rng: np.random.Generator, n: int):
        picks = rng.integers(len(self.items), size=n)
        src, tgt, text = zip(*(self.items[i] for i in picks))
        return np.stack(src), np.stack(tgt), list(text)


def shapes_triples(size: int):
    """ShapesWorld triples rendered at ``size`` (the models' 64 px by default)."""
    from .shapes import world

    def sample(rng: np.random.Generator, n: int):
        src, tgt, text = [], [], []
        for _ in range(n):
            s, e, t = world.random_triple(rng)
            src.append(world.render(s, size)[0]), tgt.append(world.render(t, size)[0]), text.append(e.instruction)
        return np.stack(src), np.stack(tgt), text

    return sample


def finetune_equivariant(model: str, data: str, out: str | Path, minutes: float = 10.0, steps: int | None = None,
                         batch: int = 16, lr: float = 5e-5, seed: int = 0, p_drop: float = 0.05,
                         overwrite: bool = False, resolution: int | None = None) -> Path:
    """Finetune the instruction editor ``model`` on ``data`` with equivariant augmentation; write it to ``out``.

    Images are used at ``resolution`` (default: the UNet's native size, sample_size x VAE factor).
    Training state (checkpoint, log.jsonl) goes to ``out/train``; a run with the same ``out`` resumes."""
    from diffusers import StableDiffusionInstructPix2PixPipeline

    from .models import resolve
    from .shapes.train import TokenCache, diffusion_loop, ip2p_training_batch, log

    out = Path(out)
    if (out / "model_index.json").exists() and not overwrite:
        raise UserError(f"{out} already holds a model; pass --overwrite to replace it")
    root = resolve(model)
    try:
        pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(root, torch_dtype=torch.float32,
                                                                      use_safetensors=True, safety_checker=None,
                                                                      requires_safety_checker=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load an instruction editor from {root}: {str(exc).splitlines()[0][:200]}") from None
    vae, text_encoder, unet = pipe.vae.eval().requires_grad_(False), pipe.text_encoder.eval().requires_grad_(False), pipe.unet
    if unet.config.in_channels != 2 * vae.config.latent_channels:
        raise UserError(f"{model} is not an instruction editor (its UNet has {unet.config.in_channels} input channels, "
                        f"not {2 * vae.config.latent_channels})")
    size = resolution or unet.config.sample_size * 2 ** (len(vae.config.block_out_channels) - 1)
    triples = shapes_triples(size) if data == "shapes" else FolderTriples(Path(data), size)
    tokens = TokenCache(pipe.tokenizer)
    with torch.no_grad():
        empty = text_encoder(tokens([""]))[0]

    def sample_batch(rng: np.random.Generator, n: int):
        src, tgt, text = triples(rng, n)
        pairs = [transform_pair(rng, s, t) for s, t in zip(src, tgt)]
        src, tgt = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
        return ip2p_training_batch(vae, text_encoder, tokens, empty, src, tgt, text, rng, p_drop)

    work = out / "train"
    work.mkdir(parents=True, exist_ok=True)
    unet.requires_grad_(True)
    n_steps = diffusion_loop(work, "equivariant", dict(unet=unet), ["unet"], sample_batch, seed, minutes, steps, lr, batch,
                             prediction=pipe.scheduler.config.prediction_type)
    tmp = out / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp, safe_serialization=True)
    for item in tmp.iterdir():
        dest = out / item.name
        if dest.is_dir():
            shutil.rmtree(dest)
        item.replace(dest)
    tmp.rmdir()
    log(work, kind="equivariant", saved=str(out), steps=n_steps)
    return out

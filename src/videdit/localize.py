"""Instructions that find their own region.

"replace the car with a Porsche" names what to change: the car. With ``--method grain`` and no
``--region``, or ``--method invert --localize``, the region is found from the cross-attention maps
of the source word ("car") in the source prompt, recorded while the clip is inverted under it, as a
``--region NAME=auto:WORD:PROMPT`` region would be (the maps, averaged over layers of one UNet level
and over the inversion steps, are normalised per frame and thresholded at ``--auto-threshold``:
`videdit.methods.grain.masks_from_attention`). The edit then changes only that region: grain's
ST-Layout attention and latent blending treat it as the one region whose prompt is the target
word; invert blends the source latents back outside it after every step.

The found maps are kept in the inversion cache, keyed by the clip, the model, the source prompt,
the steps and the word, so a re-edit of the same clip (another target, other guidance) reuses the
same region without recording it again; the mask is also written into the run folder
(``mask_NAME.mp4``, usable as a ``--region`` mask source).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import torch

from .errors import UserError
from .masks import AUTO_PREFIX, Region
from .prompts import EditPlan

log = logging.getLogger("videdit")


def instruction_region(plan: EditPlan) -> Region | None:
    """The region an instruction names: ``auto:SOURCE`` with the target word as its prompt
    ("replace the car with a Porsche" -> car=auto:car:Porsche), or None for a description or an
    instruction about the whole frame."""
    instruction = plan.instruction
    if instruction is None or instruction.kind == "style" or not plan.source_word or not plan.target_word:
        return None
    name = re.sub(r"[^\w.\-]+", "_", plan.source_word).strip("_") or "region"
    return Region(name, AUTO_PREFIX + plan.source_word, plan.target_word)


def require_instruction_region(plan: EditPlan, what: str) -> Region:
    """`instruction_region`, or a UserError saying what ``what`` needs."""
    region = instruction_region(plan)
    if region is None:
        raise UserError(f"{what} needs an instruction that names what to change, such as \"replace the car with a "
                        f"Porsche\" or \"make the circle blue\" (the prompt {plan.target_prompt!r} names no object)")
    return region


def frame_ranges(frames: list[int]) -> str:
    """[0, 1, 2, 5, 6] -> "0-2, 5-6"."""
    runs: list[list[int]] = []
    for f in frames:
        if runs and f == runs[-1][-1] + 1:
            runs[-1].append(f)
        else:
            runs.append([f])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else f"{r[0]}" for r in runs)


def describe_mask(name: str, mask: np.ndarray, frame_indices: list[int] | None = None) -> str:
    """What the terminal says about a found region: "region 'car': 18% of the frame, frames 0-15"."""
    return describe_region(name, region_summary(mask, frame_indices))


def describe_region(name: str, summary: dict) -> str:
    """`describe_mask`'s line from the region's `region_summary` (as info.yaml keeps it)."""
    where = f"frames {summary['frames']}" if summary["frames"] else "in no frame (lower --auto-threshold)"
    return f"region {name!r}: {100 * summary['area']:.0f}% of the frame, {where}"


def region_summary(mask: np.ndarray, frame_indices: list[int] | None = None) -> dict:
    """The found region for info.yaml: its share of the frame and the frames it is in."""
    numbers = list(range(len(mask))) if frame_indices is None else list(frame_indices)
    return {"area": float(mask.mean()), "frames": frame_ranges([n for n, m in zip(numbers, mask) if m.any()])}


# ---------------------------------------------------------------------------------------
# The recorded maps, cached beside the inversion

def maps_cache_path(frames: np.ndarray, model, source_prompt: str, steps: int, control: str, control_scale: float,
                    frame_attention: str, groups: dict[str, list[int]], factor: int) -> Path:
    """Where the cross-attention maps of ``groups`` (name -> token positions) for this inversion live."""
    from .inversion import cache_dir, cache_key

    key = cache_key(frames, model, source_prompt, steps, control,
                    {"frame_attention": frame_attention, "control_scale": control_scale, "maps": groups,
                     "factor": factor})
    return cache_dir() / "attention" / f"{key}.safetensors"


def load_maps(path: Path | None, names: list[str]) -> dict[str, torch.Tensor] | None:
    """The cached maps at ``path`` when every one of ``names`` is there, else None."""
    if path is None or not path.is_file():
        return None
    from safetensors.torch import load_file

    try:
        maps = load_file(str(path))
    except Exception:  # cut short or from another version: record again
        return None
    if not all(n in maps for n in names):
        return None
    log.info("attention maps of %s: loaded from cache %s", ", ".join(names), path)
    return {n: maps[n].clone() for n in names}


def save_maps(path: Path | None, maps: dict[str, torch.Tensor]) -> None:
    """Write ``maps`` to ``path`` (atomically); a cache that cannot be written is a warning, not a failure."""
    import os

    from safetensors.torch import save_file

    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        save_file({n: m.contiguous().float().cpu() for n, m in maps.items()}, str(tmp))
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("attention maps not cached (%s)", exc)


# ---------------------------------------------------------------------------------------
# Masks of words, from a short inversion that records their cross-attention

def word_masks(model, frames: np.ndarray, source_prompt: str, words: dict[str, str], steps: int, threshold: float,
               frame_attention: str = "full", chunk_size: int | None = None, use_cache: bool = True,
               progress: bool = True, what: str = "auto:") -> dict[str, np.ndarray]:
    """name -> (F, H, W) bool: where each word of ``words`` (name -> WORD, a run of tokens of
    ``source_prompt``) lies in ``frames``, as grain's ``auto:WORD`` regions find it.

    The clip is DDIM-inverted for ``steps`` steps under ``source_prompt`` (guidance 1, cross-frame
    self-attention) while `CrossAttentionRecorder` averages each word's cross-attention maps over the
    layers of one UNet level (`attention_factor`) and the steps; the maps are upsampled, normalised per
    frame, thresholded at ``threshold`` and opened (`masks_from_attention`). Only the maps are kept: they
    are cached by clip, model, prompt, steps and words (`maps_cache_path`), the trajectory is not. An
    instruction editor (a UNet that also reads the image, InstructPix2Pix) is inverted with each
    frame's own latent as its image condition.
    """
    from .attention.layout import CrossAttentionRecorder, LayoutState, layout_attention
    from .diffusion import encode_text, vae_encode
    from .inversion import invert
    from .methods.grain import attention_factor, masks_from_attention, token_spans

    if not source_prompt.strip():
        first = next(iter(words.values()))
        raise UserError(f"{what}{first}: automatic masks need --source-prompt naming {first!r}")
    F_, H, W = frames.shape[:3]
    names = list(words)
    spans = token_spans(model.tokenizer, source_prompt, [words[n] for n in names], [f"{what}{words[n]}" for n in names])
    groups = {n: list(range(a, b)) for n, (a, b) in zip(names, spans)}
    latent_size = (-(-H // model.vae_scale), -(-W // model.vae_scale))
    factor = attention_factor(model.unet, latent_size)
    path = maps_cache_path(frames, model, source_prompt, steps, "none", 1.0, frame_attention, groups, factor) \
        if use_cache else None
    found = load_maps(path, names)
    if found is None:
        source = encode_text(model, [source_prompt]).expand(F_, -1, -1)
        z0 = vae_encode(model, frames)
        noise_fn = None
        if model.unet.config.in_channels == 2 * model.latent_channels:  # c_I: the unscaled latent of each frame
            image = z0 / model.vae.config.scaling_factor

            def noise_fn(x, t, i):
                return model.unet(torch.cat([x, image], dim=1), t, encoder_hidden_states=source, return_dict=False)[0]
        state = LayoutState(F_, latent_size, frame_mode=frame_attention, chunk_size=chunk_size)
        with layout_attention(model.unet, state):  # no masks: plain cross-frame attention, maps recorded
            state.recorder = CrossAttentionRecorder(groups, factor, branch=0)
            invert(model, z0, source, steps, progress=progress, noise_fn=noise_fn)
            found = state.recorder.maps()
        save_maps(path, found)
    return {n: masks_from_attention(found[n], (H, W), threshold) for n in names}

"""`videdit convert streamingt2v`: the released StreamingT2V checkpoint as a folder videdit loads.

The release (``PAIR/StreamingT2V``, ``streaming_t2v.ckpt``) is a Lightning checkpoint, a pickle. Its
``state_dict`` names follow the public training code:

- ``unet.*``: the CAM branch (a ControlNet-style copy of the base encoder): ``conv_in``, ``time_embedding``,
  ``transformer_in``, ``down_blocks``, ``mid_block`` and ``controlnet_cond_embedding`` (the frame
  encoder: ``conv_in``, ``blocks.N``, ``conv_out``);
- ``base_model.*``: the base UNet3D (ModelScope T2V) with, per skip connection,
  ``cross_attention_merger_down_blocks.N.temporal_transformer`` and at the mid block
  ``cross_attention_merger_mid_block.temporal_transformer`` (``norm``, ``proj_in``, ``attention``,
  ``proj_out``), and in each spatial cross-attention the APM's mixing (``attn2.conv``,
  ``attn2.conv_ln``, ``attn2.alpha``);
- ``resampler.context_embedding.{0,2}``: the image-token MLP;
- frozen copies of the VAE, text and image encoders, which the base model already has (skipped).

The output folder holds ``unet/`` (the base UNet as trained with the modules) and ``streaming/``
(CAM and APM), in safetensors; put both into a copy of the base model (``ms-t2v``) to use them.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..errors import UserError
from ..models import PICKLE_SUFFIXES

SKIPPED = ("vae.", "text_encoder.", "image_encoder.", "first_stage_model.", "cond_stage_model.")
MERGER_DOWN = re.compile(r"^base_model\.cross_attention_merger_down_blocks\.(\d+)\.temporal_transformer\.(.+)$")
MERGER_MID = "base_model.cross_attention_merger_mid_block.temporal_transformer."
MIXER = re.compile(r"^base_model\.(.+\.attn2)\.(conv|conv_ln|alpha)(\..+)?$")
MIXER_PARTS = {"conv": "conv", "conv_ln": "norm", "alpha": "alpha"}
CAM_PARTS = ("conv_in.", "time_embedding.", "transformer_in.", "down_blocks.", "mid_block.")


def rename(state: dict[str, torch.Tensor], mergers: int) -> tuple[dict, dict, dict, list[str]]:
    """(cam, apm, unet, unknown) state dicts in videdit's names from the released names."""
    cam, apm, unet, unknown = {}, {}, {}, []
    for key, value in state.items():
        if key.startswith(SKIPPED):
            continue
        if key.startswith("unet.controlnet_cond_embedding."):
            cam["frame_embedding." + key[len("unet.controlnet_cond_embedding."):]] = value
        elif key.startswith("unet.") and key[len("unet."):].startswith(CAM_PARTS):
            cam[key[len("unet."):]] = value
        elif (m := MERGER_DOWN.match(key)) is not None:
            cam[f"mergers.{m.group(1)}.{m.group(2)}"] = value
        elif key.startswith(MERGER_MID):
            cam[f"mergers.{mergers - 1}.{key[len(MERGER_MID):]}"] = value
        elif (m := MIXER.match(key)) is not None:
            apm[f"mixers.{m.group(1).replace('.', '_')}.{MIXER_PARTS[m.group(2)]}{m.group(3) or ''}"] = value
        elif key.startswith("resampler.context_embedding."):
            apm["resampler." + key[len("resampler.context_embedding."):]] = value
        elif key.startswith("base_model."):
            unet[key[len("base_model."):]] = value
        else:
            unknown.append(key)
    return cam, apm, unet, unknown


def read_checkpoint(path: Path, allow_pickle: bool) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if not allow_pickle:
        kind = "a pickle checkpoint" if path.suffix in PICKLE_SUFFIXES else "not safetensors"
        raise UserError(f"{path} is {kind}; pass --allow-pickle to read it (unpickling runs code)")
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:  # a damaged or foreign file
        raise UserError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}") from None
    state = data.get("state_dict", data) if isinstance(data, dict) else None
    if not isinstance(state, dict):
        raise UserError(f"{path} holds no state_dict")
    return {k: v for k, v in state.items() if torch.is_tensor(v)}


def convert_streamingt2v(checkpoint, output, base: str = "ms-t2v", allow_pickle: bool = False,
                         overwrite: bool = False) -> Path:
    """Convert the released checkpoint into ``output`` (``unet/`` and ``streaming/``); every tensor of the
    checkpoint lands in a module, or the conversion stops naming the first that does not."""
    from diffusers import UNet3DConditionModel

    from ..fsutil import atomic_target
    from ..models import resolve
    from .modules import APM, CAM, save_modules, skip_channels

    state = read_checkpoint(Path(checkpoint), allow_pickle)
    root = resolve(base)
    unet = UNet3DConditionModel.from_config(UNet3DConditionModel.load_config(root, subfolder="unet"))
    cam_sd, apm_sd, unet_sd, unknown = rename(state, len(skip_channels(unet)))
    if unknown:
        raise UserError(f"{checkpoint}: {len(unknown)} weights belong to no module, e.g. {unknown[0]}")
    cam = CAM(unet, frame_channels=frame_channels(cam_sd)) if cam_sd else None
    apm = None
    if apm_sd:
        w0, w2 = apm_sd["resampler.0.weight"], apm_sd["resampler.2.weight"]
        apm = APM(unet, image_dim=w0.shape[1], hidden=w0.shape[0], image_tokens=w2.shape[0] // unet.config.cross_attention_dim,
                  text_tokens=next(v.shape[0] for k, v in apm_sd.items() if k.endswith(".conv.weight")))
    for name, module, part in (("unet", unet if unet_sd else None, unet_sd), ("CAM", cam, cam_sd), ("APM", apm, apm_sd)):
        if module is None:
            continue
        missing, unexpected = module.load_state_dict(part, strict=False)
        if missing or unexpected:
            what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
            raise UserError(f"{checkpoint} does not fit base model {base!r} ({name}: {len(missing)} missing, "
                            f"{len(unexpected)} unexpected weights, e.g. {what})")
    with atomic_target(output, overwrite) as temp:
        temp.mkdir()
        if unet_sd:
            unet.save_pretrained(temp / "unet", safe_serialization=True)
        save_modules(temp / "streaming", cam, apm)
    return Path(output)


def frame_channels(cam_sd: dict) -> tuple[int, ...]:
    """Widths of the frame encoder from its weights: conv_in's output, then every second block's."""
    blocks = sorted({int(k.split(".")[2]) for k in cam_sd if k.startswith("frame_embedding.blocks.")})
    return (cam_sd["frame_embedding.conv_in.weight"].shape[0],
            *(cam_sd[f"frame_embedding.blocks.{i}.weight"].shape[0] for i in blocks[1::2]))

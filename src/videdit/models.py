"""Model presets, resolution of names to folders, and loading with diffusers.

One source of truth for which Hugging Face repository a short name means. A local folder in
diffusers layout (``model_index.json`` + one subfolder per component) works wherever a name does.
Weights load from safetensors only, unless the caller allows pickle checkpoints explicitly:
unpickling a ``.bin``/``.ckpt``/``.pth`` file runs code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import UserError

PACKAGE_WEIGHTS = Path(__file__).parent / "shapes" / "weights"


@dataclass(frozen=True)
class Preset:
    repo: str  # Hugging Face repository id, or a folder inside the package for ShapesWorld models
    kind: str  # "sd" (text-to-image), "ip2p" (instruction editor), "i2v", "t2v", "controlnet", "clip", "translation"
    about: str


PRESETS: dict[str, Preset] = {
    "sd15": Preset("stable-diffusion-v1-5/stable-diffusion-v1-5", "sd", "Stable Diffusion 1.5"),
    "ip2p": Preset("timbrooks/instruct-pix2pix", "ip2p", "InstructPix2Pix"),
    "i2vgen-xl": Preset("ali-vilab/i2vgen-xl", "i2v", "I2VGen-XL image-to-video"),
    "canny": Preset("lllyasviel/control_v11p_sd15_canny", "controlnet", "ControlNet 1.1 canny for SD 1.5"),
    "depth": Preset("lllyasviel/control_v11f1p_sd15_depth", "controlnet", "ControlNet 1.1 depth for SD 1.5"),
    "openpose": Preset("lllyasviel/control_v11p_sd15_openpose", "controlnet", "ControlNet 1.1 openpose for SD 1.5"),
    "depth-annotator": Preset("Intel/dpt-hybrid-midas", "annotator", "DPT depth estimator (depth control maps)"),
    "ms-t2v": Preset("damo-vilab/text-to-video-ms-1.7b", "t2v", "ModelScope text-to-video, 16 frames at 256x256"),
    "zeroscope": Preset("cerspense/zeroscope_v2_576w", "t2v", "Zeroscope v2 text-to-video, 576x320"),
    "zeroscope-xl": Preset("cerspense/zeroscope_v2_XL", "t2v", "Zeroscope v2 XL text-to-video (refiner), 1024x576"),
    "clip-l14": Preset("openai/clip-vit-large-patch14", "clip", "CLIP ViT-L/14 (metrics)"),
    "translate-zh": Preset("Helsinki-NLP/opus-mt-zh-en", "translation", "MarianMT Chinese -> English (--translate)"),
    "translate-ko": Preset("Helsinki-NLP/opus-mt-ko-en", "translation", "MarianMT Korean -> English (--translate)"),
    "translate-ja": Preset("Helsinki-NLP/opus-mt-ja-en", "translation", "MarianMT Japanese -> English (--translate)"),
    "shapes-sd": Preset(str(PACKAGE_WEIGHTS / "shapes-sd"), "sd", "ShapesWorld text-to-image (ships with videdit)"),
    "shapes-ip2p": Preset(str(PACKAGE_WEIGHTS / "shapes-ip2p"), "ip2p", "ShapesWorld instruction editor (ships with videdit)"),
    "shapes-i2v": Preset(str(PACKAGE_WEIGHTS / "shapes-i2v"), "i2v", "ShapesWorld image-to-video (ships with videdit)"),
    "shapes-t2v": Preset(str(PACKAGE_WEIGHTS / "shapes-t2v"), "t2v",
                         "ShapesWorld text-to-video with CAM and APM (ships with videdit)"),
}

CONTROL_PRESETS = {"canny": "canny", "depth": "depth", "openpose": "openpose"}

# What `videdit download` fetches: configs, tokenizer files and full-precision safetensors weights;
# not the single-file checkpoints, pickle weights or the safety checker the repositories also hold.
DOWNLOAD_PATTERNS = ["*.json", "*.txt", "*/*.json", "*/*.txt", "*/diffusion_pytorch_model.safetensors",
                     "*/model.safetensors", "diffusion_pytorch_model.safetensors", "model.safetensors",
                     "*.spm"]  # MarianMT's SentencePiece models (translate-*)
PICKLE_PATTERNS = ["*/diffusion_pytorch_model.bin", "*/pytorch_model.bin", "diffusion_pytorch_model.bin", "pytorch_model.bin"]
IGNORE_PATTERNS = ["safety_checker/*", "*.ckpt", "*.fp16.*", "*.non_ema.*", "*.msgpack", "*.onnx", "*.h5"]

SD_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
SAFE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pth", ".pt")


def download_hint(name: str) -> str:
    return f"videdit download {name}"


def resolve(name: str, allow_download: bool | None = None, allow_pickle: bool = False) -> Path:
    """A local folder for a preset name, a repository id or a folder.

    Hub models are looked up in the Hugging Face cache first. When they are not there, they are
    fetched only if ``allow_download`` (default: unless ``HF_HUB_OFFLINE`` is set); otherwise, or
    when the fetch fails, a `UserError` names the repository and the download command.
    """
    if not name or not str(name).strip():
        raise UserError("empty model name")
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    preset = PRESETS.get(name)
    if preset is not None and preset.kind != "annotator" and Path(preset.repo).is_absolute():
        if Path(preset.repo).is_dir():
            return Path(preset.repo)
        raise UserError(f"model {name!r} is not installed with this copy of videdit (missing {preset.repo})")
    repo = preset.repo if preset else name
    if preset is None and (path.is_absolute() or ((os.sep in name or name.startswith(".")) and name.count("/") != 1)):
        raise UserError(f"model folder not found: {name}")
    if preset is None and name.count("/") != 1:
        known = ", ".join(sorted(PRESETS))
        raise UserError(f"unknown model {name!r}: use a preset ({known}), a Hugging Face repository id or a folder")
    from huggingface_hub import snapshot_download

    patterns = DOWNLOAD_PATTERNS + (PICKLE_PATTERNS if allow_pickle else [])
    try:
        return Path(snapshot_download(repo, allow_patterns=patterns, ignore_patterns=IGNORE_PATTERNS,
                                      local_files_only=True))
    except Exception:
        pass
    if allow_download is None:
        allow_download = os.environ.get("HF_HUB_OFFLINE", "0") in ("0", "", "false", "False")
    hint = download_hint(name if preset else repo)
    if not allow_download:
        what = f"{name!r} ({repo})" if preset else repr(repo)
        raise UserError(f"model {what} is not downloaded and the hub is offline; run: {hint}")
    try:
        return Path(snapshot_download(repo, allow_patterns=patterns, ignore_patterns=IGNORE_PATTERNS))
    except Exception as exc:  # network errors, missing repository, gated repository
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot download model {repo!r} ({reason[:160]}); run: {hint}") from None


def download(names: list[str], allow_pickle: bool = False) -> list[Path]:
    """Fetch presets or repository ids into the Hugging Face cache (what `videdit download` runs)."""
    return [resolve(n, allow_download=True, allow_pickle=allow_pickle) for n in names]


def _weight_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file() and p.suffix in SAFE_SUFFIXES + PICKLE_SUFFIXES]


def check_component(root: Path, sub: str, allow_pickle: bool) -> Path:
    """The folder of one component; a `UserError` when it is missing or holds only pickle weights."""
    folder = root / sub
    if not folder.is_dir():
        raise UserError(f"model folder {root} has no {sub}/ component")
    if sub in ("tokenizer", "scheduler", "feature_extractor"):
        return folder
    files = _weight_files(folder)
    if not files:
        raise UserError(f"model folder {root} has no weights in {sub}/")
    if not any(p.suffix in SAFE_SUFFIXES for p in files) and not allow_pickle:
        raise UserError(f"{folder} has only pickle weights ({files[0].name}); pass --allow-pickle to load them "
                        "(unpickling runs code)")
    for p in files:
        if p.suffix in SAFE_SUFFIXES:
            check_safetensors(p)
    return folder


def check_safetensors(path: Path) -> None:
    """A `UserError` when a safetensors file is cut short or damaged: its header must parse and its
    tensors must cover the file exactly (reads the header only, however large the file)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt"):
            pass
    except Exception as exc:  # SafetensorError, OSError: a damaged or unreadable file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"weights file {path} is damaged or incomplete ({reason[:120]}); download it again") from None


# What each method takes: the model family of its --model.
FAMILIES = {"sd": "a text-to-image model (Stable Diffusion kind)",
            "ip2p": "an instruction editor (InstructPix2Pix kind: its UNet takes the source image as 4 more channels)",
            "i2v": "an image-to-video model (I2VGen-XL kind)"}
METHODS_BY_FAMILY = {"sd": ("invert", "grain", "atlas"), "ip2p": ("anchor", "atlas"), "i2v": ("i2v",)}


def model_family(root: Path) -> str | None:
    """"sd", "ip2p" or "i2v" for a model folder in diffusers layout, from its configs alone (no weights
    are read); None when the folder does not say."""
    import json

    def read(path: Path) -> dict:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    index, unet = read(root / "model_index.json"), read(root / "unet" / "config.json")
    unet_class = unet.get("_class_name") or (index.get("unet") or [None, None])[1]
    if unet_class == "I2VGenXLUNet" or index.get("_class_name") == "I2VGenXLPipeline":
        return "i2v"
    if unet_class == "UNet2DConditionModel":
        latent = read(root / "vae" / "config.json").get("latent_channels", 4)
        return "ip2p" if unet.get("in_channels") == 2 * latent else "sd"
    return None


def check_method_fits(method: str, name: str, allow_pickle: bool = False) -> None:
    """A `UserError` before any weights load when ``--model`` is of a family that ``method`` cannot take,
    naming what the model is and which method takes it."""
    family = model_family(resolve(name, allow_pickle=allow_pickle))
    if family is None or method in METHODS_BY_FAMILY[family]:
        return
    fits = " or ".join(f"--method {m}" for m in METHODS_BY_FAMILY[family])
    extra = " with --first-frame PATH" if family == "i2v" else ""
    takes = " or ".join(FAMILIES[f] for f, methods in METHODS_BY_FAMILY.items() if method in methods)
    raise UserError(f"model {name!r} is {FAMILIES[family]}, and --method {method} takes {takes}: "
                    f"use {fits}{extra}")


def pick_device(device: str | None = None) -> torch.device:
    """CUDA, then MPS, then CPU, unless the user names one."""
    if device and device != "auto":
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise UserError(f"unknown device {device!r}") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"device {device!r} asked for, but CUDA is not available")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


DTYPES = {"fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp32": torch.float32, "float32": torch.float32}


def pick_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """fp16 on CUDA and MPS, fp32 on CPU, unless the user names one."""
    if dtype and dtype != "auto":
        if dtype not in DTYPES:
            raise UserError(f"unknown dtype {dtype!r}: use one of fp16, bf16, fp32")
        return DTYPES[dtype]
    return torch.float16 if device.type in ("cuda", "mps") else torch.float32


@dataclass
class DiffusionModel:
    """The components of a Stable-Diffusion-class model, loaded and placed on a device."""

    name: str
    path: Path
    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler_config: dict
    device: torch.device
    dtype: torch.dtype
    controlnet: Any = None
    extras: dict = field(default_factory=dict)

    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return self.vae.config.latent_channels

    @property
    def identity(self) -> str:
        """What identifies these weights in cache keys: the folders of the model and its ControlNet
        (a hub snapshot folder names its revision) and the size and time of every weight file, so a
        model rewritten in place is another model."""
        folders = [self.path] + ([Path(self.extras["controlnet_path"])] if self.controlnet is not None else [])
        parts = []
        for folder in folders:
            folder = folder.resolve()
            files = sorted(p for p in folder.rglob("*") if p.suffix in SAFE_SUFFIXES + PICKLE_SUFFIXES)
            parts.append(str(folder) + ";" + ";".join(f"{p.relative_to(folder)}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
                                                      for p in files))
        return "|".join(parts)


# Text encoders a Stable Diffusion pipeline may name in model_index.json: CLIP (SD 1.x), or BERT in the pipelines
# trained on Chinese captions (the Taiyi models), whose tokenizer reads Chinese so prompts need no translation.
TEXT_ENCODERS = ("CLIPTextModel", "BertModel")
TOKENIZERS = ("CLIPTokenizer", "CLIPTokenizerFast", "BertTokenizer", "BertTokenizerFast")


def text_classes(root: Path) -> tuple[type, type]:
    """The transformers classes of ``root``'s text encoder and tokenizer, as its model_index.json names them
    (CLIP when it names none); a class outside TEXT_ENCODERS / TOKENIZERS is one line."""
    import transformers

    index = root / "model_index.json"
    named = json.loads(index.read_text(encoding="utf-8")) if index.is_file() else {}
    chosen = []
    for part, default, allowed in (("text_encoder", "CLIPTextModel", TEXT_ENCODERS),
                                   ("tokenizer", "CLIPTokenizer", TOKENIZERS)):
        entry = named.get(part)
        name = entry[1] if isinstance(entry, list) and len(entry) == 2 and entry[0] == "transformers" else default
        if name not in allowed:
            raise UserError(f"{root}: {part} class {name!r} is not one videdit loads ({', '.join(allowed)})")
        chosen.append(getattr(transformers, name))
    return chosen[0], chosen[1]


def load_sd(name: str, device: str | None = None, dtype: str | None = None, allow_pickle: bool = False,
            control: str | None = None, control_model: str | None = None, cpu_offload: bool = False,
            vae_tiling: bool = False) -> DiffusionModel:
    """Load the UNet, VAE, text encoder, tokenizer and scheduler config of ``name`` (and a ControlNet)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    root = resolve(name, allow_pickle=allow_pickle)
    for sub in SD_COMPONENTS:
        check_component(root, sub, allow_pickle)
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    safe = not allow_pickle
    try:
        unet = UNet2DConditionModel.from_pretrained(root, subfolder="unet", torch_dtype=dt, use_safetensors=safe or None)
        vae = AutoencoderKL.from_pretrained(root, subfolder="vae", torch_dtype=dt, use_safetensors=safe or None)
        encoder_class, tokenizer_class = text_classes(root)
        text_encoder = encoder_class.from_pretrained(root / "text_encoder", torch_dtype=dt, use_safetensors=safe or None)
        tokenizer = tokenizer_class.from_pretrained(root / "tokenizer")
        scheduler_config = dict(DDIMScheduler.load_config(root, subfolder="scheduler"))
    except (OSError, ValueError, EnvironmentError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot load model from {root}: {first[:200]}") from None
    controlnet, extras = None, {}
    if control and control != "none":
        controlnet, extras["controlnet_path"] = load_controlnet(root, control, control_model, dt, allow_pickle)
    model = DiffusionModel(name=name, path=root, unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                           scheduler_config=scheduler_config, device=dev, dtype=dt, controlnet=controlnet, extras=extras)
    for module in (unet, vae, text_encoder, controlnet):
        if module is not None:
            module.requires_grad_(False).eval()
    if vae_tiling:
        vae.enable_tiling()
    place(model, cpu_offload)
    return model


def load_controlnet(root: Path, control: str, control_model: str | None, dtype: torch.dtype, allow_pickle: bool):
    """(model, folder) of the ControlNet for ``control``: ``control_model`` if given, a ``controlnet/`` folder beside the
    model (tiny models), else the preset of that name."""
    from diffusers import ControlNetModel

    if control not in CONTROL_PRESETS:
        raise UserError(f"unknown control {control!r}: use one of {', '.join(CONTROL_PRESETS)} or none")
    if control_model:
        folder = resolve(control_model, allow_pickle=allow_pickle)
    elif (root / "controlnet").is_dir():
        folder = root / "controlnet"
    else:
        folder = resolve(CONTROL_PRESETS[control], allow_pickle=allow_pickle)
    if not any(p.suffix in SAFE_SUFFIXES for p in _weight_files(folder)) and not allow_pickle:
        raise UserError(f"{folder} has no safetensors weights; pass --allow-pickle to load pickle weights")
    net = ControlNetModel.from_pretrained(folder, torch_dtype=dtype, use_safetensors=(not allow_pickle) or None)
    return net, folder


def place(model: DiffusionModel, cpu_offload: bool) -> None:
    """Move the modules to the device, or with ``cpu_offload`` keep them in CPU memory and stream each
    layer's weights to the GPU when it runs (accelerate's sequential offload: least GPU memory)."""
    modules = [m for m in (model.unet, model.vae, model.text_encoder, model.controlnet) if m is not None]
    if cpu_offload and model.device.type != "cpu":
        from accelerate import cpu_offload as offload

        for m in modules:
            offload(m, execution_device=model.device)
        return
    for m in modules:
        m.to(model.device)

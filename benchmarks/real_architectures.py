"""The real architectures at their real sizes: peak memory above the weights and seconds per step of each method.

    python benchmarks/real_architectures.py [--methods invert,grain,anchor,i2v] [--frames 16] [--anchor-frames 120]
                                            [--steps 1] [--size 512] [--control canny] [--chunk 8] [--work DIR]
                                            [--device cpu|cuda] [--dtype fp32|fp16|bf16]

Each model is built from its published configuration (tests/data/configs/, see the README there)
with random weights, saved in diffusers layout (fp16 on disk) and loaded by videdit's own loader
(`videdit.models.load_sd`, `videdit.i2v.load_i2v`) in fp32 on the CPU (``--device cuda``: fp16 on the
GPU, the peak then read from torch's CUDA allocator), exactly as a downloaded model would be. Then each method runs through `videdit.api.edit` on a real clip of
/work/shared/videos at ``--size`` x ``--size`` for ``--steps`` steps (inversion and sampling both,
strength 1), in a fresh process per method, so one method's memory is not counted in the next.

One row per method as it finishes:
- weights: bytes of the loaded parameters (fp32);
- peak above weights: the process's peak resident set during the edit minus its resident set just
  before (benchmarks/_peak.py), i.e. activations, caches, VAE and attention temporaries;
- in UNet calls / outside: the same peak split into the one inside the UNet (and ControlNet) calls
  and the one outside them (VAE encode and decode, text and image encoders, the method's own work);
- model s/step: seconds inside the UNet (and ControlNet) per diffusion step, where a step is one
  inversion or one sampling step of the whole clip (all guidance branches, all frames);
- total s: the whole edit (VAE encode/decode, text and image encoders, every step).

Memory and time at other frame counts: run again with another ``--frames``; the script prints the
frames and steps it ran with on every row, so nothing is extrapolated silently.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from _peak import peak_bytes, reset_peak  # benchmarks/_peak.py: shared peak-memory measurement

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "tests" / "data" / "configs"
VIDEOS = ROOT.parent / "shared" / "videos" if (ROOT.parent / "shared" / "videos").is_dir() else Path("/work/shared/videos")
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

METHODS = ("invert", "grain", "anchor", "i2v")
MODEL_OF = {"invert": "sd15", "grain": "sd15", "anchor": "ip2p", "i2v": "i2vgen-xl"}
CLIP_OF = {"invert": "wolf.mp4", "grain": "wolf.mp4", "anchor": "woman-running.mp4", "i2v": "man-walking.mp4"}


def config(name: str) -> dict:
    cfg = json.loads((CONFIGS / f"{name}.json").read_text())
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


# --- building the models -------------------------------------------------------------------------

def _tokenizer(out: Path):
    """A CLIP tokenizer of videdit's own small vocabulary (the real vocabulary file cannot be
    downloaded here); the text encoders keep the published vocab_size, so their weights are full size."""
    from transformers import CLIPTokenizer

    from videdit.tiny import WORDS
    from videdit.tokenizer import write_clip_tokenizer

    return CLIPTokenizer.from_pretrained(write_clip_tokenizer(WORDS, out / "tokenizer"))


def _text_encoder(name: str, tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = config(name)
    cfg.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    return CLIPTextModel(CLIPTextConfig(**{k: v for k, v in cfg.items() if k not in ("architectures", "torch_dtype")}))


def build(kind: str, out: Path) -> None:
    """Write the random-weight model ``kind`` (sd15 with its canny ControlNet, ip2p, i2vgen-xl) to ``out``."""
    import torch
    from diffusers import (AutoencoderKL, ControlNetModel, DDIMScheduler, EulerAncestralDiscreteScheduler,
                           PNDMScheduler, StableDiffusionInstructPix2PixPipeline, StableDiffusionPipeline,
                           UNet2DConditionModel)

    torch.manual_seed(0)
    torch.set_default_dtype(torch.float16)  # built in the precision it is saved in: half the memory while building
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(out)
    if kind == "i2vgen-xl":
        from diffusers import I2VGenXLUNet
        from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

        from videdit.i2v import save_i2v

        vision = config("i2vgen_xl_image_encoder")
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
            **{k: v for k, v in vision.items() if k not in ("architectures", "torch_dtype")}))
        processor = CLIPImageProcessor(**{k: v for k, v in config("i2vgen_xl_feature_extractor").items()
                                         if k != "image_processor_type"})
        save_i2v(out, unet=I2VGenXLUNet(**config("i2vgen_xl_unet")), vae=AutoencoderKL(**config("i2vgen_xl_vae")),
                 text_encoder=_text_encoder("i2vgen_xl_text_encoder", tokenizer), tokenizer=tokenizer,
                 image_encoder=image_encoder, processor=processor,
                 scheduler=DDIMScheduler.from_config(config("i2vgen_xl_scheduler")), dtype=torch.float16)
        return
    unet = UNet2DConditionModel(**config("ip2p_unet" if kind == "ip2p" else "sd15_unet"))
    vae = AutoencoderKL(**config("sd15_vae"))
    text_encoder = _text_encoder("sd15_text_encoder", tokenizer)
    if kind == "ip2p":
        pipe = StableDiffusionInstructPix2PixPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
            scheduler=EulerAncestralDiscreteScheduler.from_config(config("ip2p_scheduler")),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    else:
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                       scheduler=PNDMScheduler.from_config(config("sd15_scheduler")), safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
    pipe.to(torch.float16).save_pretrained(out, safe_serialization=True)
    if kind == "sd15":
        ControlNetModel(**config("controlnet_canny")).to(torch.float16).save_pretrained(
            out / "controlnet", safe_serialization=True)


def ensure_model(kind: str, work: Path) -> Path:
    """The model folder of ``kind`` under ``work``, built (in a child process) unless already there."""
    folder = work / kind
    done = folder / ".complete"
    if not done.is_file():
        t0 = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--build", kind, "--work", str(work)], check=True)
        done.write_text("")
        print(f"# built {kind} in {time.perf_counter() - t0:.0f} s -> {folder}", file=sys.stderr, flush=True)
    return folder


# --- one method in this process ------------------------------------------------------------------

def clip_frames(name: str, frames: int, size: int):
    from videdit.video import read_clip, resize_frames

    clip = read_clip(VIDEOS / name)
    src = clip.frames
    reps = -(-frames // len(src))  # a clip shorter than asked is played forward and back, as often as needed
    if reps > 1:
        import numpy as np

        src = np.concatenate([src if i % 2 == 0 else src[::-1] for i in range(reps)])
    return resize_frames(src[:frames], (size, size))


class ModelClock:
    """Seconds spent inside the given modules' forward calls, and the peak resident set inside them and
    outside them (VAE, text and image encoders, the method's own work), through a forward pre-hook and
    hook (measurement only). The process's peak is reset at each boundary (benchmarks/_peak.py)."""

    def __init__(self, modules, device: str = "cpu"):
        self.device = device
        self.seconds, self.calls, self._t = 0.0, 0, 0.0
        self.inside = self.outside = 0  # peak resident set, bytes
        for m in modules:
            m.register_forward_pre_hook(self._start)
            m.register_forward_hook(self._stop)

    def _start(self, *_):
        self.outside = max(self.outside, peak_bytes(self.device))
        reset_peak(self.device)
        self._t = time.perf_counter()

    def _stop(self, *_):
        if self.device == "cuda":
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - self._t
        self.calls += 1
        self.inside = max(self.inside, peak_bytes(self.device))
        reset_peak(self.device)

    def finish(self):
        self.outside = max(self.outside, peak_bytes(self.device))


def run_method(args) -> dict:
    import numpy as np
    import torch
    from PIL import Image

    from _peak import measure, status_kib
    from videdit.api import edit

    method, frames = args.child, args.frames
    torch.set_num_threads(args.threads)
    folder = Path(args.work) / MODEL_OF[method]
    control = args.control if method in ("invert", "grain") else "none"
    if method == "i2v":
        from videdit.i2v import load_i2v

        model = load_i2v(str(folder), device=args.device, dtype=args.dtype)
    else:
        from videdit.models import load_sd

        model = load_sd(str(folder), device=args.device, dtype=args.dtype, control=control)
    modules = [m for m in (model.unet, model.vae, model.text_encoder, model.controlnet,
                           model.extras.get("image_encoder")) if m is not None]
    weights = sum(p.numel() * p.element_size() for m in modules for p in m.parameters())
    clock = ModelClock([m for m in (model.unet, model.controlnet) if m is not None], args.device)
    src = clip_frames(CLIP_OF[method], frames, args.size)
    tmp = Path(tempfile.mkdtemp(prefix="videdit-real-"))
    opts = dict(steps=args.steps, strength=1.0, seed=0, size=args.size, no_cache=True, reconstruction=False,
                run_folder=False, progress=False)
    if method == "invert":
        prompt, steps_run = "a husky", 2 * args.steps  # inversion, then editing
        opts.update(control=control)
    elif method == "grain":
        mask = np.zeros((args.size, args.size, 3), np.uint8)
        mask[:, : args.size // 2] = 255
        Image.fromarray(mask).save(tmp / "left.png")
        prompt, steps_run = "a husky on grass", 2 * args.steps
        opts.update(control=control, regions=[dict(name="animal", mask=str(tmp / "left.png"), prompt="husky")])
    elif method == "anchor":
        prompt, steps_run = "make it look like a watercolor painting", args.steps
        opts.update(chunk=args.chunk, anchors=args.anchors)
    else:
        Image.fromarray(src[0]).save(tmp / "first.png")
        prompt, steps_run = "a man walking", 2 * args.steps  # inversion, then sampling
        opts.update(first_frame=str(tmp / "first.png"), inversion_steps=args.steps)
    # what the loaded model holds: the resident set on the CPU, the allocated memory on CUDA
    rss_loaded = status_kib("VmRSS") * 1024 if args.device == "cpu" else torch.cuda.memory_allocated()
    regions = opts.pop("regions", None)
    _, seconds, result = measure(lambda: edit(src, prompt=prompt, method=method, model=model, regions=regions,
                                              **opts), device=args.device)
    clock.finish()  # the peak since the last model call: decoding
    peak = max(clock.inside, clock.outside) - rss_loaded
    assert result.frames.shape[0] == frames
    return dict(method=method, model=MODEL_OF[method], control=control, frames=frames, size=args.size,
                steps=args.steps, steps_run=steps_run, weights_gb=weights / 1e9, rss_loaded_gb=rss_loaded / 1e9,
                peak_above_weights_gb=peak / 1e9, peak_in_model_gb=(clock.inside - rss_loaded) / 1e9,
                peak_outside_model_gb=(clock.outside - rss_loaded) / 1e9, model_s_per_step=clock.seconds / steps_run,
                model_calls=clock.calls, total_s=seconds,
                chunk=args.chunk if method == "anchor" else None, anchors=args.anchors if method == "anchor" else None,
                info={k: v for k, v in result.info.items() if isinstance(v, (int, float, str))})


# --- the table -----------------------------------------------------------------------------------

HEADER = (f"{'method':<7} {'model':<10} {'control':<7} {'frames':>6} {'size':>5} {'steps':>5} {'weights':>8} "
          f"{'peak above weights':>19} {'in UNet calls':>14} {'outside':>8} {'model s/step':>13} {'total s':>8}")


def row(r: dict) -> str:
    extra = f"  (anchors {r['anchors']}, chunk {r['chunk']})" if r["method"] == "anchor" else ""
    return (f"{r['method']:<7} {r['model']:<10} {r['control']:<7} {r['frames']:>6} {r['size']:>5} {r['steps_run']:>5} "
            f"{r['weights_gb']:>6.2f}GB {r['peak_above_weights_gb']:>17.2f}GB {r['peak_in_model_gb']:>12.2f}GB "
            f"{r['peak_outside_model_gb']:>6.2f}GB {r['model_s_per_step']:>13.1f} {r['total_s']:>8.0f}{extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated, of " + ", ".join(METHODS))
    parser.add_argument("--frames", type=int, default=16, help="frames of invert, grain and i2v")
    parser.add_argument("--anchor-frames", type=int, default=120, help="frames of anchor")
    parser.add_argument("--steps", type=int, default=1, help="inversion steps and sampling steps (each)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--control", default="canny", choices=("canny", "none"), help="ControlNet of invert and grain")
    parser.add_argument("--chunk", type=int, default=8, help="anchor: frames per chunk")
    parser.add_argument("--anchors", type=int, default=3, help="anchor: anchor frames")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="cuda: the peak is "
                        "torch.cuda.max_memory_allocated above the loaded model")
    parser.add_argument("--dtype", default=None, choices=("fp32", "fp16", "bf16"),
                        help="default: fp32 on the CPU, fp16 on CUDA")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "videdit-real-architectures"),
                        help="where the random-weight models are written (and reused by later runs)")
    parser.add_argument("--json", action="store_true", help="also print each row as JSON")
    parser.add_argument("--build", help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.dtype = args.dtype or ("fp32" if args.device == "cpu" else "fp16")
    work = Path(args.work)
    if args.build:
        build(args.build, work / args.build)
        return
    if args.child:
        print(json.dumps(run_method(args)))
        return
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}: use {', '.join(METHODS)}")
    where = (f"CPU {args.dtype}, {args.threads} threads" if args.device == "cpu" else
             f"CUDA {args.dtype} ({torch.cuda.get_device_name()})")
    peak = ("peak resident set during the edit minus the resident set after loading" if args.device == "cpu" else
            "peak allocated during the edit minus what the loaded model holds")
    print(f"# {where}, random weights from the published configs; peak = {peak}", flush=True)
    print(HEADER, flush=True)
    for method in methods:
        ensure_model(MODEL_OF[method], work)
        frames = args.anchor_frames if method == "anchor" else args.frames
        cmd = [sys.executable, __file__, "--child", method, "--frames", str(frames), "--steps", str(args.steps),
               "--size", str(args.size), "--control", args.control, "--chunk", str(args.chunk),
               "--anchors", str(args.anchors), "--threads", str(args.threads), "--work", str(work),
               "--device", args.device, "--dtype", args.dtype]
        done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)  # stderr (progress, errors) passes through
        if done.returncode != 0:
            print(f"{method:<7} failed (exit {done.returncode})", flush=True)
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(row(result), flush=True)
        if args.json:
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

"""Copy a trained ShapesWorld pipeline into the package's weights folder, in fp16 safetensors.

    python -m videdit.shapes.publish runs/shapes/sd/pipeline shapes-sd [--vae runs/shapes/vae-dec/vae]
    python -m videdit.shapes.publish runs/shapes/i2v/pipeline shapes-i2v
    python -m videdit.shapes.publish runs/t2v/pipeline shapes-t2v   # the folder holds streaming/ (CAM, APM)

`--vae` swaps in another AutoencoderKL with the same encoder (the decoder-tuned second stage),
so the latent space the UNet was trained in is unchanged. The result loads with
`StableDiffusionPipeline.from_pretrained(dir, torch_dtype=torch.float32)` (load CPU runs in float32).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from videdit.shapes import MODELS, weights_path


def same_encoder(a, b) -> bool:
    sa, sb = a.encoder.state_dict(), b.encoder.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def cast_folder(src: Path, dest: Path, dtype) -> None:
    """Copy a model folder, casting the floating-point tensors of every safetensors file to `dtype`
    (for classes that have no loadable diffusers pipeline, such as I2VGen-XL's)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dest)
    for f in dest.rglob("*.safetensors"):
        tensors = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in load_file(f).items()}
        save_file(tensors, f, metadata={"format": "pt"})


def publish(run_pipeline: Path, name: str, vae_dir: Path | None = None, dtype=torch.float16) -> Path:
    import json

    import diffusers

    index = json.loads((run_pipeline / "model_index.json").read_text())
    dest = weights_path(name)
    card = dest / "MODEL_CARD.md"
    keep = card.read_text() if card.exists() else None
    tmp = dest.with_name(f".{name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if index["_class_name"] in ("I2VGenXLPipeline", "TextToVideoSDPipeline"):  # with streaming/ for the latter
        if vae_dir is not None:
            raise SystemExit("--vae is for text-to-image and instruction pipelines")
        cast_folder(run_pipeline, tmp, dtype)
        return _finish(tmp, dest, keep)
    cls = getattr(diffusers, index["_class_name"])
    pipe = cls.from_pretrained(run_pipeline, torch_dtype=torch.float32)
    if vae_dir is not None:
        vae = diffusers.AutoencoderKL.from_pretrained(vae_dir, torch_dtype=torch.float32)
        if not same_encoder(pipe.vae, vae):
            raise SystemExit(f"{vae_dir}: its encoder differs from the pipeline's; the UNet's latent space would change")
        pipe.vae = vae
        pipe.register_modules(vae=vae)
    pipe.to(dtype).save_pretrained(tmp, safe_serialization=True)
    return _finish(tmp, dest, keep)


def _finish(tmp: Path, dest: Path, keep: str | None) -> Path:
    if keep:
        (tmp / "MODEL_CARD.md").write_text(keep)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m videdit.shapes.publish", description=__doc__.splitlines()[0])
    ap.add_argument("pipeline", type=Path, help="trained pipeline folder (RUN/pipeline)")
    ap.add_argument("name", choices=list(MODELS))
    ap.add_argument("--vae", type=Path, help="AutoencoderKL folder to ship instead (same encoder)")
    ap.add_argument("--fp32", action="store_true", help="keep float32 weights")
    a = ap.parse_args()
    print(publish(a.pipeline, a.name, a.vae, torch.float32 if a.fp32 else torch.float16))


if __name__ == "__main__":
    main()

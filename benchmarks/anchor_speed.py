"""Speed and memory of ``--method anchor``, measured in one run (tiny InstructPix2Pix-class model, CPU).

    python benchmarks/anchor_speed.py [--size 64] [--steps 10] [--threads 1]

Prints
1. seconds per frame at 16, 48 and 120 frames (must stay flat: every frame costs the same, the
   anchors are paid once);
2. the ratio to frame-by-frame editing with diffusers' own StableDiffusionInstructPix2PixPipeline
   on the same model, steps and sampler (Euler ancestral);
3. peak memory above the loaded model at 16 vs 120 frames, chunks of 8 (must stay flat);
4. a 2-process (gloo) run: the anchors' cache computed on every rank vs computed on rank 0 and
   broadcast.
"""

from __future__ import annotations

import argparse
import gc
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _peak import peak_bytes, reset_peak  # benchmarks/_peak.py: shared peak-memory measurement

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def moving_clip(n: int, size: int) -> np.ndarray:
    """A square sliding over a gradient."""
    y, x = np.mgrid[0:size, 0:size]
    base = np.stack([x * 255 / size, y * 255 / size, np.full_like(x, 80)], -1)
    out = np.repeat(base[None], n, 0).astype(np.uint8)
    s = size // 4
    for t in range(n):
        x0 = int((t / max(n - 1, 1)) * (size - s))
        out[t, s:2 * s, x0:x0 + s] = (240, 60, 40)
    return out


def anchor_run(model, frames, opts):
    from videdit.diffusion import vae_decode
    from videdit.methods.anchor import edit_latents

    latents, _ = edit_latents(model, frames, "make it a watercolour", opts)
    return vae_decode(model, torch.stack([latents[f] for f in range(len(frames))]), opts.vae_chunk)


def sd15_cache_mb(width: int, height: int) -> float:
    """Keys + values of one frame, one step, one branch over the 16 self-attention layers of SD 1.5, fp16:
    5 layers at 1/8 of the image (320 channels), 5 at 1/16 (640), 5 at 1/32 (1280), 1 at 1/64 (1280)."""
    levels = [(8, 320, 5), (16, 640, 5), (32, 1280, 5), (64, 1280, 1)]
    elements = sum((width // f) * (height // f) * ch * n for f, ch, n in levels)
    return 2 * 2 * elements / 1e6  # k and v, 2 bytes each


def measure_in_child(model, n: int, size: int, opts) -> tuple[float, float]:
    """(seconds, peak MiB above the start) of one edit of n frames, in a forked child: every size starts
    from the same heap (the loaded, warmed-up model), so allocator reuse between runs does not blur the peak."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)

    def child():
        frames = moving_clip(n, size)
        gc.collect()
        base = reset_peak() / 1024
        t0 = time.perf_counter()
        anchor_run(model, frames, opts)
        send.send((time.perf_counter() - t0, (peak_bytes() / 1024 - base) / 1024))

    proc = ctx.Process(target=child)
    proc.start()
    result = recv.recv()
    proc.join()
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, model_dir: str, n: int, size: int, steps: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import videdit

    frames = moving_clip(n, size)
    for share in ("every-rank", "broadcast", "every-rank", "broadcast"):  # first pair warms up
        t0 = time.perf_counter()
        res = videdit.edit(frames, "make it a watercolour", method="anchor", model=model_dir, size=size, steps=steps,
                           anchor_share=share, progress=False, device="cpu")
        total = time.perf_counter() - t0
        if rank == 0:
            with open(out, "a") as f:
                f.write(f"{share} {total:.3f} {max(res.info['anchors_s_by_rank']):.3f} "
                        f"{res.info['anchor_cache_mb']:.2f}\n")
    # the transfer alone: 256 MiB through parallel.broadcast_tensors, as the broadcast share sends a cache
    import torch.distributed as dist

    from videdit.parallel import broadcast_tensors

    big = {("probe", 0, 0): torch.ones(64 * 2**20)} if rank == 0 else None
    dist.barrier()
    t0 = time.perf_counter()
    broadcast_tensors(big, "cpu")
    dist.barrier()
    if rank == 0:
        with open(out, "a") as f:
            f.write(f"probe {time.perf_counter() - t0:.3f} 0 256\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default=None, help="instruction editor folder (default: a fresh tiny ip2p model)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline
    from diffusers.utils import logging as dlog
    from PIL import Image

    from videdit.config import make_options
    from videdit.models import load_sd
    from videdit.tiny import write_tiny_model

    dlog.set_verbosity_error()
    tmp = Path(tempfile.mkdtemp(prefix="anchor-bench-"))
    model_dir = args.model or str(write_tiny_model("ip2p", tmp / "tiny-ip2p"))
    model = load_sd(model_dir, device="cpu")
    opts = make_options(dict(prompt="make it a watercolour", method="anchor", steps=args.steps, size=args.size,
                             chunk=8, progress=False, device="cpu"))[0]
    print(f"model {model_dir}, {args.size}x{args.size}, {args.steps} Euler ancestral steps, 3 anchors, chunk 8, "
          f"{args.threads} threads")

    anchor_run(model, moving_clip(8, args.size), opts)  # warm-up
    print("\n1. seconds per frame (anchor)")
    spf = {}
    peaks = {}
    for n in (16, 48, 120):
        dt, peaks[n] = measure_in_child(model, n, args.size, opts)
        spf[n] = dt / n
        print(f"   {n:4d} frames: {dt:7.2f} s, {spf[n]:.4f} s/frame")
    print(f"   120 vs 16 frames: {spf[120] / spf[16]:.2f}x per frame")

    print("\n2. frame by frame with diffusers' StableDiffusionInstructPix2PixPipeline (same model, steps, sampler)")
    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(model_dir, safety_checker=None,
                                                                  requires_safety_checker=False)
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    frames = moving_clip(16, args.size)
    pipe("make it a watercolour", image=Image.fromarray(frames[0]), num_inference_steps=args.steps)  # warm-up
    t0 = time.perf_counter()
    for f in frames:
        pipe("make it a watercolour", image=Image.fromarray(f), num_inference_steps=args.steps, guidance_scale=7.5,
             image_guidance_scale=1.5, generator=torch.Generator().manual_seed(0))
    pipe_spf = (time.perf_counter() - t0) / len(frames)
    print(f"   pipeline: {pipe_spf:.4f} s/frame; anchor at 120 frames: {spf[120]:.4f} s/frame; "
          f"ratio pipeline / anchor = {pipe_spf / spf[120]:.2f}")
    del pipe

    print("\n3. peak memory above the loaded model (resident set of a forked child per size, chunks of 8)")
    for n, mb in peaks.items():
        print(f"   {n:4d} frames: {mb:7.1f} MiB")
    print(f"   120 vs 16 frames: {peaks[120] / max(peaks[16], 1e-6):.2f}x "
          f"(the inputs and outputs themselves: {120 * args.size**2 * 3 * 2 / 2**20:.1f} MiB at 120 frames)")

    print("\n4. two processes (gloo, 48 frames): anchors' cache on every rank vs broadcast from rank 0")
    import torch.multiprocessing as mp

    out = tmp / "parallel.txt"
    mp.start_processes(_rank, args=(_free_port(), model_dir, 48, args.size, args.steps, str(out)), nprocs=2,
                       start_method="fork")
    rows = [line.split() for line in out.read_text().splitlines()][2:]
    probe_s = float(rows.pop()[1])
    for share, total, anchors_s, mb in rows:
        print(f"   {share:10s}: total {float(total):6.2f} s, anchors (+ broadcast) {float(anchors_s):5.2f} s, "
              f"cache {float(mb):.1f} MiB")
    sd_mb = sd15_cache_mb(512, 384)
    sd_total = sd_mb * 1e6 * 3 * 10 * 3 / 2**30  # decimal MB -> GiB
    print(f"   gloo broadcast of 256 MiB here: {probe_s:.2f} s ({256 / probe_s:.0f} MiB/s). SD 1.5 at 512x384 fp16: "
          f"{sd_mb:.1f} MB per anchor, step and branch -> {sd_total:.2f} GiB for 3 anchors x 10 steps x 3 branches, "
          f"{sd_total * 1024 / (256 / probe_s):.1f} s to broadcast at this rate")


if __name__ == "__main__":
    main()

"""Peak memory and time of one ST-Layout-modulated denoising step: chunked vs dense reference.

The SD 1.5 UNet architecture (random weights, fp32) at 256x256 (latent 32x32), a guided batch of
2 x F frames, two regions and a background, ST-Layout attention active (timestep 901) at the
levels 16x16, 8x8 and 4x4 (factors 2, 4, 8; the 32x32 level keeps plain chunked cross-frame
attention, unchunked, in both runs); and, as a second table, one modulated self-attention layer alone
(where the difference lives; in the whole step at 256 px the feed-forward activations of the
32x32 level are as large). Two implementations of the same step:

    dense    `videdit.attention.layout.dense_modulated_attention`: per self-attention layer the
             (F*N)^2 mask M and the logits of all heads at once, the formula written out.
    chunked  `videdit.attention.layout.modulated_attention`: M built per query chunk from region
             ids, ``--chunk`` queries at a time (the project's default chunk follows a 64 MiB
             logits budget; pass --chunk 0 to use it).

Memory: each (implementation, frames) runs in a fresh subprocess after the UNet and inputs exist.
CUDA: max_memory_allocated during the step minus allocated before. CPU: the process's peak
resident set (VmHWM, reset by writing 5 to /proc/self/clear_refs just before) minus VmRSS then;
it counts every page the step touches, so it carries some MiB of noise. Linux only.

    python benchmarks/layout_attention.py                    # 8 and 16 frames, UNet step and one layer
    python benchmarks/layout_attention.py --only layer       # the attention layer alone (fast)
    python benchmarks/layout_attention.py --frames 16 --chunk 1024
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch

from _peak import measure, run_child  # benchmarks/_peak.py: shared peak-memory measurement

MIB = 2**20
SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)


def layout_state(frames, latent, dense, chunk):
    from videdit.attention.layout import LayoutState

    h, w = latent
    left = np.zeros((frames, h, w), bool)
    left[:, h // 4:, : w // 2] = True
    right = np.zeros((frames, h, w), bool)
    right[:, h // 4:, w // 2:] = True
    tokens = torch.full((77,), -1)
    tokens[1:3], tokens[4:6] = 0, 1
    return LayoutState(frames, latent, masks=[left, right, ~(left | right)], token_ids=tokens,
                       cross_regions=[True, True, False], chunk_size=chunk or None, dense=dense, timestep=901.0)


def step(unet, frames, size, dense, chunk, device):
    from videdit.attention.layout import layout_attention

    latent = (size // 8, size // 8)
    g = torch.Generator(device).manual_seed(0)
    x = torch.randn(2 * frames, 4, *latent, generator=g, device=device)
    emb = torch.randn(2 * frames, 77, 768, generator=g, device=device)
    state = layout_state(frames, latent, dense, chunk)

    def run():
        with torch.no_grad(), layout_attention(unet, state):
            return unet(x, 901, encoder_hidden_states=emb).sample

    return run


def layer(frames, size, dense, chunk, device):
    """One modulated self-attention call at the 16x16 level of SD 1.5 (factor 2 at 256 px: 640 channels,
    8 heads of 80), the conditional branch: (F*N) queries against (F*N) keys."""
    from videdit.attention.layout import dense_modulated_attention, modulated_attention, same_region

    latent = (size // 8, size // 8)
    n = (latent[0] // 2) * (latent[1] // 2)
    g = torch.Generator(device).manual_seed(0)
    q, k, v = (torch.randn(8, frames * n, 80, generator=g, device=device) for _ in range(3))
    ids, sigma = layout_state(frames, latent, dense, chunk).self_layout(latent[0] // 2, latent[1] // 2, device)
    if dense:
        return lambda: dense_modulated_attention(q, k, v, same_region(ids, ids), sigma, 0.3 * 0.59)
    return lambda: modulated_attention(q, k, v, ids, ids, sigma, 0.3 * 0.59, chunk_size=chunk or None)


def child(args):
    from diffusers import UNet2DConditionModel

    torch.set_num_threads(args.threads)
    if args.what == "layer":
        layer(2, 64, args.impl == "dense", args.chunk, args.device)()  # warm-up
        run = layer(args.frame, args.size, args.impl == "dense", args.chunk, args.device)
    else:
        torch.manual_seed(0)
        unet = UNet2DConditionModel(**SD15_UNET).to(args.device).eval()
        step(unet, 2, 64, args.impl == "dense", args.chunk, args.device)()  # warm-up: thread pools, kernels
        run = step(unet, args.frame, args.size, args.impl == "dense", args.chunk, args.device)
    peak, seconds, out = measure(run, 1, args.device)
    checksum = float(out.double().abs().mean())
    print(json.dumps({"peak": peak, "seconds": seconds, "checksum": checksum}))


def child_result(args, impl, frames, what="step"):
    flags = ["--child", impl, "--frame", str(frames), "--what", what]
    for flag in ("size", "chunk", "device", "threads"):
        flags += [f"--{flag}", str(getattr(args, flag))]
    return run_child(__file__, flags)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=512, help="queries per chunk (0: the default budget)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--child", choices=("dense", "chunked"), dest="impl", help=argparse.SUPPRESS)
    parser.add_argument("--frame", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--what", choices=("step", "layer"), default="step", help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=("step", "layer", "both"), default="both",
                        help="the whole UNet step, the single attention layer, or both tables")
    args = parser.parse_args(argv)
    if args.impl:
        return child(args)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"SD 1.5 UNet (random weights, fp32), {args.size}x{args.size}, guided batch 2xF, one modulated step, "
          f"device {args.device}, {args.threads} threads, chunk {args.chunk or 'default'}, load average {load:.1f}")
    tables = {"step": "one UNet step", "layer": "one modulated self-attention layer (16x16 level, cond branch)"}
    for what in (("step", "layer") if args.only == "both" else (args.only,)):
        print(f"-- {tables[what]}")
        print(f"{'frames':>6s} {'dense MiB':>10s} {'chunked MiB':>12s} {'mem ratio':>10s} {'dense s':>8s} "
              f"{'chunked s':>10s} {'time ratio':>10s} {'same output':>11s}")
        for frames in args.frames:
            dense, err_d = child_result(args, "dense", frames, what)
            chunked, err_c = child_result(args, "chunked", frames, what)
            if dense is None or chunked is None:
                print(f"{frames:6d} failed: {err_d or err_c}")
                continue
            same = abs(dense["checksum"] - chunked["checksum"]) <= 1e-4 * abs(dense["checksum"])
            print(f"{frames:6d} {dense['peak'] / MIB:10.0f} {chunked['peak'] / MIB:12.0f} "
                  f"{chunked['peak'] / dense['peak']:10.3f} {dense['seconds']:8.1f} {chunked['seconds']:10.1f} "
                  f"{chunked['seconds'] / dense['seconds']:10.3f} {str(same):>11s}", flush=True)
    print("ratios: chunked / dense (below 1: chunked uses less)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

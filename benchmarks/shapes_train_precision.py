"""Would a cheaper number format shorten ShapesWorld training on this CPU? One training step (UNet forward,
backward, AdamW) of the shipped shapes-sd or shapes-ip2p UNet in float32, under bfloat16 autocast, and
(with --compile) after torch.compile, all measured in this run on the same batch.

    python benchmarks/shapes_train_precision.py [--kind sd|ip2p] [--batch 32] [--steps 6] [--threads 2] [--compile]

shapes-sd and shapes-ip2p should each train in 60 minutes on 2 CPU cores; the recipes in their model
cards are float32. Prints seconds per step (median of the timed steps) and each ratio to float32; a ratio below
1 would mean more steps in the same budget. bfloat16 autocast uses AMX / AVX-512 BF16 where the CPU has
them (`lscpu | grep -o 'amx_bf16\\|avx512_bf16'`). torch.compile needs a C++ compiler and takes minutes to
compile the first step, which is not counted.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def step_times(unet, batch: int, steps: int, bf16: bool, compiled: bool = False) -> list[float]:
    cin, dim = unet.config.in_channels, unet.config.cross_attention_dim
    gen = torch.Generator().manual_seed(0)
    x, h = torch.randn(batch, cin, 16, 16, generator=gen), torch.randn(batch, 16, dim, generator=gen)
    t = torch.randint(0, 1000, (batch,), generator=gen)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-5)
    forward = torch.compile(unet) if compiled else unet
    times = []
    for _ in range(steps + 1):  # the first step warms up (and compiles)
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = forward(x, t, encoder_hidden_states=h).sample
        loss = (out.float() - x[:, :4]).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return times[1:]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=("sd", "ip2p"), default="sd")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per variant (default %(default)s)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="also torch.compile (float32)")
    a = ap.parse_args(argv)
    from diffusers import UNet2DConditionModel

    from videdit.shapes import weights_path

    torch.set_num_threads(a.threads)
    folder = weights_path(f"shapes-{a.kind}") / "unet"
    if not folder.is_dir():
        print(f"skipped: no shapes-{a.kind} weights at {folder}")
        return 0
    variants = [("float32", False, False), ("bfloat16 autocast", True, False)] + [("torch.compile", False, True)] * a.compile
    print(f"shapes-{a.kind} UNet, batch {a.batch}, {a.threads} threads, median of {a.steps} steps")
    base = None
    for name, bf16, compiled in variants:
        unet = UNet2DConditionModel.from_pretrained(folder, torch_dtype=torch.float32).train()
        s = statistics.median(step_times(unet, a.batch, a.steps, bf16, compiled))
        base = base or s
        print(f"{name:20s} {s:6.3f} s/step   x{s / base:.2f} of float32", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Cost of one shapes-i2v training step (UNet forward + backward) on this machine, by batch and heads.

    python benchmarks/i2v_train_step.py [--threads 2]

Prints seconds per step for the `videdit.shapes.train.I2V_UNET_CONFIG` UNet on 8-frame 64x64 clips
(16x16 latents) at 4 and 2 clips per batch, and with 1 attention head instead of the configured 4,
all measured in this run, so the ratios compare like with like. Run it on an idle CPU: the training
budget (90 minutes) is planned from it.
"""

from __future__ import annotations

import argparse
import time

import torch


def step_seconds(batch: int, heads: int, frames: int = 8, repeats: int = 2) -> float:
    from diffusers import I2VGenXLUNet

    from videdit.shapes import train

    unet = I2VGenXLUNet(**dict(train.I2V_UNET_CONFIG, attention_head_dim=heads))
    x = torch.randn(batch, 4, frames, 16, 16)
    cond = dict(fps=torch.full((batch,), train.I2V_FPS), image_latents=torch.randn_like(x),
                image_embeddings=torch.randn(batch, 1, 64), encoder_hidden_states=torch.randn(batch, 77, 64))
    for i in range(repeats + 1):  # the first step warms up
        if i == 1:
            t0 = time.perf_counter()
        unet(x, torch.randint(0, 1000, (batch,)), **cond).sample.pow(2).mean().backward()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    base = step_seconds(4, 4)
    print(f"{'clips x 8 frames':>16s} {'heads':>5s} {'s/step':>7s} {'ratio':>6s}")
    for batch, heads in ((4, 4), (2, 4), (2, 1)):
        s = base if (batch, heads) == (4, 4) else step_seconds(batch, heads)
        print(f"{batch:16d} {heads:5d} {s:7.2f} {s / base:6.2f}")


if __name__ == "__main__":
    main()

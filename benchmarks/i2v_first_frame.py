"""How much an image-to-video model's clean-clip estimate owes to its first frame.

For held-out ShapesWorld clips (8 frames), the clip is noised to timestep t and the model's v prediction
turned into an estimate of the clean latents, x0 = sqrt(abar) z_t - sqrt(1 - abar) v. Printed, per t:
the mean squared error of that estimate against the clip's latents, for frame 0 and for the later
frames, once conditioned on the clip's own first frame and once on another clip's. At t = 999 (SNR 0
on I2VGen-XL's zero-terminal schedule) the noisy input carries nothing, so a model that reads its first
frame has a small frame-0 error there and a large one with the wrong frame; the latents' variance is
printed for scale.

    python benchmarks/i2v_first_frame.py --model runs/shapes/i2v2/pipeline
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="shapes-i2v")
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--timesteps", default="999,800,500")
    parser.add_argument("--speed", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                        help="how far movers travel per frame, in frame widths (default: the i2v trainer's; "
                             "0.01 0.03 is the world's default, on which the shapes-i2v runs before i2v3 were measured)")
    args = parser.parse_args(argv)

    from videdit.diffusion import make_scheduler, vae_encode
    from videdit.errors import UserError
    from videdit.i2v import condition, load_i2v, predict
    from videdit.shapes.train import HELD_OUT_SEED, I2V_SPEED, clip_batch

    try:
        model = load_i2v(args.model, device="cpu")
    except UserError as exc:
        print(f"skipped: {exc}")
        return 0
    n, frames = args.clips, 8
    batch = clip_batch(np.random.default_rng(HELD_OUT_SEED + 7), n, frames, tuple(args.speed or I2V_SPEED))
    clips, captions = batch.frames, batch.captions
    abar = make_scheduler(model, 50).alphas_cumprod
    gen = torch.Generator().manual_seed(0)
    latents = [vae_encode(model, c) for c in clips]  # (F, C, h, w) each
    print(f"model {args.model}: {n} held-out clips of {frames} frames; x0 error (MSE) by first frame given")
    print(f"{'t':>5s} {'own: frame 0':>13s} {'later':>7s} {'other: frame 0':>15s} {'later':>7s}")
    for t in (int(s) for s in args.timesteps.split(",")):
        a = abar[t]
        errs = {"own": [], "other": []}
        for i, z0 in enumerate(latents):
            zt = a.sqrt() * z0 + (1 - a).sqrt() * torch.randn(z0.shape, generator=gen)
            for which, first in (("own", clips[i][0]), ("other", clips[(i + 1) % n][0])):
                with torch.no_grad():
                    v = predict(model, zt[None], torch.tensor([t]), condition(model, captions[i], first, frames, 8))[0]
                x0 = a.sqrt() * zt - (1 - a).sqrt() * v
                errs[which].append(((x0 - z0) ** 2).mean(dim=(1, 2, 3)).numpy())
        own, other = np.stack(errs["own"]), np.stack(errs["other"])
        print(f"{t:5d} {own[:, 0].mean():13.3f} {own[:, 1:].mean():7.3f} {other[:, 0].mean():15.3f} {other[:, 1:].mean():7.3f}")
    print(f"latent variance {float(torch.stack(latents).var()):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

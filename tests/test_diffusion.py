"""Shared sampling pieces: the fp16 VAE guard and the frame/tensor conversions."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from videdit.diffusion import frames_to_tensor, tensor_to_frames, vae_decode


class Fp16OverflowVAE(torch.nn.Module):
    """Decodes to NaN in fp16 (as SD's VAE can overflow), to a constant grey in fp32."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.config = SimpleNamespace(scaling_factor=0.5)

    @property
    def dtype(self):
        return self.weight.dtype

    def decode(self, z):
        T, _, h, w = z.shape
        value = float("nan") if self.weight.dtype == torch.float16 else 0.0
        return SimpleNamespace(sample=torch.full((T, 3, h * 8, w * 8), value, dtype=self.weight.dtype))


def test_fp16_vae_decode_that_overflows_is_redone_in_fp32():
    vae = Fp16OverflowVAE().half()
    frames = vae_decode(SimpleNamespace(vae=vae), torch.zeros(3, 4, 2, 2, dtype=torch.float16), chunk=2)
    assert frames.shape == (3, 16, 16, 3)
    assert (frames == 128).all()  # 0 in [-1, 1] -> 127.5 -> 128
    assert vae.dtype == torch.float16  # the VAE is left as it was found


def test_frame_tensor_roundtrip_is_exact():
    frames = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    assert np.array_equal(tensor_to_frames(frames_to_tensor(frames, "cpu", torch.float32)), frames)

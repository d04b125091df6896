"""Training for videdit generate: a few steps of each trainer, resumable, output loadable."""

from __future__ import annotations

import json

import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")


def test_train_streaming_few_steps_resumes_and_writes_loadable_modules(tmp_path):
    from videdit.cli import main
    from videdit.generate.modules import load_modules
    from videdit.generate.t2v import load_t2v
    from videdit.generate.tiny import write_tiny_t2v

    base = write_tiny_t2v(tmp_path / "tiny")
    run = tmp_path / "run"
    args = ["train-streaming", "shapes", "--base", str(base), "-o", str(run), "--size", "64", "--batch", "1"]
    assert main([*args, "--steps", "2"]) == 0
    assert torch.load(run / "ckpt.pt", weights_only=False)["step"] == 2
    assert main([*args, "--steps", "3"]) == 0  # continues from step 2
    logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert logged[-1]["done"] and logged[-1]["step"] == 3
    model = load_t2v(str(base), device="cpu")
    cam, apm = load_modules(run / "streaming", model.unet)
    # the zero-initialised outputs moved: the modules were trained
    assert cam.mergers[0].proj_out.weight.abs().sum() > 0 and apm is not None
    trained = load_t2v(str(base), device="cpu").unet
    from diffusers import UNet3DConditionModel

    new = UNet3DConditionModel.from_pretrained(run / "unet")
    changed = {n for (n, p), (_, q) in zip(trained.named_parameters(), new.named_parameters()) if not torch.equal(p, q)}
    assert changed and all(any(k in n for k in ("transformer_in", "temp_attentions", "temp_convs")) for n in changed)


def test_shapes_train_t2v_smoke(tmp_path):
    from videdit.generate.t2v import load_t2v
    from videdit.models import PACKAGE_WEIGHTS
    from videdit.shapes.train import main

    main(["t2v", "--out", str(tmp_path), "--init", str(PACKAGE_WEIGHTS / "shapes-sd"), "--steps", "2", "--batch", "1",
          "--threads", "1"])
    model = load_t2v(str(tmp_path / "pipeline"), device="cpu")
    assert model.unet.config.cross_attention_dim == model.text_encoder.config.hidden_size
    assert torch.load(tmp_path / "ckpt.pt", weights_only=False)["step"] == 2


def test_inflated_unet_is_the_image_unet_on_every_frame():
    """`inflate_unet`: spatial weights carried over, temporal layers the identity until trained. The image UNet's
    heads (2, 4) at widths (32, 64) are 16 channels wide in both blocks, which the video UNet can split alike."""
    from diffusers import UNet2DConditionModel

    from videdit.generate.train import TEMPORAL, inflate_unet

    torch.manual_seed(0)
    image = UNet2DConditionModel(sample_size=8, block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8,
                                 down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                                 attention_head_dim=(2, 4)).eval()
    video = inflate_unet(image).eval()
    assert any(any(k in n for k in TEMPORAL) for n, _ in video.named_parameters())
    x, text = torch.randn(1, 4, 3, 8, 8), torch.randn(1, 5, 16)
    with torch.no_grad():
        per_frame = image(x[0].permute(1, 0, 2, 3), 300, text.expand(3, -1, -1)).sample.permute(1, 0, 2, 3)[None]
        together = video(x, 300, text).sample
    assert torch.allclose(together, per_frame, atol=1e-5), (together - per_frame).abs().max()
    with torch.no_grad():  # and time is in it once the temporal layers move
        for n, p in video.named_parameters():
            if "temp_attentions" in n and n.endswith("proj_out.weight"):
                p.normal_(0, 0.1)
        moved = video(x, 300, text).sample
    assert (moved - per_frame).abs().max() > 1e-3

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

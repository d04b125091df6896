"""Method grain end to end on the tiny model: regions from files, YAML and auto:WORD; blending; errors;
and, once the ShapesWorld model exists, the meaning test (two circles, two colours)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from PIL import Image

from videdit.cli import main
from videdit.errors import UserError
from videdit.video import read_clip

FAST = ["--steps", "3", "--size", "64", "--no-progress", "--no-reconstruction"]
PROMPT = "red truck and blue truck on sand"


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def box_masks(folder, frames, size, box):
    """Per-frame PNGs named by frame number, white inside box = (x0, y0, x1, y1) as fractions."""
    folder.mkdir(parents=True, exist_ok=True)
    x0, y0, x1, y1 = (int(round(v * size)) for v in box)
    for i in frames:
        m = np.zeros((size, size), np.uint8)
        m[y0:y1, x0:x1] = 255
        Image.fromarray(m).save(folder / f"{i:05d}.png")
    return folder


@pytest.fixture(scope="module")
def truck_masks(tmp_path_factory):
    root = tmp_path_factory.mktemp("masks")
    # masks at another size than the clip (resized); numbered by original frame: the run takes frames 4..19
    left = box_masks(root / "left", range(0, 32), 100, (0.0, 0.3, 0.5, 0.9))
    right = box_masks(root / "right", range(0, 32), 100, (0.5, 0.3, 1.0, 0.9))
    short = box_masks(root / "short", range(0, 10), 100, (0.5, 0.3, 1.0, 0.9))
    return left, right, short


def test_cli_grain_trucks_16_frames_two_regions(tiny_sd, videos, truck_masks, tmp_path, capsys):
    left, right, _ = truck_masks
    out = tmp_path / "out.mp4"
    code, _, err = run_cli(["edit", videos / "trucks-race.mp4", "-o", out, "--model", tiny_sd, "--method", "grain",
                            "--prompt", PROMPT, "--start", "4", "--frames", "16",
                            "--region", f"left={left}:red truck", "--region", f"right={right}:blue truck",
                            "--save-attention", "--inject-steps", "1", *FAST], capsys)
    assert code == 0, err
    assert len(read_clip(out).frames) == 16
    run = tmp_path / "out_run"
    for name in ("edited.mp4", "masks_overlay.mp4", "attention_left.mp4", "attention_right.mp4", "info.yaml"):
        assert (run / name).is_file(), name
    info = yaml.safe_load((run / "info.yaml").read_text())
    assert [r["name"] for r in info["regions"]] == ["left", "right"]
    assert info["spans"] == {"left": [1, 3], "right": [4, 6]}
    assert info["mask_area"]["left"] == pytest.approx(0.3, abs=0.05)
    assert info["layout_steps"] == 1 and info["injected_layers"]["resnets"]
    # one editing step injected: 3 resnets + q and k of one attention layer, at its timestep
    assert info["injected_features"] == 3 + 2


def test_yaml_config_regions_relative_to_the_config(tiny_sd, videos, truck_masks, tmp_path, capsys):
    left, right, _ = truck_masks
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "method": "grain", "prompt": PROMPT, "frames": 4, "control": "canny",
        "regions": [{"name": "left", "mask": str(left.relative_to(left.parents[1])), "prompt": "red truck"},
                    {"name": "right", "mask": str(right), "prompt": "blue truck"}]}))
    (tmp_path / left.parent.name).symlink_to(left.parent)
    out = tmp_path / "cfg.mp4"
    code, _, err = run_cli(["edit", videos / "trucks-race.mp4", "-o", out, "--model", tiny_sd, "--config", config,
                            *FAST], capsys)
    assert code == 0, err
    assert len(read_clip(out).frames) == 4
    assert (tmp_path / "cfg_run" / "control.mp4").is_file()


@pytest.mark.parametrize("case", ["not_a_span", "short_folder", "no_regions", "bad_syntax", "wrong_method",
                                  "missing_mask", "auto_word_missing"])
def test_bad_regions_exit_2_without_output(case, tiny_sd, videos, truck_masks, tmp_path, capsys):
    left, right, short = truck_masks
    regions = {
        "not_a_span": ["--region", f"left={left}:polar bear"],
        "short_folder": ["--region", f"right={short}:blue truck"],
        "no_regions": [],
        "bad_syntax": ["--region", "left"],
        "wrong_method": ["--region", f"left={left}:red truck", "--method", "invert"],
        "missing_mask": ["--region", f"left={tmp_path / 'nowhere'}:red truck"],
        "auto_word_missing": ["--region", "left=auto:wolf:red truck", "--source-prompt", "two trucks on sand"],
    }[case]
    method = [] if case == "wrong_method" else ["--method", "grain"]
    out = tmp_path / "bad.mp4"
    code, _, err = run_cli(["edit", videos / "trucks-race.mp4", "-o", out, "--model", tiny_sd, "--prompt", PROMPT,
                            "--frames", "16", *method, *regions, *FAST], capsys)
    assert code == 2
    assert err.startswith("videdit: error:") and len(err.strip().splitlines()) == 1
    expected = {"not_a_span": "not part of the prompt", "short_folder": "no mask for frame 10",
                "no_regions": "needs at least one region", "bad_syntax": "NAME=MASK:PROMPT",
                "wrong_method": "--method grain", "missing_mask": "does not exist", "auto_word_missing": "'wolf'"}[case]
    assert expected in err
    assert not out.exists() and not (tmp_path / "bad_run").exists()


def test_token_spans(tiny_sd):
    from videdit.methods.grain import token_region_ids, token_spans
    from videdit.models import load_sd

    tok = load_sd(str(tiny_sd)).tokenizer
    prompt = "Spiderman and Polar Bear on grass meadow"
    spans = token_spans(tok, prompt, ["polar bear", "grass meadow", "Spiderman"])
    ids = tok(prompt).input_ids  # with the start token: span positions index it directly
    for (a, b), phrase in zip(spans, ["polar bear", "grass meadow", "spiderman"]):
        assert tok.decode(ids[a:b]).strip() == phrase
    assert spans[2][0] == 1 and spans[0][0] > spans[2][1] and spans[1][0] > spans[0][1]
    # repeated phrases take successive occurrences
    assert token_spans(tok, "a red car and a red car", ["a red car", "a red car"]) == [(1, 4), (5, 8)]
    with pytest.raises(UserError, match="not part of the prompt"):
        token_spans(tok, "a red car", ["red truck"])
    with pytest.raises(UserError, match="not part of the prompt"):
        token_spans(tok, "a red car", ["red car", "red car"])
    assert token_region_ids(10, [(1, 3), (4, 5)]).tolist() == [-1, 0, 0, -1, 1, -1, -1, -1, -1, -1]


def _frames(t=4, size=64, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    return np.stack([np.roll(base, 2 * i, axis=1) for i in range(t)])


def test_blending_keeps_source_latents_outside_the_regions_and_embeddings_replaced(tiny_sd, monkeypatch, tmp_path):
    import torch

    import videdit
    from videdit.diffusion import encode_text, vae_encode
    from videdit.methods import grain
    from videdit.models import load_sd

    model = load_sd(str(tiny_sd))
    frames = _frames(t=2)
    left = np.zeros((64, 64), np.uint8)
    left[:, :32] = 255
    Image.fromarray(left).save(tmp_path / "left.png")
    decoded = []
    real_decode = grain.vae_decode
    monkeypatch.setattr(grain, "vae_decode", lambda m, z, c=8: decoded.append(z.clone()) or real_decode(m, z, c))
    opts = dict(model=model, steps=3, size=64, progress=False, no_cache=True, reconstruction=False, strength=1.0,
                method="grain")
    videdit.edit(frames, "a red car on grass", regions=[f"car={tmp_path / 'left.png'}:red car"], **opts)
    edited, z0 = decoded[0], vae_encode(model, frames)
    assert torch.equal(edited[..., 4:], z0[..., 4:])          # right half of the 8x8 latent: exactly the source
    assert not torch.allclose(edited[..., :4], z0[..., :4], atol=1e-3)
    # blending off: the right half changes too
    decoded.clear()
    videdit.edit(frames, "a red car on grass", regions=[f"car={tmp_path / 'left.png'}:red car"], blend_from=1.0, **opts)
    assert not torch.allclose(decoded[0][..., 4:], z0[..., 4:], atol=1e-3)
    # region embeddings: the span holds the region prompt encoded alone
    emb = grain.region_embeddings(model, "a red car on grass", ["red car"], [(2, 4)])
    alone = encode_text(model, ["red car"])
    assert torch.equal(emb[0, 2:4], alone[0, 1:3])
    assert torch.equal(emb[0, :2], encode_text(model, ["a red car on grass"])[0, :2])


def test_auto_masks_from_cross_attention_are_written(tiny_sd, videos, tmp_path, capsys):
    out = tmp_path / "auto.mp4"
    code, _, err = run_cli(["edit", videos / "fox.mp4", "-o", out, "--model", tiny_sd, "--method", "grain",
                            "--prompt", "a red fox on snow", "--source-prompt", "a fox on grass",
                            "--region", "fox=auto:fox:red fox", "--frames", "4", *FAST], capsys)
    assert code == 0, err
    run = tmp_path / "auto_run"
    masks = read_clip(run / "mask_fox.mp4").frames
    assert masks.shape[0] == 4
    inside = (masks.mean(-1) > 127).mean()
    assert 0.0 < inside < 1.0  # thresholded at 0.3 of the per-frame range: neither empty nor everything
    assert (run / "masks_overlay.mp4").is_file()


# ---------------------------------------------------------------------------------------
# Meaning: ShapesWorld

def _shapes_benchmark():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "grain_shapes.py"
    spec = importlib.util.spec_from_file_location("grain_shapes", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shapesworld_two_circles_grain_beats_invert():
    from videdit.shapes import weights_path

    if not (weights_path("shapes-sd") / "model_index.json").is_file():
        pytest.skip(f"the ShapesWorld model is not trained yet ({weights_path('shapes-sd')} has no model_index.json)")
    scores_file = weights_path("shapes-sd") / "scores.json"  # publishing new weights leaves it out until measured
    if not scores_file.is_file():
        pytest.skip("shapes-sd has no scores.json; measure it with benchmarks/shapes_quality.py")
    scores = json.loads(scores_file.read_text())
    if scores["colour"] < 0.85 or scores["background"] < scores["bars"]["background"]:
        # a model that cannot draw the asked colours and backgrounds cannot tell the methods apart
        pytest.skip("shapes-sd draws too few asked colours or backgrounds (scores.json); "
                    "grain vs invert is printed by benchmarks/grain_shapes.py")
    bench = _shapes_benchmark()
    # on sand: a green circle on grass is the model's weakest case (benchmark --background grass)
    clip, masks = bench.two_circles(8, background="sand")
    assert all(m.any(axis=(1, 2)).all() for m in masks)
    # per-region colour accuracy by the oracle under the ground-truth masks, grain (regions, lambda 20 for
    # this model's narrow logits) vs invert with injection (same prompt, no regions; the circles stay in
    # place); measured at 8 frames, 25 steps: grain 1.0 / 1.0, invert 1.0 / 0.0 (both circles blue)
    from videdit.models import load_sd

    from videdit.shapes import method_options

    model = load_sd("shapes-sd")
    grain = bench.score(bench.edit(model, clip, masks, "grain", 20, background="sand", **method_options("grain", 20)),
                        masks)  # strength 1, as invert below
    invert_options = {**method_options("invert", 20), "strength": 1.0, "guidance": 7.5}
    invert = bench.score(bench.edit(model, clip, masks, "invert", 20, background="sand", **invert_options), masks)
    assert grain["left"] >= 0.75 and grain["right"] >= 0.75, grain
    assert invert["left"] + invert["right"] <= 1.25, invert  # one colour takes both circles

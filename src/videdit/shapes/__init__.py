"""ShapesWorld: a synthetic world with ground truth, small diffusion models trained on it, and an oracle.

- `world`: seeded scenes, clips (with per-frame masks, attributes and motion), captions, instruction triples
- `judge`: the oracle that reads colours, shapes and backgrounds back from pixels
- `train`: `videdit shapes train {vae,sd,ip2p,i2v,t2v}` trains the models (CPU by default, `--device cuda` on a GPU)
- `evaluate`: the quality measures of the models (used by `benchmarks/shapes_quality.py` and the tests)

Trained pipelines live in diffusers folders under `weights/` (`weights_path("shapes-sd")`).
"""

from pathlib import Path

WEIGHTS = Path(__file__).parent / "weights"
MODELS = ("shapes-sd", "shapes-ip2p", "shapes-i2v", "shapes-t2v")
# shapes-ip2p's guidance scales (text, image). On 100 held-out pairs (20 DDIM steps, the v4 weights) the share
# of accepted edits was 0.56 at text guidance 5, 0.42 at 7.5 (InstructPix2Pix's default), and 0.70-0.72 for
# any text guidance from 1.5 to 3 (image guidance 1.2-2.0 mattered less): a higher text scale pushed the
# small model to redraw the whole scene, so the objects or background it should keep changed with it.
IP2P_GUIDANCE = (3.0, 1.5)


def method_options(method: str, steps: int) -> dict:
    """Options under which the ShapesWorld models do what the methods promise (measured on 8-16-frame clips;
    the CLI takes the same as flags: ``--inject-steps``, ``--layout-cross``, ``--strength``, ...). The
    README's ShapesWorld checks, `videdit demo` and `videdit bench shapes` all run under these:

    - invert: plug-and-play injection in the first half of the steps. Without it the inverted noise does
      not hold the layout once the prompt changes: "a red circle" -> "a blue circle" moved the circle.
      Strength 0.8 and guidance 5, as the method's check (`evaluate.invert_recolour`) was measured.
    - grain: every UNet level is coarse at 64 px (latents 16x16), so ST-Layout attention goes on all of
      them (factors 1, 2, 4), with cross-attention strength lambda = 20: shapes-sd's cross-attention logits
      span 1.2 to 6.3 per query (max - min over 77 tokens; measured on the 120-minute model), and with the paper's lambda = 1 the ~70 tokens
      outside every region's span keep most of the probability mass (benchmarks/grain_shapes.py).
      Strength 1 (editing starts from the fully inverted noise) and guidance 7.5: at strength 0.8 and
      guidance 5 the left of two red circles asked blue came out green or misshapen (blue and round, the
      other kept, in 2 of 8 frames on sand, 0 of 8 on grass; 8 of 8 on sand at strength 1; 8 frames, 30 steps).
    - anchor: shapes-ip2p's guidance scales `IP2P_GUIDANCE` (text 3, image 1.5), not InstructPix2Pix's 7.5.
    - i2v: the empty negative prompt. The method's default negative prompt ("Distorted, discontinuous, ...")
      has no word of the world's vocabulary: the CLIP tokenizer cuts it into letter pieces that shapes-i2v
      never saw, and at guidance 9 the grass of the method's check turned dark blue all over.
    """
    if method == "invert":
        return {"inject_steps": steps // 2, "strength": 0.8, "guidance": 5.0}
    if method == "grain":
        return {"layout_cross": 20.0, "layout_factors": "1,2,4", "strength": 1.0, "guidance": 7.5}
    if method == "anchor":
        return {"guidance": IP2P_GUIDANCE[0], "image_guidance": IP2P_GUIDANCE[1]}
    if method == "i2v":
        return {"negative_prompt": ""}
    return {}


def weights_path(name: str) -> Path:
    """Folder of a committed ShapesWorld pipeline (one of `MODELS`); it may be absent."""
    if name not in MODELS:
        raise ValueError(f"unknown ShapesWorld model {name!r}; known: {', '.join(MODELS)}")
    return WEIGHTS / name

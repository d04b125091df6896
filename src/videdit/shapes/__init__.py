"""ShapesWorld: a synthetic world with ground truth, small diffusion models trained on it, and an oracle.

- `world`: seeded scenes, clips (with per-frame masks, attributes and motion), captions, instruction triples
- `judge`: the oracle that reads colours, shapes and backgrounds back from pixels
- `train`: `python -m videdit.shapes.train {vae,sd,ip2p}` trains the models on CPU
- `evaluate`: the quality measures of the models (used by `benchmarks/shapes_quality.py` and the tests)

Trained pipelines live in diffusers folders under `weights/` (`weights_path("shapes-sd")`).
"""

from pathlib import Path

WEIGHTS = Path(__file__).parent / "weights"
MODELS = ("shapes-sd", "shapes-ip2p")


def weights_path(name: str) -> Path:
    """Folder of a committed ShapesWorld pipeline (`shapes-sd` or `shapes-ip2p`); it may be absent."""
    if name not in MODELS:
        raise ValueError(f"unknown ShapesWorld model {name!r}; known: {', '.join(MODELS)}")
    return WEIGHTS / name

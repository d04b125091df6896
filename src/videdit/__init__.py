"""videdit: edit videos with pretrained diffusion models, without training per video."""

__version__ = "0.1.0"


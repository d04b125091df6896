"""videdit: edit videos with pretrained diffusion models, without training per video."""

__version__ = "0.1.0"


def edit(video, prompt=None, method="invert", output=None, model=None, **options):
    """Edit a video so that it shows ``prompt``; see `videdit.api.edit`."""
    from .api import edit as _edit

    return _edit(video, prompt=prompt, method=method, output=output, model=model, **options)

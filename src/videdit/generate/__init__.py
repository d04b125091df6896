"""Long text-to-video: the UNet3D loop, streaming conditioning (CAM/APM or training-free), refinement
with randomized blending, module training; written chunk by chunk to disk."""

from __future__ import annotations


def generate(output, **options):
    """Generate a long video into ``output``: keyword arguments are `GenerateOptions` fields."""
    from .options import GenerateOptions
    from .stream import generate as run

    return run(GenerateOptions(**options), output)


def refine(video, output, **options):
    """Refine ``video`` into ``output`` with randomized blending: keyword arguments are `GenerateOptions` fields."""
    from .options import GenerateOptions
    from .refine import refine_video

    return refine_video(video, GenerateOptions(**options), output)

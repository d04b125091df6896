"""A random-weight CLIP model of the real classes, for tests of the CLIP metrics.

Same classes and files as ``openai/clip-vit-large-patch14`` (`CLIPModel`, `CLIPImageProcessor`,
`CLIPTokenizer`, safetensors weights), so it loads through `videdit.metrics.load_clip` exactly
like the real model; tiny sizes (32-pixel images, 2 layers of width 32) keep it to milliseconds.
"""

from __future__ import annotations

from pathlib import Path

from .errors import UserError
from .tiny import WORDS
from .tokenizer import write_clip_tokenizer

IMAGE_SIZE = 32


def make_tiny_clip(out_dir: str | Path, seed: int = 0, overwrite: bool = False) -> Path:
    """Write a tiny random `CLIPModel` with its image processor and tokenizer into ``out_dir``."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    from .metrics import image_processor_class

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out} exists and is not empty; pass overwrite to replace its files")
    write_clip_tokenizer(WORDS, out)
    tokenizer = CLIPTokenizer.from_pretrained(out)
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=tokenizer.model_max_length,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  image_size=IMAGE_SIZE, patch_size=8)
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=32))
    model.save_pretrained(out, safe_serialization=True)
    processor = image_processor_class()(size={"shortest_edge": IMAGE_SIZE},
                                        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out

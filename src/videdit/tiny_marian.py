"""A random-weight MarianMT translator of the real classes (MarianMTModel, MarianTokenizer), for tests.

Like the other tiny models it is saved in the layout of the hub models (``config.json``,
``model.safetensors``, ``source.spm``, ``target.spm``, ``vocab.json``, ``generation_config.json``)
and loaded by exactly the code that loads ``Helsinki-NLP/opus-mt-zh-en``. Its SentencePiece models
are trained here in milliseconds: the source side on characters of Chinese, Korean and Japanese
words (so they are single pieces), the target side on whole English words. Its translations are
random English words: what tests check is where they go, not what they mean. Decoding is greedy
and bounded (2 to 4 words, never a source-side piece), so every translation is a few words.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from .errors import UserError
from .tiny import WORDS

# Words of the instructions in tests and examples, cut into characters for the source side.
INIT_STD = 1.0  # wide random weights, so that different texts get different translations
EMBEDDING_NORM = 2.0
SOURCE_TEXT = """将视频中的汽车替换为保时捷 把狗换成猫 把红色圆形变成蓝色 红色的卡车和蓝色的卡车在沙滩上
让它看起来像水彩画 자동차를 포르쉐로 바꿔 원을 파란색으로 바꿔 車をポルシェに変えて 円を青にして 水彩画のようにして"""


def _train_spm(lines: list[str], model_type: str, vocab_size: int | None = None) -> bytes:
    """A SentencePiece model (bytes) trained on ``lines``; ``char`` or ``word`` pieces."""
    import sentencepiece as spm

    model = io.BytesIO()
    options = dict(sentence_iterator=iter(lines), model_writer=model, model_type=model_type,
                   character_coverage=1.0, bos_id=-1, eos_id=1, unk_id=0, pad_id=-1, minloglevel=2,
                   hard_vocab_limit=False, split_by_whitespace=True)
    if vocab_size is not None:
        options["vocab_size"] = vocab_size
    spm.SentencePieceTrainer.train(**options)
    return model.getvalue()


def _pieces(model: bytes) -> list[str]:
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_proto=model)
    return [processor.id_to_piece(i) for i in range(processor.get_piece_size())]


def write_tiny_marian(out_dir: str | Path, seed: int = 0, overwrite: bool = False) -> Path:
    """Write a tiny random MarianMT model (any of zh/ko/ja -> English) to ``out_dir``."""
    try:
        import sentencepiece  # noqa: F401
    except ImportError:
        raise UserError("the tiny MarianMT model needs the sentencepiece package: pip install sentencepiece") from None
    import torch
    from transformers import GenerationConfig, MarianConfig, MarianMTModel, MarianTokenizer

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out} exists and is not empty; pass --overwrite to replace its files")
    out.mkdir(parents=True, exist_ok=True)
    chars = sorted({c for c in SOURCE_TEXT if not c.isspace()})
    source = _train_spm([" ".join(chars)] * 4 + SOURCE_TEXT.split(), "char")
    words = list(dict.fromkeys(WORDS))
    target = _train_spm([" ".join(words)] * 4, "word", vocab_size=len(words) + 2)
    (out / "source.spm").write_bytes(source)
    (out / "target.spm").write_bytes(target)
    # One vocabulary for both sides, as the OPUS-MT models have: </s> 0, <unk> 1, the pieces, <pad> last.
    vocab = {"</s>": 0, "<unk>": 1}
    for piece in _pieces(source) + _pieces(target):
        vocab.setdefault(piece, len(vocab))
    vocab["<pad>"] = len(vocab)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=0), encoding="utf-8")
    (out / "tokenizer_config.json").write_text(json.dumps({"source_lang": "zh", "target_lang": "en",
                                                           "model_max_length": 64}), encoding="utf-8")
    pad = vocab["<pad>"]
    config = MarianConfig(vocab_size=len(vocab), decoder_vocab_size=len(vocab), d_model=16, encoder_layers=1,
                          decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                          encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64, pad_token_id=pad,
                          eos_token_id=0, decoder_start_token_id=pad, forced_eos_token_id=0,
                          share_encoder_decoder_embeddings=True, init_std=INIT_STD)
    torch.manual_seed(seed)
    model = MarianMTModel(config).eval()
    with torch.no_grad():  # rows of one length: no word wins every translation by its norm alone
        shared = model.get_input_embeddings().weight
        shared.mul_(EMBEDDING_NORM / shared.norm(dim=1, keepdim=True).clamp_min(1e-6))
        shared[pad] = 0  # the decoder starts from the padding token, whose embedding is zero
    english = set(_pieces(target)) - {"<unk>", "</s>"}
    never = [[i] for piece, i in vocab.items() if piece not in english and piece != "</s>"]
    model.generation_config = GenerationConfig(
        decoder_start_token_id=pad, eos_token_id=0, pad_token_id=pad, forced_eos_token_id=0, num_beams=1,
        do_sample=False, min_new_tokens=2, max_new_tokens=4, bad_words_ids=never)
    model.save_pretrained(out, safe_serialization=True)
    MarianTokenizer.from_pretrained(out)  # the folder loads as the real ones do
    return out

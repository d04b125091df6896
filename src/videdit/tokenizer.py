"""CLIP byte-level BPE tokenizer files generated locally from a word list.

Tiny models and ShapesWorld models need a real `CLIPTokenizer` (same class, same files as
`openai/clip-vit-large-patch14`) but cannot download one. The vocabulary here holds the 256
byte symbols (with and without the end-of-word marker ``</w>``) and, for every given word, a
chain of merges that builds it from left to right, so that the words of a small world are
single tokens and any other text still tokenizes into byte symbols.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


@lru_cache(maxsize=None)
def _bytes_to_unicode() -> dict[int, str]:
    """The reversible byte -> printable character map of GPT-2/CLIP byte-level BPE."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def build_vocab(words: list[str]) -> tuple[dict[str, int], list[str]]:
    """Vocabulary and merge list (in rank order) that make each of ``words`` one token."""
    symbols = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for s in symbols + [s + "</w>" for s in symbols]:
        vocab.setdefault(s, len(vocab))
    merges: list[str] = []
    seen: set[str] = set()
    for word in dict.fromkeys(w.lower() for w in words if w.strip()):
        pieces = [_bytes_to_unicode()[b] for b in word.encode("utf-8")]
        pieces[-1] += "</w>"
        left = pieces[0]
        for right in pieces[1:]:
            merge = f"{left} {right}"
            left = left + right
            if merge not in seen:
                seen.add(merge)
                merges.append(merge)
                vocab.setdefault(left, len(vocab))
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    return vocab, merges


def write_clip_tokenizer(words: list[str], out_dir: str | Path, max_length: int = 77) -> Path:
    """Write ``vocab.json``, ``merges.txt`` and the configs of a `CLIPTokenizer` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab, merges = build_vocab(words)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": max_length,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
        "do_lower_case": True,
        "clean_up_tokenization_spaces": True,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")
    return out

"""Prompts in a language the text encoder does not read, translated into English before encoding.

Stable Diffusion's CLIP tokenizer has (almost) no tokens for Han, Hangul or kana
(`videdit.prompts.script_coverage`): a Chinese prompt reaches the model as byte fragments it never
learned, and the edit means nothing. With ``--translate auto`` (the default) such a prompt is
translated into English first, by a MarianMT model ("Marian: Fast Neural Machine Translation in
C++", ACL 2018) of the OPUS-MT collection ("OPUS-MT - Building open translation services for the
World", EAMT 2020): presets ``translate-zh``, ``translate-ko`` and ``translate-ja``. A text encoder
whose tokenizer keeps the script whole (a Chinese CLIP, a BERT encoder) gets the prompt as written.

What is translated are the parts the instruction parser found, one by one, not the instruction:
"把红色圆形变成蓝色" is parsed first (recolour "红色圆形" to "蓝色"), then "红色圆形" and "蓝色" are
translated ("red circle", "blue"), and the plan is rebuilt in English
(`videdit.prompts.plan_from_instruction`): source "a red circle", target "a blue circle". So an
instruction stays an instruction, and its source word can still find its region. A description is
translated whole. Region prompts (method grain) are translated alone and the global prompt is put
together from them and its translated glue text, so that each region prompt is still a run of the
global prompt's words.

A translator is any callable ``list[str] -> list[str]`` (texts in, English out); the Python API
takes one as ``translator=``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import Callable

from .errors import UserError
from .masks import AUTO_PREFIX, Region
from .prompts import (EditPlan, Instruction, _clean_en_phrase, detect_language, language_name, language_warning,
                      plan_from_instruction, unreadable_language)

log = logging.getLogger("videdit")

Translator = Callable[[list[str]], list[str]]

TRANSLATE_CHOICES = ("auto", "off")
# Language of the prompt -> the preset of its MarianMT model into English (`videdit.models.PRESETS`).
TRANSLATION_MODELS = {"zh": "translate-zh", "ko": "translate-ko", "ja": "translate-ja"}
MARIAN_FILES = ("config.json", "source.spm", "target.spm", "vocab.json")


# ---------------------------------------------------------------------------------------
# Translators

class MarianTranslator:
    """A MarianMT model and its tokenizer, translating a batch of texts with the model's own
    generation settings (beam search for the OPUS-MT models)."""

    def __init__(self, folder: str | Path, name: str | None = None, allow_pickle: bool = False):
        try:
            import sentencepiece  # noqa: F401  (MarianTokenizer needs it)
        except ImportError:
            raise UserError("translation needs the sentencepiece package: pip install sentencepiece") from None
        from transformers import MarianMTModel, MarianTokenizer

        folder = Path(folder)
        missing = [f for f in MARIAN_FILES if not (folder / f).is_file()]
        if missing:
            raise UserError(f"translation model folder {folder} has no {missing[0]} (a MarianMT model needs "
                            f"{', '.join(MARIAN_FILES)} and its weights)")
        safe = (folder / "model.safetensors").is_file()
        if not safe and not allow_pickle:
            pickled = (folder / "pytorch_model.bin").is_file()
            raise UserError(f"translation model folder {folder} has "
                            + ("only pickle weights (pytorch_model.bin); pass --allow-pickle to load them "
                               "(unpickling runs code)" if pickled else "no model.safetensors"))
        try:
            self.tokenizer = MarianTokenizer.from_pretrained(folder)
            self.model = MarianMTModel.from_pretrained(folder, use_safetensors=safe).eval()
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"cannot load translation model from {folder}: {first[:200]}") from None
        self.name = name or str(folder)

    def __call__(self, texts: list[str]) -> list[str]:
        import torch

        if not texts:
            return []
        batch = self.tokenizer(list(texts), return_tensors="pt", padding=True, truncation=True)
        with torch.no_grad():
            out = self.model.generate(**batch)
        return self.tokenizer.batch_decode(out, skip_special_tokens=True)


def load_translator(name: str, allow_pickle: bool = False) -> MarianTranslator:
    """The MarianMT translator of a preset, repository id or folder; offline without its weights,
    one line naming the download (`videdit.models.resolve`)."""
    from .models import resolve

    return MarianTranslator(resolve(name, allow_pickle=allow_pickle), name, allow_pickle)


# ---------------------------------------------------------------------------------------
# Plans and regions in English

def clean_translation(text: str) -> str:
    """A translation without surrounding spaces and sentence punctuation ("A car." -> "A car")."""
    return re.sub(r"\s+", " ", text).strip(" \t\r\n.。!?！？;；:：\"'“”")


def _foreign(text: str | None) -> bool:
    """Whether ``text`` has letters of a script other than Latin (what needs translating)."""
    return bool(text) and detect_language(text) not in ("en", "und")


def _pieces(text: str, phrases: list[str]) -> list[tuple[str, bool]]:
    """``text`` cut into (piece, is_phrase): each of ``phrases`` found left to right, glue between."""
    out: list[tuple[str, bool]] = []
    positions = []
    taken = [False] * len(text)
    for phrase in phrases:
        start = 0
        while True:
            at = text.find(phrase, start)
            if at < 0:
                break
            if not any(taken[at:at + len(phrase)]):
                positions.append((at, phrase))
                for i in range(at, at + len(phrase)):
                    taken[i] = True
                break
            start = at + 1
    cursor = 0
    for at, phrase in sorted(positions):
        if at > cursor:
            out.append((text[cursor:at], False))
        out.append((phrase, True))
        cursor = at + len(phrase)
    if cursor < len(text):
        out.append((text[cursor:], False))
    return out


def translate_plan(plan: EditPlan, regions: list[Region] | None, translate: Translator, language: str,
                   model_name: str, source_prompt: str = "") -> tuple[EditPlan, list[Region] | None]:
    """``plan`` and ``regions`` with every text in a foreign script translated into English.

    Instruction parts are translated one by one and the plan rebuilt in English against the
    user's ``source_prompt`` (translated too); a description is translated whole, or, with
    regions, put together from its translated region prompts and glue text. One batch goes to
    ``translate``; ``plan.translation`` records what became what.
    """
    regions = list(regions or [])
    region_prompts = [r.prompt for r in regions if _foreign(r.prompt)]
    words = [r.auto_word for r in regions if r.auto_word is not None and _foreign(r.auto_word)]
    instruction = plan.instruction
    if instruction is not None:
        parts = [p for p in (instruction.source, instruction.change) if _foreign(p)]
        glue: list[str] = []
    elif region_prompts:
        pieces = _pieces(plan.target_prompt, region_prompts)
        parts = []
        glue = [p for p, is_phrase in pieces if not is_phrase and _foreign(p)]
    else:
        parts, glue = ([plan.target_prompt] if _foreign(plan.target_prompt) else []), []
    user_source = (source_prompt or "").strip()
    texts = list(dict.fromkeys(parts + region_prompts + words + glue
                               + ([user_source] if _foreign(user_source) else [])))
    if not texts:
        return plan, regions or None
    out = [clean_translation(t) for t in translate(texts)]
    if len(out) != len(texts):
        raise UserError(f"the translator gave {len(out)} texts for {len(texts)}")
    empty = [t for t, o in zip(texts, out) if not o]
    if empty:
        raise UserError(f"the translation of {empty[0]!r} is empty; write the prompt in English")
    english = dict(zip(texts, out))

    def en(text: str | None) -> str | None:
        return english.get(text, text) if text else text

    source_prompt = en(user_source) or ""
    if instruction is not None:
        word = (lambda t: _clean_en_phrase(en(t)) if _foreign(t) else t)
        change = en(instruction.change) if instruction.kind == "style" else word(instruction.change)
        translated = Instruction(instruction.kind, word(instruction.source) if instruction.source else None,
                                 change, "en")
        new = plan_from_instruction(translated, source_prompt, "en")
    elif region_prompts:
        target = " ".join(en(p).strip() if _foreign(p) else p.strip() for p, _ in _pieces(plan.target_prompt,
                                                                                           region_prompts))
        new = EditPlan(None, None, re.sub(r"\s+", " ", target).strip(), source_prompt, "en")
    else:
        new = EditPlan(None, None, en(plan.target_prompt), source_prompt, "en")
    new.translation = {"from": language, "model": model_name, "texts": english,
                       "source_prompt": new.source_prompt, "target_prompt": new.target_prompt}
    new_regions = [replace(r, prompt=en(r.prompt),
                           mask=AUTO_PREFIX + en(r.auto_word) if r.auto_word is not None else r.mask)
                   for r in regions]
    return new, new_regions or None


def translation_line(plan: EditPlan) -> str:
    """What the terminal says about a translation: the model, each text and the prompts."""
    t = plan.translation
    pairs = "; ".join(f"{k} -> {v}" for k, v in t["texts"].items())
    return (f"translated from {language_name(t['from'])} with {t['model']}: {pairs} "
            f"(source prompt {t['source_prompt']!r}, target prompt {t['target_prompt']!r})")


def prepare_prompts(plan: EditPlan, regions, opts, tokenizer, translator: Translator | None = None):
    """(plan, regions) ready for ``tokenizer``'s text encoder, following ``opts.translate``.

    Texts in a script the tokenizer keeps whole go as they are. Otherwise, with ``--translate
    auto``, they are translated (by ``translator``, else by ``opts.translation_model`` or the
    language's preset) and the translation is said on the terminal; with ``off``, the terminal
    gets the language warning.
    """
    from .notices import say

    if opts.translate not in TRANSLATE_CHOICES:
        raise UserError(f"--translate must be one of {', '.join(TRANSLATE_CHOICES)}, got {opts.translate!r}")
    if regions:
        from .methods.grain import as_regions

        regions = as_regions(regions)
    region_list = list(regions or [])
    texts = [plan.target_prompt, plan.source_prompt, plan.source_word or "", plan.target_word or ""]
    texts += [r.prompt for r in region_list] + [r.auto_word or "" for r in region_list]
    language = unreadable_language(texts, tokenizer)
    if language is None:
        return plan, regions
    if opts.translate == "off":
        log.warning(language_warning(plan, tokenizer) or f"the text encoder does not read {language_name(language)}")
        return plan, regions
    name = getattr(translator, "name", "the given translator") if translator is not None \
        else (opts.translation_model or TRANSLATION_MODELS.get(language))
    if translator is None:
        if name is None:
            raise UserError(f"no translation model for {language_name(language)}: give one with --translation-model, "
                            "or write the prompt in English")
        translator = load_translator(name, opts.allow_pickle)
    plan, region_list = translate_plan(plan, region_list, translator, language, str(name), opts.source_prompt)
    if plan.translation is not None:
        say(translation_line(plan))
    return plan, (region_list if regions is not None else None)

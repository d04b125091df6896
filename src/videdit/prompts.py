"""Edit plans from prompts and instructions.

A user may describe the wanted result ("a Porsche on a road") or ask for a change
("replace the car with a Porsche", "将视频中的汽车替换为保时捷", "자동차를 포르쉐로 바꿔",
"車をポルシェに変えて", "make it look like a watercolour").
`plan_edit` turns either into an `EditPlan`: the prompt that describes the source clip (for
inversion) and the prompt that describes the result (for regeneration), plus the words that
change, which methods use to find the edited region (e.g. cross-attention maps of the source
word).

Instructions are recognised by a few fixed forms per language, never guessed: text that
matches no form is taken as a plain description. Recolouring instructions ("make the circle
blue") are returned as an attribute applied to the object: ("circle", "blue circle"), so that
the target word can replace the source word in a description.

Language is read from the Unicode script of the text (Hangul -> "ko", kana -> "ja", Han ->
"zh", Latin -> "en"). The text encoders of Stable Diffusion use CLIP's byte-level BPE, which
has (almost) no tokens for Han or Hangul: such words reach the model as byte fragments it
never learned. `language_warning` says so in one line; `videdit.translate` translates the
parsed words (`Instruction`) into English instead, and `plan_from_instruction` rebuilds the plan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from videdit.errors import UserError

__all__ = [
    "EditPlan",
    "Instruction",
    "detect_language",
    "is_english_only_tokenizer",
    "language_name",
    "language_warning",
    "parse",
    "parse_instruction",
    "plan_edit",
    "plan_from_instruction",
    "script_coverage",
    "unreadable_language",
]


@dataclass(frozen=True)
class Instruction:
    """A parsed instruction, in the words of its own language.

    kind "replace": ``source`` becomes ``change`` ("replace the car with a Porsche": car, Porsche);
    "recolour": ``source`` takes the colour ``change`` ("make the circle blue": circle, blue);
    "style": the whole frame takes the look ``change`` ("make it look like a watercolour": None,
    a watercolour). ``language``: the language of the words.
    """

    kind: str
    source: str | None
    change: str
    language: str = "en"


@dataclass
class EditPlan:
    """What to edit: the changing words (None for a plain description) and both prompts.

    ``instruction`` is the parsed instruction (None for a description); ``translation`` what
    `videdit.translate` did to the prompt's words (None when nothing was translated).
    """

    source_word: str | None
    target_word: str | None
    target_prompt: str
    source_prompt: str
    language: str
    instruction: Instruction | None = field(default=None, compare=False)
    translation: dict | None = field(default=None, compare=False)


# ---------------------------------------------------------------------------------------
# Scripts and languages

_SCRIPT_RANGES = {
    "Hangul": ((0xAC00, 0xD7AF), (0x1100, 0x11FF), (0x3130, 0x318F), (0xA960, 0xA97F), (0xD7B0, 0xD7FF)),
    "Kana": ((0x3040, 0x309F), (0x30A0, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9F)),
    "Han": ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F)),
    "Latin": ((0x41, 0x5A), (0x61, 0x7A), (0xC0, 0x24F), (0x1E00, 0x1EFF)),
}
_LANGUAGE_OF_SCRIPT = {"Hangul": "ko", "Kana": "ja", "Han": "zh", "Latin": "en"}
_LANGUAGE_NAMES = {"ko": "Korean", "ja": "Japanese", "zh": "Chinese", "en": "English"}

# Common characters that a tokenizer made for the script keeps whole.
_PROBES = {
    "Han": "的人车猫狗花山水红蓝大小天海树草鸟马鱼汽视频",
    "Hangul": "자동차고양이강아지사람빨간파란하늘바다나무꽃",
    "Kana": "ねこいぬくるまのはをにがでとアイスクリーム",
}


def _script(char: str) -> str | None:
    """The script of one character among Hangul, Kana, Han and Latin, else None."""
    code = ord(char)
    for script, ranges in _SCRIPT_RANGES.items():
        if any(lo <= code <= hi for lo, hi in ranges):
            return script
    return None


def _scripts(text: str) -> set[str]:
    """The scripts used by the letters of ``text``."""
    return {s for s in map(_script, text) if s is not None}


def detect_language(text: str) -> str:
    """Language code from the script of ``text``: "ko", "ja", "zh", "en", or "und" (none).

    Hangul wins over Han (Korean may contain hanja), kana over Han (Japanese uses kanji);
    any Latin letters alone count as English.
    """
    scripts = _scripts(text)
    for script in ("Hangul", "Kana", "Han", "Latin"):
        if script in scripts:
            return _LANGUAGE_OF_SCRIPT[script]
    return "und"


# ---------------------------------------------------------------------------------------
# Instructions

_COLOURS_EN = (
    "red orange yellow green blue purple violet pink brown black white gray grey cyan magenta "
    "gold golden silver beige turquoise teal navy maroon"
).split()
_ARTICLES = r"(?:the|a|an|this|that|these|those|some)"
_SCENE = r"(?:video|clip|scene|footage|movie|frames?|image|picture|shot)"

_EN_PREFIX = re.compile(
    r"^(?:(?:please|kindly|now|just|ok|okay|hey)\b[\s,]*"
    r"|(?:can|could|would|will) you(?: please)?\s+"
    r"|(?:i(?:'d| would) like (?:you )?to|i want (?:you )?to|i need (?:you )?to|let'?s|help me)\s+)+",
    re.IGNORECASE,
)
_EN_SUFFIX = re.compile(r"(?:[\s,]+(?:please|thanks|thank you))+$", re.IGNORECASE)
_EN_SCENE = re.compile(rf"\s+(?:in|of|from|throughout) {_ARTICLES}? ?{_SCENE}\b", re.IGNORECASE)
_EN_ARTICLE = re.compile(rf"^{_ARTICLES}\s+", re.IGNORECASE)
_PRONOUNS = {"it", "them", "him", "her", "this", "that", "everything", "all", "me", "us", "sure"}

# (pattern, kind): "st" = groups are (source, target); "colour"/"attribute": the target is an attribute of
# the source; "style": the whole frame takes the look of the target.
_WHOLE = rf"(?:it|this|that|everything|all of it|the whole (?:thing|{_SCENE})|(?:the|this) {_SCENE}|me|us)"
_EN_FORMS = [
    (rf"(?:make|turn|render|transform|change|convert|paint) {_WHOLE} (?:look like|into|to|become|like|as|look) (?P<t>.+)",
     "style"),
    (rf"(?:make|turn|render) {_WHOLE} (?:in|into) the style of (?P<t>.+)", "style"),
    (r"change the colou?r of (?P<s>.+?) (?:to|into) (?P<t>.+)", "colour"),
    (r"(?:replace|swap out|switch out) (?P<s>.+?) (?:with|by|for|to) (?P<t>.+)", "st"),
    (r"substitute (?P<t>.+?) for (?P<s>.+)", "st"),
    (r"(?:turn|transform|convert|morph) (?P<s>.+?) (?:into|to) (?P<t>.+)", "st"),
    (r"(?:change|switch) (?P<s>.+?) (?:into|to) (?P<t>.+)", "st"),
    (r"(?:swap|exchange|switch|trade) (?P<s>.+?) (?:for|with) (?P<t>.+)", "st"),
    (r"make (?P<s>.+?) (?:into|look like|become) (?P<t>.+)", "st"),
    (rf"(?:make|turn|paint|colou?r) (?P<s>{_ARTICLES} .+?) (?P<t>{_ARTICLES} .+)", "st"),
    (r"(?:make|turn|paint|colou?r) (?P<s>.+) (?P<t>\S+)", "attribute"),
    (r"(?P<s>[^-=>→]+?)\s*(?:->|=>|→|⇒)\s*(?P<t>.+)", "st"),
]
_EN_FORMS = [(re.compile(rf"^{p}$", re.IGNORECASE), kind) for p, kind in _EN_FORMS]

_ZH_MEASURE = re.compile(r"^(?:一|两|几)?(?:个|只|辆|条|张|头|匹|位|件|棵|座|朵|架|艘|台|把|块|片|群|双|名)")
_ZH_SCENE = re.compile(r"^(?:(?:在|从)?(?:视频|影片|画面|图片|图像|图|镜头|片段|场景)(?:中|里|里面|当中|内)?的?)")
_ZH_PREFIX = re.compile(r"^(?:请你|请|麻烦你?|帮我|帮忙|给我|能不能|可以|你)+")
_ZH_SUFFIX = re.compile(r"(?:一下|吧|好吗|谢谢|，谢谢)+$")
_ZH_VERB = r"(?:替换为|替换成|替换|换成|换为|变成|变为|改为|改成|转换为|转换成|转变为|转变成)"
_ZH_WHOLE = r"(?:它|这个?|整个?(?:视频|画面)|(?:视频|画面|影片|图片))"
_ZH_FORMS = [
    (re.compile(rf"^(?:让|使|把|将)?{_ZH_WHOLE}(?:看起来)?(?:像|变成|变为|换成|转换为|转换成)(?P<t>.+?)(?:一样|的风格|风格)?$"),
     "style"),
    (re.compile(rf"^(?:把|将)(?P<s>.+?)的颜色{_ZH_VERB}(?P<t>.+)$"), "colour"),
    (re.compile(rf"^(?:把|将)(?P<s>.+?){_ZH_VERB}(?P<t>.+)$"), "st"),
    (re.compile(r"^用(?P<t>.+?)(?:替换|代替|取代|替代)(?P<s>.+)$"), "st"),
    (re.compile(r"^(?P<s>.+?)(?:替换为|替换成)(?P<t>.+)$"), "st"),
]
_ZH_COLOUR = re.compile(r"^.{1,3}色$")

_KO_SCENE = re.compile(r"^(?:(?:영상|비디오|동영상|화면|장면|클립|사진)\s*(?:속|안|속의|안의|에서|에|의)\s*(?:의\s*)?)")
_KO_SUFFIX = re.compile(
    r"\s*(?:좀\s*)?(?:바꿔|바꾸|변경|교체|변환|만들|대체|변신)\S*"
    r"(?:\s+(?:주세요|줘|줄래요?|주시겠어요|주실래요|봐|보세요|줘요))?$"
)
_KO_FORMS = [
    (re.compile(r"^(?P<t>.+?)\s*(?:처럼|같이|풍으로)$"), "style"),
    (re.compile(r"^(?P<s>.+?)의\s*색(?:깔|상)?(?:을|를)\s*(?P<t>.+?)(?:으로|로)$"), "colour"),
    (re.compile(r"^(?P<s>.+?)(?:을|를)\s+(?P<t>.+?)(?:으로|로)$"), "st"),
    (re.compile(r"^(?P<s>.+?)(?:을|를)\s*(?P<t>.+?)(?:으로|로)$"), "st"),
]
_KO_COLOUR = re.compile(r"^\S{1,4}색$")

_JA_SCENE = re.compile(r"^(?:(?:動画|映像|ビデオ|画面|画像|写真|シーン)(?:の中|内|中)?の)")
_JA_PREFIX = re.compile(r"^(?:すみません|お願い|どうか|ちょっと)[、,\s]*")
_JA_VERB = (r"(?:に|へ|で)(?:変えて|かえて|変更して|置き換えて|置きかえて|替えて|換えて|変換して|して|する|変える|"
            r"変更する|置き換える|替える|換える)(?:ください|下さい|くれ|ほしい|欲しい|もらえますか|くれますか)?$")
_JA_WHOLE = r"(?:それ|これ|全体|動画全体|映像全体|画面全体|動画|映像|画面)"
_JA_FORMS = [
    (re.compile(rf"^(?:{_JA_WHOLE}を)?(?P<t>.+?)(?:のように|みたいに|風に)(?:して|する|変えて|見せて)"
                r"(?:ください|下さい|くれ)?$"), "style"),
    (re.compile(rf"^(?P<s>.+?)の色を(?P<t>.+?){_JA_VERB}"), "colour"),
    (re.compile(rf"^(?P<s>.+?)を(?P<t>.+?){_JA_VERB}"), "st"),
]
_JA_COLOUR = re.compile(r"^(?:.{1,3}色|赤|青|緑|黄|白|黒|紫|茶|灰|金|銀)$")

_PUNCT = " \t\r\n.,!?;:'\"`“”‘’「」『』《》。，！？；：、…"


def _strip_punct(text: str) -> str:
    """``text`` without surrounding whitespace, quotes and sentence punctuation."""
    return text.strip(_PUNCT)


def _clean_en_phrase(phrase: str) -> str:
    """An English noun phrase without "in the video"-like tails, leading articles and quotes."""
    phrase = _EN_SCENE.sub("", _strip_punct(phrase))
    previous = None
    while previous != phrase:
        previous, phrase = phrase, _strip_punct(_EN_ARTICLE.sub("", phrase))
    return phrase


def _drop_colours(phrase: str) -> str:
    """``phrase`` without English colour words ("red car" -> "car"); unchanged if only colours."""
    kept = [w for w in phrase.split() if w.lower() not in _COLOURS_EN]
    return " ".join(kept) if kept else phrase


def _with_attribute(noun: str, attribute: str) -> str:
    """The English noun phrase ``noun`` with ``attribute`` in place of its colour words."""
    return f"{attribute} {_drop_colours(noun)}"


def _parse_english(text: str) -> Instruction | None:
    """The instruction of an English text, or None."""
    text = _EN_SUFFIX.sub("", _EN_PREFIX.sub("", _strip_punct(text)))
    text = _strip_punct(text)
    for pattern, kind in _EN_FORMS:
        match = pattern.match(text)
        if not match:
            continue
        if kind == "style":
            look = _EN_SCENE.sub("", _strip_punct(match["t"]))
            return Instruction("style", None, look, "en") if look else None
        source, target = _clean_en_phrase(match["s"]), _clean_en_phrase(match["t"])
        if not source or not target or source.lower() == target.lower():
            continue
        if source.split()[0].lower() in _PRONOUNS:  # "make it look like a" is no object
            continue
        one = re.fullmatch(r"(.+) ones?", target)  # "change the car to a red one"
        if one:
            return Instruction("recolour", source, one[1], "en")
        bare_colour = target.lower() in _COLOURS_EN and not _EN_ARTICLE.match(match["t"])
        if kind in ("colour", "attribute") or bare_colour:  # "change the car to red"
            return Instruction("recolour", source, target, "en")
        return Instruction("replace", source, target, "en")
    return None


def _clean_zh_phrase(phrase: str) -> str:
    """A Chinese noun phrase without scene prefixes ("视频中的") and measure words ("一辆")."""
    phrase = _ZH_SCENE.sub("", _strip_punct(phrase))
    return _strip_punct(_ZH_MEASURE.sub("", phrase))


def _parse_chinese(text: str) -> Instruction | None:
    """The instruction of a Chinese text ("把X换成Y", "用Y替换X", "让它看起来像Y"), or None."""
    text = _strip_punct(_ZH_SUFFIX.sub("", _ZH_PREFIX.sub("", _strip_punct(text))))
    for pattern, kind in _ZH_FORMS:
        match = pattern.match(text)
        if not match:
            continue
        if kind == "style":
            look = _clean_zh_phrase(match["t"])
            if look:
                return Instruction("style", None, look, "zh")
            continue
        source, target = _clean_zh_phrase(match["s"]), _clean_zh_phrase(match["t"])
        if source and target and source != target:
            recolour = kind == "colour" or _ZH_COLOUR.match(target)
            return Instruction("recolour" if recolour else "replace", source, target, "zh")
    return None


def _parse_korean(text: str) -> Instruction | None:
    """The instruction of a Korean text ("X를 Y로 바꿔", "Y처럼 만들어"), or None."""
    text = _strip_punct(text)
    if not _KO_SUFFIX.search(text):
        return None
    text = _strip_punct(_KO_SUFFIX.sub("", text))
    text = re.sub(r"^(?:제발|좀|저기)\s+", "", text)
    for pattern, kind in _KO_FORMS:
        match = pattern.match(text)
        if not match:
            continue
        if kind == "style":
            look = _strip_punct(re.sub(r"^(?:이걸|이것을|그것을|영상을|화면을|전체를)\s*", "", match["t"]))
            if look and not re.search(r"(?:을|를)\s", look):
                return Instruction("style", None, look, "ko")
            continue
        source = _strip_punct(_KO_SCENE.sub("", match["s"].strip()))
        target = _strip_punct(match["t"])
        if source and target and source != target:
            recolour = kind == "colour" or _KO_COLOUR.match(target)
            return Instruction("recolour" if recolour else "replace", source, target, "ko")
    return None


def _parse_japanese(text: str) -> Instruction | None:
    """The instruction of a Japanese text ("XをYに変えて", "Yのようにして"), or None."""
    text = _strip_punct(_JA_PREFIX.sub("", _strip_punct(text)))
    for pattern, kind in _JA_FORMS:
        match = pattern.match(text)
        if not match:
            continue
        if kind == "style":
            look = _strip_punct(match["t"])
            if look and "を" not in look:
                return Instruction("style", None, look, "ja")
            continue
        source = _strip_punct(_JA_SCENE.sub("", _strip_punct(match["s"])))
        target = _strip_punct(match["t"])
        if source and target and source != target:
            recolour = kind == "colour" or _JA_COLOUR.match(target)
            return Instruction("recolour" if recolour else "replace", source, target, "ja")
    return None


def parse(text: str) -> Instruction | None:
    """The `Instruction` of ``text``, or None when it is a description.

    English: "replace X with/by Y", "turn/transform/convert X into Y", "change X to/into Y",
    "swap X for/with Y", "substitute Y for X", "make X into/look like Y", "make the X a Y",
    "X -> Y"; recolouring ("make the circle blue", "turn the red circle blue", "change the car to
    red", "change the colour of the car to red"); the whole frame ("make it look like a
    watercolour", "turn it into a cartoon", "make the video look like winter").
    Chinese: "把/将 X 替换为/换成/变成/改为 Y", "用 Y 替换 X", "把X的颜色改为Y", "让它看起来像Y".
    Korean: "X을/를 Y(으)로 바꿔/바꾸기/변경해/교체해", "X의 색을 Y로 바꿔", "Y처럼 만들어".
    Japanese: "XをYに変えて/変更して/置き換えて/して", "Xの色をYに変えて", "Yのようにして".
    Articles, measure words, "in the video"-like phrases, polite words and punctuation are
    removed. Plain descriptions ("a cat walking on grass") give None.
    """
    text = _strip_punct(text or "")
    if not text:
        return None
    scripts = _scripts(text)
    parsers = []
    if "Hangul" in scripts:
        parsers.append(_parse_korean)
    if "Kana" in scripts:
        parsers.append(_parse_japanese)
    if "Han" in scripts:
        parsers.append(_parse_chinese)
    parsers.append(_parse_english)
    for parse_one in parsers:
        instruction = parse_one(text)
        if instruction is not None:
            return instruction
    return None


def recoloured(source: str, colour: str, language: str) -> str:
    """The phrase for ``source`` in ``colour``: "blue circle", "蓝色的圆", "파란색 원", "青の円"."""
    if language == "zh":
        return f"{colour}的{source}"
    if language == "ko":
        return f"{colour} {source}"
    if language == "ja":
        return f"{colour}の{source}"
    return _with_attribute(source, colour)


def parse_instruction(text: str) -> tuple[str | None, str] | None:
    """(source phrase, target phrase) if ``text`` is an edit instruction (see `parse`), else None.

    Recolouring gives the object in its new colour ("make the circle blue": ("circle", "blue
    circle")); an instruction for the whole frame gives (None, look).
    """
    instruction = parse(text)
    if instruction is None:
        return None
    if instruction.kind == "recolour":
        return instruction.source, recoloured(instruction.source, instruction.change, instruction.language)
    return instruction.source, instruction.change


# ---------------------------------------------------------------------------------------
# Plans

def _describe(phrase: str) -> str:
    """A short description of ``phrase`` alone: "a Porsche", "an apple"; CJK words as they are."""
    if detect_language(phrase) != "en":
        return phrase
    article = "an" if phrase[:1].lower() in "aeiou" else "a"
    return f"{article} {phrase}"


def _replace_phrase(prompt: str, old: str, new: str) -> str | None:
    """``prompt`` with the phrase ``old`` replaced by ``new``, or None if absent.

    Latin phrases match whole words, case-insensitively; a colour word right before ``old``
    is replaced too when ``new`` brings its own ("a red circle" -> "a blue circle"), and
    "a"/"an" before it is fixed to fit ``new``. Other scripts match as substrings.
    """
    if detect_language(old) != "en":
        return prompt.replace(old, new) if old in prompt else None
    colours = "|".join(_COLOURS_EN)
    new_has_colour = new.split()[0].lower() in _COLOURS_EN
    colour = rf"(?:(?:{colours})\s+)?" if new_has_colour else ""
    pattern = re.compile(rf"(?:\b(?P<art>an?)\s+)?{colour}(?<!\w){re.escape(old)}(?!\w)", re.IGNORECASE)
    if not pattern.search(prompt):
        return None

    def substitute(match: re.Match) -> str:
        if match["art"] is None:
            return new
        article = "an" if new[:1].lower() in "aeiou" else "a"
        if match["art"][0].isupper():
            article = article.capitalize()
        return f"{article} {new}"

    return pattern.sub(substitute, prompt)


def plan_from_instruction(instruction: Instruction, source_prompt: str, language: str) -> EditPlan:
    """The plan of a parsed ``instruction`` against ``source_prompt`` (may be empty).

    replace/recolour: source_prompt = ``source_prompt`` or "a X", and target_prompt = the source
    prompt with X replaced by Y when it contains X, else "a Y". style: target_prompt =
    "SOURCE PROMPT, LOOK" (or the look alone), source_prompt unchanged.
    """
    if instruction.kind == "style":
        look = instruction.change
        target_prompt = f"{source_prompt}, {look}" if source_prompt else look
        return EditPlan(None, look, target_prompt, source_prompt, language, instruction)
    source = instruction.source
    target = instruction.change
    if instruction.kind == "recolour":
        target = recoloured(source, instruction.change, instruction.language)
    source_prompt = source_prompt or _describe(source)
    target_prompt = _replace_phrase(source_prompt, source, target) or _describe(target)
    return EditPlan(source, target, target_prompt, source_prompt, language, instruction)


def plan_edit(prompt: str, source_prompt: str = "") -> EditPlan:
    """The edit plan for a user's ``prompt`` (instruction or target description).

    An instruction "replace X with Y" gives source_prompt = ``source_prompt`` or "a X", and
    target_prompt = the source prompt with X replaced by Y when it contains X, else "a Y"
    (`plan_from_instruction`). Any other prompt is the target description as it is, with
    ``source_prompt`` unchanged.
    """
    prompt = (prompt or "").strip()
    source_prompt = (source_prompt or "").strip()
    if not prompt:
        raise UserError("the prompt is empty: describe the result or give an instruction such as \"replace the car with a Porsche\"")
    language = detect_language(prompt)
    instruction = parse(prompt)
    if instruction is None:
        return EditPlan(None, None, prompt, source_prompt, language)
    return plan_from_instruction(instruction, source_prompt, language)


# ---------------------------------------------------------------------------------------
# Tokenizers

def _keeps_whole(tokenizer, char: str) -> bool:
    """Whether ``tokenizer`` encodes ``char`` without unknown tokens or byte fragments."""
    ids = tokenizer.encode(char, add_special_tokens=False)
    unknown = getattr(tokenizer, "unk_token_id", None)
    if not ids or (unknown is not None and unknown in ids):
        return False
    pieces = [tokenizer.decode([i]) for i in ids]
    if any("\ufffd" in piece for piece in pieces):
        return False
    return char in "".join(pieces).replace(" ", "")


def script_coverage(tokenizer, script: str) -> float:
    """Fraction of common characters of ``script`` ("Han", "Hangul", "Kana") kept whole."""
    probe = _PROBES[script]
    return sum(_keeps_whole(tokenizer, c) for c in probe) / len(probe)


def is_english_only_tokenizer(tokenizer, min_coverage: float = 0.5) -> bool:
    """Whether ``tokenizer`` breaks Han and Hangul characters into byte fragments or unknowns.

    CLIP's byte-level BPE (Stable Diffusion 1.x/2.x, SDXL) does; multilingual tokenizers
    (XLM-R, Chinese CLIP, mT5) keep most common characters whole.
    """
    return all(script_coverage(tokenizer, s) < min_coverage for s in ("Han", "Hangul"))


def language_name(code: str) -> str:
    """"zh" -> "Chinese"; unknown codes as they are."""
    return _LANGUAGE_NAMES.get(code, code)


def unreadable_language(texts: list[str], tokenizer, min_coverage: float = 0.5) -> str | None:
    """The language of the first script in ``texts`` that ``tokenizer`` does not keep whole
    (Hangul, then kana, then Han: "ko", "ja", "zh"), or None when it reads them all."""
    scripts = _scripts(" ".join(t for t in texts if t)) & set(_PROBES)
    for script in ("Hangul", "Kana", "Han"):
        if script in scripts and script_coverage(tokenizer, script) < min_coverage:
            return _LANGUAGE_OF_SCRIPT[script]
    return None


def language_warning(plan: EditPlan, tokenizer, min_coverage: float = 0.5) -> str | None:
    """One warning line when the plan's words use a script that ``tokenizer`` cannot encode.

    Looks at the words and prompts the text encoder will see; None when they are all in a
    script the tokenizer keeps whole (English for CLIP).
    """
    texts = [plan.source_word or "", plan.target_word or "", plan.target_prompt, plan.source_prompt]
    code = unreadable_language(texts, tokenizer, min_coverage)
    if code is None:
        return None
    language = language_name(code)
    return (
        f"the prompt is in {language}, but the text encoder's tokenizer has no {language} "
        f"tokens (it reads the words as byte fragments); write the prompt in English "
        f"(e.g. \"replace the car with a Porsche\"), translate it (--translate auto) or use a multilingual "
        f"text encoder"
    )

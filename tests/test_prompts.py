"""Edit plans from prompts and instructions in English, Chinese and Korean."""

from __future__ import annotations

import pytest

from videdit.errors import UserError
from videdit.prompts import (
    EditPlan,
    detect_language,
    is_english_only_tokenizer,
    language_warning,
    parse_instruction,
    plan_edit,
    script_coverage,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("replace the car with a Porsche", ("car", "Porsche")),
        ("Please replace the car in the video with a Porsche.", ("car", "Porsche")),
        ("replace the car by a bus", ("car", "bus")),
        ("turn the dog into a cat", ("dog", "cat")),
        ("Can you please turn the dog into a cat?", ("dog", "cat")),
        ("change the dog to a cat", ("dog", "cat")),
        ("change the dog into a cat", ("dog", "cat")),
        ("transform the horse into a zebra", ("horse", "zebra")),
        ("swap the dog for a cat", ("dog", "cat")),
        ("swap the dog with a cat", ("dog", "cat")),
        ("substitute a Porsche for the car", ("car", "Porsche")),
        ("make the dog a cat", ("dog", "cat")),
        ("make the car look like a Porsche", ("car", "Porsche")),
        ("dog -> cat", ("dog", "cat")),
        ("the dog → a tiger", ("dog", "tiger")),
        ("Replace the apple with an orange", ("apple", "orange")),
        ("replace the left man with Spiderman, thanks", ("left man", "Spiderman")),
    ],
)
def test_english_forms(text, expected):
    assert parse_instruction(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("make the circle blue", ("circle", "blue circle")),
        ("make the red car blue", ("red car", "blue car")),
        ("turn the sky orange", ("sky", "orange sky")),
        ("paint the house green", ("house", "green house")),
        ("change the car to red", ("car", "red car")),
        ("change the car to a red one", ("car", "red car")),
        ("change the colour of the car to red", ("car", "red car")),
        ("change the color of the shirt to yellow", ("shirt", "yellow shirt")),
    ],
)
def test_recolour_gives_attribute_on_object(text, expected):
    assert parse_instruction(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("将视频中的汽车替换为保时捷", ("汽车", "保时捷")),
        ("把狗换成猫", ("狗", "猫")),
        ("把X变成Y", ("X", "Y")),
        ("将X改为Y", ("X", "Y")),
        ("请把视频里的狗换成一只猫吧。", ("狗", "猫")),
        ("将汽车替换成一辆卡车", ("汽车", "卡车")),
        ("用猫替换狗", ("狗", "猫")),
        ("把圆变成蓝色", ("圆", "蓝色的圆")),
    ],
)
def test_chinese_forms(text, expected):
    assert parse_instruction(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("자동차를 포르쉐로 바꿔", ("자동차", "포르쉐")),
        ("고양이를 강아지로 바꾸기", ("고양이", "강아지")),
        ("자동차를 포르쉐로 변경해", ("자동차", "포르쉐")),
        ("자동차를 포르쉐로 변경해 주세요.", ("자동차", "포르쉐")),
        ("영상 속 자동차를 포르쉐로 바꿔주세요", ("자동차", "포르쉐")),
        ("마을을 숲으로 바꿔", ("마을", "숲")),
        ("원을 파란색으로 바꿔", ("원", "파란색 원")),
    ],
)
def test_korean_forms(text, expected):
    assert parse_instruction(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "a cat walking on grass",
        "a man turning into a wolf",
        "Spiderman and Polar Bear on grass meadow",
        "make it snow",
        "一只猫在草地上走",
        "고양이가 잔디 위를 걷는다",
        "",
        "   ",
    ],
)
def test_descriptions_are_not_instructions(text):
    assert parse_instruction(text) is None


def test_detect_language_by_script():
    assert detect_language("a car") == "en"
    assert detect_language("将汽车替换为Porsche") == "zh"
    assert detect_language("자동차를 포르쉐로 바꿔") == "ko"
    assert detect_language("くるまをポルシェに") == "ja"
    assert detect_language("123 !") == "und"


def test_plan_without_source_prompt_describes_both_words():
    plan = plan_edit("replace the car with a Porsche")
    assert plan == EditPlan("car", "Porsche", "a Porsche", "a car", "en")


def test_plan_substitutes_into_source_prompt():
    plan = plan_edit("replace the car with an apple", source_prompt="A car drives on a road")
    assert plan.source_prompt == "A car drives on a road"
    assert plan.target_prompt == "An apple drives on a road"
    assert (plan.source_word, plan.target_word) == ("car", "apple")


def test_plan_recolour_replaces_the_old_colour():
    plan = plan_edit("make the circle blue", source_prompt="a red circle on grass")
    assert plan.target_prompt == "a blue circle on grass"
    assert plan_edit("make the circle blue").target_prompt == "a blue circle"


def test_plan_source_prompt_without_the_word_falls_back_to_description():
    plan = plan_edit("replace the dog with a cat", source_prompt="a horse in a field")
    assert plan.target_prompt == "a cat"
    assert plan.source_prompt == "a horse in a field"


def test_plan_whole_words_only():
    plan = plan_edit("replace the cat with a dog", source_prompt="a cat near a catapult")
    assert plan.target_prompt == "a dog near a catapult"


def test_plan_chinese_and_korean():
    zh = plan_edit("将视频中的汽车替换为保时捷", source_prompt="一辆汽车在路上")
    assert zh == EditPlan("汽车", "保时捷", "一辆保时捷在路上", "一辆汽车在路上", "zh")
    ko = plan_edit("자동차를 포르쉐로 바꿔")
    assert ko == EditPlan("자동차", "포르쉐", "포르쉐", "자동차", "ko")


def test_plan_of_description_keeps_it():
    plan = plan_edit("  a cat on grass ", source_prompt="a dog on grass")
    assert plan == EditPlan(None, None, "a cat on grass", "a dog on grass", "en")


def test_plan_round_trip_of_instruction_through_target_prompt():
    plan = plan_edit("turn the dog into a cat", source_prompt="a dog runs on a beach")
    again = plan_edit("turn the cat into a dog", source_prompt=plan.target_prompt)
    assert again.target_prompt == plan.source_prompt


@pytest.mark.parametrize("prompt", ["", "   ", None])
def test_empty_prompt_is_a_user_error(prompt):
    with pytest.raises(UserError) as info:
        plan_edit(prompt)
    assert "\n" not in str(info.value)


@pytest.fixture(scope="module")
def clip_tokenizer(tmp_path_factory):
    from transformers import CLIPTokenizer

    from videdit.tokenizer import write_clip_tokenizer

    folder = write_clip_tokenizer(["a", "car", "porsche", "dog", "cat"], tmp_path_factory.mktemp("clip"))
    return CLIPTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def chinese_tokenizer(tmp_path_factory):
    """A WordPiece tokenizer that keeps common Han characters whole (like Chinese CLIP)."""
    from transformers import BertTokenizer

    chars = "的人车猫狗花山水红蓝大小天海树草鸟马鱼汽视频将中替换为保时捷把成"
    folder = tmp_path_factory.mktemp("bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "car"] + list(dict.fromkeys(chars))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return BertTokenizer(str(folder / "vocab.txt"))


def test_clip_tokenizer_is_english_only(clip_tokenizer):
    assert is_english_only_tokenizer(clip_tokenizer)
    assert script_coverage(clip_tokenizer, "Han") == 0.0


def test_tokenizer_with_han_tokens_is_not_english_only(chinese_tokenizer):
    assert not is_english_only_tokenizer(chinese_tokenizer)
    assert script_coverage(chinese_tokenizer, "Han") > 0.9
    assert script_coverage(chinese_tokenizer, "Hangul") == 0.0


@pytest.mark.parametrize(
    "prompt, language",
    [("将视频中的汽车替换为保时捷", "Chinese"), ("자동차를 포르쉐로 바꿔", "Korean"), ("一只猫在草地上走", "Chinese")],
)
def test_warning_for_non_english_words_and_clip(clip_tokenizer, prompt, language):
    warning = language_warning(plan_edit(prompt), clip_tokenizer)
    assert warning is not None and "\n" not in warning
    assert language in warning
    assert "replace the car with a Porsche" in warning
    assert "multilingual text encoder" in warning


@pytest.mark.parametrize("prompt", ["replace the car with a Porsche", "a cat walking on grass"])
def test_no_warning_for_english(clip_tokenizer, prompt):
    assert language_warning(plan_edit(prompt), clip_tokenizer) is None


def test_no_warning_when_tokenizer_covers_the_script(chinese_tokenizer):
    assert language_warning(plan_edit("把狗换成猫"), chinese_tokenizer) is None
    assert "Korean" in language_warning(plan_edit("자동차를 포르쉐로 바꿔"), chinese_tokenizer)


def test_warning_when_english_instruction_names_a_chinese_target(clip_tokenizer):
    assert language_warning(plan_edit("replace the car with 保时捷"), clip_tokenizer) is not None


@pytest.mark.parametrize(
    "text, expected",
    [
        ("make it look like a watercolour", ("style", None, "a watercolour")),
        ("Please make it look like a watercolour painting.", ("style", None, "a watercolour painting")),
        ("turn it into a cartoon", ("style", None, "a cartoon")),
        ("make the video look like winter", ("style", None, "winter")),
        ("turn the red circle blue", ("recolour", "red circle", "blue")),
        ("turn the dog into a cat", ("replace", "dog", "cat")),
        ("car -> Porsche", ("replace", "car", "Porsche")),
        ("change the colour of the car to red", ("recolour", "car", "red")),
        ("让它看起来像水彩画", ("style", None, "水彩画")),
        ("把红色圆形变成蓝色", ("recolour", "红色圆形", "蓝色")),
        ("把汽车的颜色改为红色", ("recolour", "汽车", "红色")),
        ("수채화처럼 만들어", ("style", None, "수채화")),
        ("자동차의 색을 빨간색으로 바꿔", ("recolour", "자동차", "빨간색")),
        ("車をポルシェに変えて", ("replace", "車", "ポルシェ")),
        ("動画の中の車をポルシェに置き換えてください", ("replace", "車", "ポルシェ")),
        ("円を青にして", ("recolour", "円", "青")),
        ("車の色を赤に変えて", ("recolour", "車", "赤")),
        ("水彩画のようにして", ("style", None, "水彩画")),
    ],
)
def test_instruction_kinds(text, expected):
    from videdit.prompts import parse

    instruction = parse(text)
    assert (instruction.kind, instruction.source, instruction.change) == expected


def test_make_it_look_like_is_a_style_not_an_object():
    # "make it look like a watercolour" used to give source "an it look like a"
    plan = plan_edit("make it look like a watercolour")
    assert (plan.source_word, plan.target_prompt, plan.source_prompt) == (None, "a watercolour", "")
    plan = plan_edit("make it look like a watercolour", source_prompt="a fox on snow")
    assert plan.target_prompt == "a fox on snow, a watercolour" and plan.source_prompt == "a fox on snow"
    assert parse_instruction("make it look like a watercolour") == (None, "a watercolour")


def test_japanese_plans_keep_their_own_words():
    assert plan_edit("車をポルシェに変えて") == EditPlan("車", "ポルシェ", "ポルシェ", "車", "ja")
    assert plan_edit("円を青にして").target_prompt == "青の円"
    assert plan_edit("turn the red circle blue", "a red circle and a yellow square on sand").target_prompt == \
        "a blue circle and a yellow square on sand"

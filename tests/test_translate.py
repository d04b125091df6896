"""Prompts in other languages translated before encoding, and instructions that find their own region:
plans from a fixed translator, then the plumbing with a tiny random MarianMT model of the real classes
and the tiny SD model (translated words reach the text encoder, region prompts are translated, offline
without the translation model is one line and exit 2, --translate off warns on the terminal, the found
region is said, written and reused)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from videdit.cli import main
from videdit.errors import UserError
from videdit.masks import Region
from videdit.prompts import plan_edit
from videdit.translate import clean_translation, prepare_prompts, translate_plan

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ["--frames", "2", "--size", "64", "--steps", "2", "--no-progress", "--no-reconstruction"]
HAN = re.compile(r"[\u4e00-\u9fff\uac00-\ud7af\u3040-\u30ff]")
WORDS = {"红色圆形": "red circle", "蓝色": "Blue.", "汽车": "The car", "保时捷": "Porsche", "狗": "dog", "猫": "cat",
         "红色的卡车": "red truck", "蓝色的卡车": "blue truck", "和": "and", "在沙滩上": "on sand", "水彩画": "a watercolour",
         "一辆汽车在路上": "a car on a road"}


def fixed(texts):
    """A translator given in the test: a word list, not a model."""
    return [WORDS[t] for t in texts]


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---------------------------------------------------------------------------------------
# Plans

def test_recolour_instruction_is_translated_part_by_part():
    plan, _ = translate_plan(plan_edit("把红色圆形变成蓝色"), None, fixed, "zh", "fixed")
    assert (plan.source_word, plan.target_word) == ("red circle", "Blue circle")
    assert (plan.source_prompt, plan.target_prompt) == ("a red circle", "a Blue circle")
    assert plan.translation["texts"] == {"红色圆形": "red circle", "蓝色": "Blue"}  # sentence punctuation dropped
    assert plan == plan_edit("turn the red circle Blue")  # the same plan as the English instruction


def test_replace_instruction_against_a_translated_source_prompt():
    plan, _ = translate_plan(plan_edit("将视频中的汽车替换为保时捷", "一辆汽车在路上"), None, fixed, "zh", "fixed",
                             source_prompt="一辆汽车在路上")
    assert (plan.source_word, plan.target_word) == ("car", "Porsche")  # "The car": the article goes
    assert (plan.source_prompt, plan.target_prompt) == ("a car on a road", "a Porsche on a road")


def test_style_instruction_and_description_are_translated_whole():
    plan, _ = translate_plan(plan_edit("让它看起来像水彩画"), None, fixed, "zh", "fixed")
    assert plan.target_prompt == "a watercolour" and plan.source_word is None
    plan, _ = translate_plan(plan_edit("一辆汽车在路上"), None, fixed, "zh", "fixed")
    assert plan.target_prompt == "a car on a road"


def test_region_prompts_are_translated_and_stay_runs_of_the_prompt():
    regions = [Region("left", "masks/left", "红色的卡车"), Region("right", "auto:汽车", "蓝色的卡车")]
    plan, out = translate_plan(plan_edit("红色的卡车和蓝色的卡车在沙滩上"), regions, fixed, "zh", "fixed")
    assert plan.target_prompt == "red truck and blue truck on sand"
    assert [r.prompt for r in out] == ["red truck", "blue truck"]
    assert [r.mask for r in out] == ["masks/left", "auto:The car"]
    assert all(r.prompt in plan.target_prompt for r in out)


def test_clean_translation():
    assert clean_translation("  A car.\n") == "A car"
    assert clean_translation("保时捷。") == "保时捷"


class _Opts:
    translate, translation_model, allow_pickle, source_prompt = "auto", None, False, ""


@pytest.fixture(scope="module")
def clip_tokenizer(tmp_path_factory):
    from transformers import CLIPTokenizer

    from videdit.tokenizer import write_clip_tokenizer

    return CLIPTokenizer.from_pretrained(write_clip_tokenizer(["a", "car", "dog", "cat"], tmp_path_factory.mktemp("c")))


def test_a_text_encoder_that_reads_the_language_gets_it_as_written(tmp_path, clip_tokenizer):
    from transformers import BertTokenizer

    chars = "的人车猫狗花山水红蓝大小天海树草鸟马鱼汽视频将中替换为保时捷把成"
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(chars)) + "\n",
                                        encoding="utf-8")
    chinese = BertTokenizer(str(tmp_path / "vocab.txt"))

    def never(texts):
        raise AssertionError("no translation expected")

    plan = plan_edit("把狗换成猫")
    assert prepare_prompts(plan, None, _Opts(), chinese, never)[0] is plan
    translated, _ = prepare_prompts(plan, None, _Opts(), clip_tokenizer, fixed)  # CLIP reads no Han
    assert (translated.source_prompt, translated.target_prompt) == ("a dog", "a cat")


def test_a_pipeline_with_a_chinese_text_encoder_loads_and_edits_untranslated(tiny_sd, videos, tmp_path, capsys):
    """A Stable Diffusion pipeline whose model_index names a BERT text encoder and tokenizer (as the Taiyi
    Chinese models do) loads with them, and a Chinese instruction reaches its encoder as written."""
    import json
    import shutil

    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    import videdit
    import videdit.api
    from videdit.diffusion import encode_text
    from videdit.models import load_sd

    root = tmp_path / "zh-sd"
    shutil.copytree(tiny_sd, root)
    for sub in ("text_encoder", "tokenizer"):
        shutil.rmtree(root / sub)
    chars = "的人车猫狗花山水红蓝大小天海树草鸟马鱼汽视频将中替换为保时捷把成雪狐狸狼"
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(chars)) + "\n", encoding="utf-8")
    BertTokenizer(str(vocab)).save_pretrained(root / "tokenizer")  # states no model_max_length of its own
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=5 + len(chars), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=40)).save_pretrained(root / "text_encoder")
    index = json.loads((root / "model_index.json").read_text())
    index.update(text_encoder=["transformers", "BertModel"], tokenizer=["transformers", "BertTokenizer"])
    (root / "model_index.json").write_text(json.dumps(index))

    model = load_sd(str(root))
    assert type(model.text_encoder).__name__ == "BertModel"
    ids = model.tokenizer(["把狐狸换成狼"]).input_ids[0]
    assert model.tokenizer.unk_token_id not in ids  # the encoder reads every character
    assert encode_text(model, ["狐", "狼"]).shape == (2, 40, 32)  # padded to the encoder's positions
    frames = videdit.api.load_input(str(videos / "fox.mp4"), videdit.config.make_options({"prompt": "x", "frames": 2})[0]).frames
    res = videdit.edit(videdit.video.resize_frames(frames, (64, 64)), "把狐狸换成狼", model=model, steps=2, size=64,
                       progress=False, reconstruction=False, no_cache=True)
    assert "translation" not in res.info and res.info["target_prompt"] == "狼"
    assert "translated" not in capsys.readouterr().err


def test_translate_off_keeps_the_prompt_and_warns(clip_tokenizer, caplog):
    opts = _Opts()
    opts.translate = "off"
    plan = plan_edit("把狗换成猫")
    with caplog.at_level("WARNING", logger="videdit"):
        assert prepare_prompts(plan, None, opts, clip_tokenizer, fixed)[0] is plan
    assert "Chinese" in caplog.text


# ---------------------------------------------------------------------------------------
# Plumbing with a tiny MarianMT model and the tiny SD model

@pytest.fixture(scope="module")
def tiny_marian(tmp_path_factory):
    pytest.importorskip("sentencepiece")
    from videdit.tiny_marian import write_tiny_marian

    return write_tiny_marian(tmp_path_factory.mktemp("marian") / "marian")


def test_tiny_marian_loads_with_the_real_classes(tiny_marian):
    from transformers import MarianMTModel, MarianTokenizer

    from videdit.translate import load_translator

    translator = load_translator(str(tiny_marian))
    assert isinstance(translator.model, MarianMTModel) and isinstance(translator.tokenizer, MarianTokenizer)
    out = translator(["汽车", "保时捷"])
    assert all(o and not HAN.search(o) for o in out), out  # English pieces only, a few words each


def test_translated_words_reach_the_encoder(tiny_sd, tiny_marian, videos, tmp_path, monkeypatch, capsys):
    import videdit.methods.invert as invert
    from videdit.translate import load_translator

    seen: list[str] = []
    encode = invert.encode_text
    monkeypatch.setattr(invert, "encode_text", lambda model, prompts: seen.extend(prompts) or encode(model, prompts))
    out = tmp_path / "car.mp4"
    code, stdout, err = run_cli(["edit", videos / "fox.mp4", "-o", out, "--model", tiny_sd, "--prompt",
                                 "将视频中的汽车替换为保时捷", "--translation-model", tiny_marian, *FAST], capsys)
    assert code == 0, err
    source, target = (clean_translation(t) for t in load_translator(str(tiny_marian))(["汽车", "保时捷"]))
    plan = plan_edit(f"replace the {source} with {target}") if source != target else None
    info = yaml.safe_load((tmp_path / "car_run" / "info.yaml").read_text(encoding="utf-8"))
    assert info["translation"]["texts"] == {"汽车": source, "保时捷": target}
    assert info["translation"]["from"] == "zh"
    assert seen and not any(HAN.search(p) for p in seen), seen  # no Chinese reaches the CLIP encoder
    assert info["source_prompt"] in seen and info["target_prompt"] in seen
    if plan is not None:
        assert (info["source_prompt"], info["target_prompt"]) == (plan.source_prompt, plan.target_prompt)
    assert f"汽车 -> {source}" in err and "translated from Chinese" in err  # said on the terminal


def test_region_prompts_reach_grain_translated(tiny_sd, tiny_marian, videos, tmp_path, capsys):
    from PIL import Image

    masks = tmp_path / "left.png"
    Image.fromarray(np.pad(np.full((64, 32), 255, np.uint8), ((0, 0), (0, 32)))).save(masks)
    out = tmp_path / "trucks.mp4"
    code, _, err = run_cli(["edit", videos / "fox.mp4", "-o", out, "--model", tiny_sd, "--method", "grain",
                            "--prompt", "红色的卡车和蓝色的卡车在沙滩上", "--source-prompt", "a fox on snow",
                            "--region", f"left={masks}:红色的卡车", "--region", "right=auto:fox:蓝色的卡车",
                            "--translation-model", tiny_marian, *FAST], capsys)
    assert code == 0, err
    info = yaml.safe_load((tmp_path / "trucks_run" / "info.yaml").read_text(encoding="utf-8"))
    prompts = [r["prompt"] for r in info["regions"]]
    assert prompts == [info["translation"]["texts"]["红色的卡车"], info["translation"]["texts"]["蓝色的卡车"]]
    assert not any(HAN.search(p) for p in prompts + [info["target_prompt"]])
    assert all(p in info["target_prompt"] for p in prompts)


def test_offline_without_the_translation_model_is_one_line_exit_2(tiny_sd, videos, tmp_path, capsys):
    out = tmp_path / "x.mp4"
    code, _, err = run_cli(["edit", videos / "fox.mp4", "-o", out, "--model", tiny_sd, "--prompt",
                            "将视频中的汽车替换为保时捷", *FAST], capsys)
    assert code == 2
    assert err.count("\n") == 1 and "videdit download translate-zh" in err, err
    assert not out.exists() and not (tmp_path / "x_run").exists()


def test_translate_off_warning_reaches_the_terminal(tiny_sd, videos, tmp_path, capsys):
    code, _, err = run_cli(["edit", videos / "fox.mp4", "-o", tmp_path / "off.mp4", "--model", tiny_sd, "--prompt",
                            "把狗换成猫", "--translate", "off", *FAST], capsys)
    assert code == 0, err
    assert "videdit: warning: the prompt is in Chinese" in err


def test_seed_style_command_prints_its_translation(tiny_sd, tiny_marian, videos, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("edit_video", Path(__file__).resolve().parents[1] / "edit_video.py")
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    out = tmp_path / "out.mp4"
    argv = ["--input", str(videos / "fox.mp4"), "--prompt", "将视频中的汽车替换为保时捷", "--output", str(out),
            "--model", str(tiny_sd), "--translation-model", str(tiny_marian), *FAST]
    assert main(entry.translate(argv)) == 0
    err = capsys.readouterr().err
    assert "videdit: translated from Chinese" in err and "汽车 -> " in err
    assert out.is_file()


# ---------------------------------------------------------------------------------------
# Instructions that find their region (tiny model: plumbing; ShapesWorld: tests/test_localize_shapes.py)

def test_grain_instruction_finds_its_region_says_it_and_reuses_it(tiny_sd, videos, tmp_path, capsys):
    args = ["--model", tiny_sd, "--method", "grain", "--prompt", "replace the fox with a wolf", "--source-prompt",
            "a fox on snow", *FAST]
    code, _, err = run_cli(["edit", videos / "fox.mp4", "-o", tmp_path / "a.mp4", *args], capsys)
    assert code == 0, err
    said = re.search(r"region 'fox': (\d+)% of the frame, frames 0-1", err)
    assert said, err
    run = tmp_path / "a_run"
    assert (run / "mask_fox.mp4").is_file()
    info = yaml.safe_load((run / "info.yaml").read_text(encoding="utf-8"))
    assert info["regions"] == [{"name": "fox", "mask": "auto:fox", "prompt": "wolf"}]
    assert abs(100 * info["found_regions"]["fox"]["area"] - int(said[1])) <= 0.5
    assert "attention maps of fox: loaded from cache" not in (run / "run.log").read_text()
    code, _, err2 = run_cli(["edit", videos / "fox.mp4", "-o", tmp_path / "b.mp4", *args, "--guidance", "5"], capsys)
    assert code == 0, err2
    assert "attention maps of fox: loaded from cache" in (tmp_path / "b_run" / "run.log").read_text()
    assert said[0] in err2  # the same region


def test_invert_localize_keeps_the_outside(tiny_sd, videos, tmp_path, capsys):
    import torch

    import videdit
    import videdit.api
    from videdit.models import load_sd

    model = load_sd(str(tiny_sd))
    frames = videdit.api.load_input(str(videos / "fox.mp4"), videdit.config.make_options({"prompt": "x", "frames": 2})[0]).frames
    frames = videdit.video.resize_frames(frames, (64, 64))
    common = dict(model=model, source_prompt="a fox on snow", steps=2, progress=False, reconstruction=False,
                  no_cache=True, size=64)
    torch.manual_seed(0)
    local = videdit.edit(frames, "replace the fox with a wolf", localize=True, paste_feather=-1, **common)
    plain = videdit.edit(frames, "replace the fox with a wolf", **common)
    found = local.info["found_regions"]["fox"]
    assert 0 < found["area"] < 1
    mask = local.extras["mask_fox"][..., 0] > 127
    # latent blending only (--paste-feather -1): outside the found region the localized edit is the source
    # through the VAE; the plain edit changes it
    from videdit.diffusion import vae_decode, vae_encode

    through_vae = vae_decode(model, vae_encode(model, frames))
    outside = ~mask
    local_err = np.abs(local.edited_working.astype(int) - through_vae)[outside].mean()
    plain_err = np.abs(plain.edited_working.astype(int) - through_vae)[outside].mean()
    assert local_err < plain_err, (local_err, plain_err)
    # by default the source's own pixels outside the found region, the edit from --paste-feather px inside its edge
    import cv2

    pasted = videdit.edit(frames, "replace the fox with a wolf", localize=True, paste_feather=2, **common)
    assert np.array_equal(pasted.edited_working[~mask], frames[~mask])
    deep = np.stack([cv2.distanceTransform(m.astype(np.uint8), cv2.DIST_L2, 5) >= 2 for m in mask])
    assert deep.any() and np.array_equal(pasted.edited_working[deep], local.edited_working[deep])


@pytest.mark.parametrize("args, message", [
    (["--localize", "--prompt", "a wolf on snow"], "--localize needs an instruction"),
    (["--method", "grain", "--prompt", "make it look like a watercolour"], "--method grain needs at least one region"),
])
def test_no_region_to_find_is_one_line(tiny_sd, videos, tmp_path, capsys, args, message):
    code, _, err = run_cli(["edit", videos / "fox.mp4", "-o", tmp_path / "n.mp4", "--model", tiny_sd, *args, *FAST],
                           capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "n.mp4").exists()


def test_bad_translate_choice_is_a_user_error():
    from videdit.config import make_options

    with pytest.raises(UserError):
        make_options({"prompt": "a cat", "translate": "always"})

"""`videdit ui`: the page's functions through gradio_client, and the page itself in a real browser
(Debian's chromium, headless, driven by Playwright), on a server started here on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import socket
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

gr = pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402

from videdit import ui  # noqa: E402
from videdit.cli import main as cli_main  # noqa: E402
from videdit.config import EditOptions  # noqa: E402
from videdit.video import read_clip, working_size, write_video  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

UPLOAD_LIMIT_MB = 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ui-work")
    page, url = ui.launch("127.0.0.1", _free_port(), workdir=workdir, max_upload_mb=UPLOAD_LIMIT_MB, block=False)
    yield page, url, workdir
    page.close()


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    return Client(server[1], verbose=False, download_files=str(tmp_path_factory.mktemp("ui-downloads")))


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory) -> Path:
    """6 frames of 56x40 noise: the working size at --size 64 is 64x48, not the input's."""
    frames = (np.random.default_rng(0).random((6, 40, 56, 3)) * 255).astype(np.uint8)
    return write_video(tmp_path_factory.mktemp("ui-input") / "clip.mp4", frames, 8)


def _jobs(workdir: Path) -> list[Path]:
    return sorted((workdir / "jobs").iterdir())


def test_every_option_has_a_control_built_from_its_metadata():
    shown = {f.name for f in ui.option_fields()}
    for f in dataclasses.fields(EditOptions):
        assert f.name in shown or f.name in ui.FIXED or f.name in ui.FROM_WIDGETS, f.name
    fields = {f.name: f for f in dataclasses.fields(EditOptions)}
    assert ui.methods_of(fields["layout_cross"]) == ("grain",)
    assert ui.methods_of(fields["inject_steps"]) == ("invert", "grain")
    assert ui.methods_of(fields["strength"]) == ()
    # a field the page has never seen gets a widget from its metadata alone
    new = dataclasses.field(default="b", metadata={"help": "grain: a new choice", "choices": ("a", "b")})
    new.name, new.type = "new_option", "str"
    with gr.Blocks():
        control = ui.make_control(new)
    assert isinstance(control, gr.Dropdown) and control.value == "b" and "--new-option" in control.info
    assert ui.methods_of(new) == ("grain",)
    # generate's form: every GenerateOptions field, refine's options in their own fold
    from videdit.generate.options import GenerateOptions

    groups = ui.generate_groups()
    shown = [n for names in groups.values() for n in names]
    assert sorted(shown + list(ui.GENERATE_FIXED)) == sorted(f.name for f in dataclasses.fields(GenerateOptions))
    assert set(groups["refine"]) == {"refine"} | {f.name for f in dataclasses.fields(GenerateOptions)
                                                 if f.metadata["group"] == "refine"}
    assert "prompt" in groups["main"] and "conditioning" in groups["advanced"]
    # an empty optional number means the default, not 0
    layer = ui.options_from_values(["guidance", "frames", "steps"], ["", " 4 ", 3.0])
    assert "guidance" not in layer and layer["frames"] == "4" and layer["steps"] == 3


def test_edit_through_the_client_writes_the_result(client, server, small_clip, tiny_sd, tmp_path):
    status, source, edited, recon, output, archive, table, log, atlas, atlas_recon = client.predict(
        video=handle_file(str(small_clip)), prompt="a red fox", model=str(tiny_sd), steps=2, size=64,
        frames=4, stride=1, eval=True, api_name="/run")
    assert status.startswith("done: 4 frames 56x40"), status
    work = working_size(56, 40, 64)
    for path, size in ((edited, work), (source, work), (recon, work), (output, (56, 40))):
        clip = read_clip(path)
        assert len(clip.frames) == 4 and clip.size == size, (path, clip.size)
    names = set(zipfile.ZipFile(archive).namelist())
    assert {"edited.mp4", "edited_run/edited.mp4", "edited_run/config.yaml", "edited_run/eval.json"} <= names
    metrics = {row[0]: row[1] for row in table["data"]}
    saved = json.loads(zipfile.ZipFile(archive).read("edited_run/eval.json"))["metrics"]
    assert float(metrics["Warp error (edited)"]) == pytest.approx(saved["warp_error"]["value"], rel=1e-3, abs=1e-4)
    assert "CLIP-T" in metrics  # unavailable offline, and listed with the reason
    assert "method invert" in log
    assert not atlas["visible"] and not atlas_recon["visible"]  # the atlas layers show for method atlas only
    jobs = _jobs(server[2])
    assert (jobs[-1] / "edited.mp4").is_file()


def test_bad_strength_shows_the_cli_message(client, server, small_clip, capsys, tmp_path):
    before = _jobs(server[2])
    status = client.predict(video=handle_file(str(small_clip)), prompt="a red fox", strength=1.5, api_name="/run")[0]
    assert cli_main(["edit", str(small_clip), "-o", str(tmp_path / "out.mp4"), "--prompt", "a red fox",
                     "--strength", "1.5"]) == 2
    assert status == capsys.readouterr().err.strip() == "videdit: error: --strength must be in [0, 1], got 1.5"
    assert _jobs(server[2]) == before  # nothing left behind
    missing = client.predict(prompt="a red fox", api_name="/run")[0]
    assert missing == "videdit: error: no input video: upload one or pick an example"


def test_cancel_stops_the_run_and_leaves_nothing(client, server, small_clip, tiny_sd):
    app = server[0].videdit_app
    before = _jobs(server[2])
    job = client.submit(video=handle_file(str(small_clip)), prompt="a red fox", model=str(tiny_sd), steps=200,
                        size=64, frames=2, no_cache=True, reconstruction=False, api_name="/run")
    deadline = time.monotonic() + 120
    while not any(j.bars for j in app.jobs.values()):  # wait for the method's first bar
        assert time.monotonic() < deadline and not job.done(), "the run never started a progress bar"
        time.sleep(0.2)
    running = next(iter(app.jobs.values()))
    assert running.bars[0][0] == "inversion" and running.bars[0][2] == 200
    assert client.predict(api_name="/cancel") == "cancelling at the next step..."
    status, *_ = job.result(timeout=120)
    assert status == "cancelled: nothing was written"
    assert _jobs(server[2]) == before and not app.jobs
    assert client.predict(api_name="/cancel") == "nothing is running"


def test_examples_and_regions_read_only_the_apps_own_files(client, server):
    name = next(n for n in ui.EXAMPLES if "(grain" in n)
    values = client.predict(name, api_name="/example")
    video, regions = values[0], values[1]
    assert regions.count("=") == 2 and "a blue circle" in regions
    options = dict(zip([f.name for f in ui.option_fields()], values[2:]))
    assert options["method"] == "grain" and options["model"] == "shapes-sd" and options["layout_cross"] == 20
    preview, note = client.predict(video=handle_file(video), regions=regions, size=64, frames=16,
                                   api_name="/preview_regions")
    assert note == "2 painted region(s) over 16 frames"
    assert read_clip(preview).frames.shape == (16, 64, 64, 3)
    _, note = client.predict(video=handle_file(video), regions="x=/etc/hostname:a blue circle", size=64,
                             api_name="/preview_regions")
    assert note.startswith("videdit: error: region 'x': the page takes painted layers"), note


def test_only_the_work_folder_is_served_and_uploads_are_limited(server):
    import httpx

    url, workdir = server[1], server[2]
    inside = workdir / "examples" / "served.txt"
    inside.write_text("ok")
    assert httpx.get(f"{url}gradio_api/file={inside}").status_code == 200
    for outside in ("/etc/hostname", str(Path(__file__).resolve())):
        assert httpx.get(f"{url}gradio_api/file={outside}").status_code == 403, outside
    big = os.urandom(int((UPLOAD_LIMIT_MB + 0.5) * 2**20))
    reply = httpx.post(f"{url}gradio_api/upload", files={"files": ("big.mp4", big)})
    assert reply.status_code == 413
    assert httpx.post(f"{url}gradio_api/upload", files={"files": ("small.mp4", big[:1000])}).status_code == 200


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (CI installs it with apt-get)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def test_browser_uploads_a_video_runs_an_edit_and_shows_the_result(server, videos, tiny_sd, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    url = server[1]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.locator("#input-video input[type=file]").set_input_files(str(videos / "fox.mp4"))
            page.wait_for_selector("#first-frame img", timeout=60_000)
            assert "fox.mp4: 512x512" in page.locator("#clip-info").inner_text()
            page.locator("#opt-prompt textarea").fill("a red fox")
            for name, value in (("frames", "2"), ("size", "64"), ("steps", "2")):
                page.locator(f"#opt-{name}").locator("input, textarea").first.fill(value)
            model = page.locator("#opt-model input")
            model.fill(str(tiny_sd))
            model.press("Enter")
            page.locator("#run").click()
            status = page.locator("#status")
            sync_api.expect(status).to_contain_text(re.compile("done|error|failed"), timeout=180_000)
            assert status.inner_text().startswith("done: 2 frames 512x512"), status.inner_text()
            video = page.locator("#result-edited video")
            video.wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "result.png"), full_page=True)
            src = video.get_attribute("src")
            assert src and "edited.mp4" in src
            reply = page.request.get(src)
            assert reply.ok and reply.body()[4:8] == b"ftyp"  # an mp4 is served
        finally:
            browser.close()
    assert (tmp_path / "result.png").stat().st_size > 10_000


def test_painted_layers_and_the_i2v_frame_become_the_cli_inputs(tmp_path, small_clip):
    """What the two image editors send (RGBA layers, a composite) becomes --region masks and --first-frame."""
    from PIL import Image

    app = ui.App(tmp_path / "work")
    background = np.zeros((48, 64, 3), np.uint8)
    layer = np.zeros((48, 64, 4), np.uint8)
    layer[10:20, 5:15] = (255, 0, 0, 255)
    blank = np.zeros_like(layer)
    editor = {"background": background, "layers": [layer, blank], "composite": None}
    defaults = {f.name: "" if f.default is None else f.default for f in ui.option_fields()}
    values = list(dict(defaults, method="grain", prompt="a red fox on grass").values())
    folder = app.new_folder("jobs")
    opts, extra = app.prepare(str(small_clip), editor, "fox=layer1:red fox\nsky=auto:grass:grass", None, values,
                              folder)
    fox, sky = extra["regions"]
    mask = np.asarray(Image.open(fox.mask)) > 0
    assert mask.sum() == 100 and mask[10:20, 5:15].all() and sky.auto_word == "grass"
    for text, message in (("fox=layer2:red fox", "layer2 is empty"), ("fox=layer3:red fox", "layer3 is not painted"),
                          ("fox=../jobs:red fox", "the page takes painted layers")):
        with pytest.raises(ui.UserError, match=message):
            app.prepare(str(small_clip), editor, text, None, values, folder)
    # method atlas: layer1 is the painted foreground; a path on the server is refused
    atlas = dict(defaults, method="atlas", prompt="a red fox on grass")
    opts, _ = app.prepare(str(small_clip), editor, "", None, list(dict(atlas, atlas_mask="layer1").values()), folder)
    assert (np.asarray(Image.open(opts.atlas_mask)) > 0).sum() == 100
    assert app.prepare(str(small_clip), editor, "", None, list(atlas.values()), folder)[0].atlas_mask is None
    for mask, message in (("/etc/hostname", "--atlas-mask: the page takes painted layers"),
                          ("layer2", "--atlas-mask: layer2 is empty")):
        with pytest.raises(ui.UserError, match=message):
            app.prepare(str(small_clip), editor, "", None, list(dict(atlas, atlas_mask=mask).values()), folder)
    with pytest.raises(ui.UserError, match="--bg-atlas: the page reads no file named by path"):
        app.prepare(str(small_clip), editor, "", None, list(dict(atlas, bg_atlas=str(small_clip)).values()), folder)
    composite = np.full((48, 64, 4), (0, 0, 255, 255), np.uint8)
    values = list(dict(defaults, method="i2v", prompt="a blue fox").values())
    opts, _ = app.prepare(str(small_clip), None, "", {"background": background, "layers": [], "composite": composite},
                          values, folder)
    assert (np.asarray(Image.open(opts.first_frame)) == (0, 0, 255)).all()
    with pytest.raises(ui.UserError, match="method i2v needs an edited first frame"):
        app.prepare(str(small_clip), None, "", None, values, folder)


def test_atlas_mask_lines_follow_what_the_option_takes(monkeypatch, tmp_path):
    """auto:WORD passes to --atlas-mask only where its help offers it; several lines only where it repeats."""
    layer = tmp_path / "layer1.png"
    from PIL import Image

    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(layer)
    assert ui.page_atlas_masks("", [layer]) is None
    assert ui.page_atlas_masks(" layer1 \n", [layer]) == str(layer)
    monkeypatch.setattr(ui, "atlas_takes_auto", lambda: True)
    assert ui.page_atlas_masks("auto:circle", []) == "auto:circle"
    repeats = EditOptions.__dataclass_fields__["atlas_mask"].metadata.get("repeat")
    if repeats:
        assert ui.page_atlas_masks("layer1\nauto:circle", [layer]) == [str(layer), "auto:circle"]
    else:
        with pytest.raises(ui.UserError, match="takes one foreground layer, got 2 lines"):
            ui.page_atlas_masks("layer1\nauto:circle", [layer])
    monkeypatch.setattr(ui, "atlas_takes_auto", lambda: False)
    with pytest.raises(ui.UserError, match="the page takes painted layers .* not 'auto:circle'"):
        ui.page_atlas_masks("auto:circle", [])


def test_the_page_says_the_translation_and_the_regions_it_found():
    from videdit.ui import run_notes

    info = {"translation": {"from": "zh", "model": "translate-zh", "texts": {"汽车": "car", "保时捷": "Porsche"},
                            "source_prompt": "a car", "target_prompt": "a Porsche"},
            "found_regions": {"car": {"area": 0.18, "frames": "0-15"}}}
    lines = run_notes(info)
    assert lines[0].startswith("translated from Chinese with translate-zh: 汽车 -> car; 保时捷 -> Porsche")
    assert lines[1] == "region 'car': 18% of the frame, frames 0-15"
    assert run_notes({}) == []


# ---------------------------------------------------------------------------------------------------------
# Method atlas and the generate tab

def _png(path: Path, pixels: np.ndarray) -> str:
    from PIL import Image

    Image.fromarray(pixels).save(path)
    return handle_file(str(path))


def test_atlas_edit_with_a_painted_foreground_shows_the_atlas_layers(client, server, videos, tiny_sd, tmp_path):
    """A foreground painted on layer 1 of the editor (as the browser sends it) is the run's --atlas-mask, and
    the run folder's atlas images and re-rendered layers are shown beside the edit."""
    first = read_clip(videos / "fox.mp4", frames=1).frames[0]
    layer = np.zeros((*first.shape[:2], 4), np.uint8)
    layer[160:400, 120:380] = (31, 119, 180, 255)  # a box over the fox, as in test_atlas_method
    editor = {"background": _png(tmp_path / "bg.png", first), "layers": [_png(tmp_path / "layer1.png", layer)],
              "composite": _png(tmp_path / "composite.png", first)}
    status, _, edited, _, _, archive, _, log, atlas, atlas_recon = client.predict(
        video=handle_file(str(videos / "fox.mp4")), region_layers=editor, method="atlas", atlas_mask="layer1",
        prompt="a cat", model=str(tiny_sd), steps=2, size=64, frames=4, keyframes="0", reconstruction=False,
        api_name="/run")
    assert status.startswith("done: 4 frames 512x512"), (status, log)
    assert atlas["visible"] and atlas_recon["visible"]  # updates: shown for method atlas
    captions = [item["caption"] for item in atlas["value"]]
    assert captions == ["background atlas", "background atlas, edited", "foreground atlas", "foreground atlas, edited"]
    for item in atlas["value"]:
        assert Path(item["image"]).stat().st_size > 0
    assert len(read_clip(atlas_recon["value"]).frames) == 4 and len(read_clip(edited).frames) == 4
    names = set(zipfile.ZipFile(archive).namelist())
    assert {"edited_run/atlas_bg.png", "edited_run/atlas_fg.png", "edited_run/atlas_reconstruction.mp4"} <= names
    config = zipfile.ZipFile(archive).read("edited_run/config.yaml").decode()
    mask = re.search(r"atlas_mask: (.+)", config)[1]
    assert mask.endswith("inputs/layer1.png")  # the painted layer, saved in the job's folder


@pytest.fixture(scope="module")
def tiny_t2v(tmp_path_factory) -> Path:
    """`videdit tiny-model ms-t2v DIR`: a random-weight UNet3D text-to-video model with CAM and APM."""
    folder = tmp_path_factory.mktemp("t2v") / "tiny"
    assert cli_main(["tiny-model", "ms-t2v", str(folder)]) == 0
    return folder


def test_generate_through_the_client_writes_every_frame(client, server, tiny_t2v):
    """chunk 10, overlap 8 (the tiny CAM's), 14 frames: chunks of 10 + 2 + 2 frames, written to the run folder."""
    status, video, archive, log = client.predict(prompt="a red circle moving right", model=str(tiny_t2v), frames=14,
                                                 chunk=10, overlap=8, steps=2, size="64", api_name="/generate")
    assert status.startswith("done: 14 frames 64x64 in 3 chunks"), (status, log)
    assert "generate 14 frames with" in log and "3 chunk(s) of 10 frames" in log
    clip = read_clip(video)
    assert clip.frames.shape == (14, 64, 64, 3)
    names = zipfile.ZipFile(archive).namelist()
    frames = sorted(n for n in names if n.startswith("generated_run/frames/"))
    assert frames == [f"generated_run/frames/{i:06d}.png" for i in range(14)]
    assert "generated.mp4" in names
    options = json.loads(zipfile.ZipFile(archive).read("generated_run/options.json"))
    assert options["chunk"] == 10 and options["overlap"] == 8 and options["model"] == str(tiny_t2v)


def test_generate_with_refine_refines_every_frame(client, server, tiny_t2v):
    """Ticking refine passes the stream through the refiner (here the same tiny model) in chunks of 6 sharing 2."""
    status, video, archive, log = client.predict(
        prompt="a red circle moving right", model=str(tiny_t2v), frames=12, chunk=10, overlap=8, steps=2, size="64",
        refine=True, refiner=str(tiny_t2v), refine_chunk=6, refine_overlap=2, refine_steps=4, refine_size="64",
        api_name="/generate")
    assert status.startswith("done: 12 frames 64x64 in 2 chunks") and f"refined by {tiny_t2v}" in status, status
    from videdit.generate.io import read_png

    refined = read_clip(video).frames
    with zipfile.ZipFile(archive) as z:
        z.extractall(server[2] / "unzipped")
    streamed = np.stack([read_png(p) for p in sorted((server[2] / "unzipped/generated_run/frames").glob("*.png"))])
    assert refined.shape == streamed.shape == (12, 64, 64, 3)
    assert np.abs(refined.astype(int) - streamed.astype(int)).mean() > 1  # the refiner changed them


def test_generate_bad_input_shows_the_cli_message(client, server, capsys, tmp_path):
    before = _jobs(server[2])
    status = client.predict(prompt="a red circle", chunk=8, overlap=8, api_name="/generate")[0]
    assert cli_main(["generate", "-o", str(tmp_path / "out.mp4"), "--prompt", "a red circle", "--chunk", "8",
                     "--overlap", "8"]) == 2
    assert status == capsys.readouterr().err.strip() == \
        "videdit: error: --overlap must be smaller than --chunk, got 8 and 8"
    assert client.predict(prompt=" ", api_name="/generate")[0].startswith("videdit: error: empty prompt")
    assert _jobs(server[2]) == before and not (tmp_path / "out.mp4").exists()


def test_generate_progress_follows_the_chunks_and_cancel_leaves_nothing(client, server, tiny_t2v):
    app = server[0].videdit_app
    before = _jobs(server[2])
    job = client.submit(prompt="a red circle", model=str(tiny_t2v), frames=10 + 2 * 200, chunk=10, overlap=8,
                        steps=2, size="64", api_name="/generate")
    deadline = time.monotonic() + 120
    while not any(j.bars for j in app.jobs.values()):  # generate's bar appears after its first chunk
        assert time.monotonic() < deadline and not job.done(), "the run never updated its progress bar"
        time.sleep(0.1)
    desc, step, total = next(iter(app.jobs.values())).bars[0]
    assert desc == "generating" and total == 201 and step >= 1
    assert client.predict(api_name="/cancel") == "cancelling at the next step..."
    status, video, archive, _ = job.result(timeout=120)
    assert status == "cancelled: nothing was written" and video is None and archive is None
    assert _jobs(server[2]) == before and not app.jobs


def test_atlas_example_makes_the_circle_blue(client, server):
    """The bundled atlas example through the page, read by the ShapesWorld oracle on every frame."""
    from videdit.shapes import judge as oracle

    name = next(n for n in ui.EXAMPLES if "(atlas" in n)
    values = client.predict(name, api_name="/example")
    options = dict(zip([f.name for f in ui.option_fields()], values[2:]))
    assert options["method"] == "atlas" and options["atlas_mask"].endswith("/circle.mp4")
    given = {k: v for k, v in options.items() if v not in (None, "")}
    status, _, edited, *_, atlas, _ = client.predict(video=handle_file(values[0]), **given, api_name="/run")
    assert status.startswith("done: 12 frames 64x64"), status
    masks = ui.EXAMPLES[name]()["masks"]["circle"]
    frames = read_clip(edited).frames
    blue = np.mean([oracle.object_colour(f, m) == "blue" for f, m in zip(frames, masks)])
    assert blue >= 0.9, blue
    assert [item["caption"] for item in atlas["value"]][-1] == "foreground atlas, edited"


def test_browser_generate_tab_runs_and_shows_the_video(server, tiny_t2v, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(server[1])
            page.get_by_role("tab", name="generate a long video").click()
            for name, value in (("prompt", "a red circle"), ("frames", "12"), ("chunk", "10"), ("overlap", "8"),
                                ("steps", "2"), ("size", "64")):
                page.locator(f"#gen-{name}").locator("input, textarea").first.fill(value)
            model = page.locator("#gen-model input")
            model.fill(str(tiny_t2v))
            model.press("Enter")
            page.locator("#gen-run").click()
            status = page.locator("#gen-status")
            sync_api.expect(status).to_contain_text(re.compile("done|error|failed"), timeout=180_000)
            assert status.inner_text().startswith("done: 12 frames 64x64 in 2 chunks"), status.inner_text()
            video = page.locator("#gen-result video")
            video.wait_for(timeout=30_000)
            src = video.get_attribute("src")
            assert src and "generated.mp4" in src
            assert page.request.get(src).body()[4:8] == b"ftyp"
        finally:
            browser.close()


def test_browser_paints_an_atlas_foreground_and_shows_the_atlases(server, videos, tiny_sd):
    """A brush stroke on the editor's first layer in the browser becomes --atlas-mask (layer1)."""
    from PIL import Image

    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(server[1])
            # Every option first, the clip last: a new size or clip shows the first frame again and
            # resets the editor, so nothing may change it once the stroke is painted.
            page.locator("#opt-method").get_by_text("atlas").click()
            for name, value in (("frames", "4"), ("size", "64"), ("steps", "2")):
                page.locator(f"#opt-{name}").locator("input, textarea").first.fill(value)
            page.get_by_text("atlas options", exact=True).click()  # not "grain, atlas options"
            page.locator("#opt-keyframes").locator("input, textarea").first.fill("0")
            page.locator("#opt-prompt textarea").fill("a cat")
            model = page.locator("#opt-model input")
            model.fill(str(tiny_sd))
            model.press("Enter")
            page.locator("#input-video input[type=file]").set_input_files(str(videos / "fox.mp4"))
            page.wait_for_selector("#first-frame img", timeout=60_000)
            sync_api.expect(page.locator("#clip-info")).to_contain_text("working size 64x64", timeout=60_000)
            canvas = page.locator("#region-editor canvas").first
            canvas.wait_for(timeout=30_000)
            canvas.scroll_into_view_if_needed()  # the mouse paints in the viewport only
            time.sleep(2)
            box = canvas.bounding_box()
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.mouse.move(x - 40, y)
            page.mouse.down()
            for dy in (-20, 0, 20):  # a zigzag of three strokes (each move redraws the canvas: few moves)
                page.mouse.move(x - 40, y + dy)
                page.mouse.move(x + 40, y + dy)
            page.mouse.up()
            time.sleep(1)
            page.locator("#opt-atlas-mask").locator("input, textarea").first.fill("layer1")
            page.locator("#run").click()
            status = page.locator("#status")
            sync_api.expect(status).to_contain_text(re.compile("done|error|failed"), timeout=180_000)
            assert status.inner_text().startswith("done: 4 frames 512x512"), status.inner_text()
            sync_api.expect(page.locator("#result-atlas img")).to_have_count(4, timeout=30_000)
            page.locator("#result-atlas-reconstruction video").wait_for(timeout=30_000)
        finally:
            browser.close()
    mask = np.asarray(Image.open(_jobs(server[2])[-1] / "inputs" / "layer1.png")) > 0
    assert 0.02 < mask.mean() < 0.5 and mask[mask.shape[0] // 2, mask.shape[1] // 2]  # the stroke, in the middle

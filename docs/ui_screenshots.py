"""The README's screenshots of `videdit ui` (docs/ui-form.png, docs/ui-result.png), taken in Debian's chromium
on a bundled ShapesWorld example (grain by default); prints how long the example's edit took in the page.
With --generate-model, also the generate tab after a short run on that model (docs/ui-generate.png).

    python docs/ui_screenshots.py [--example N] [--prefix ui] [--frames F] [--steps S] [--chromium /usr/bin/chromium]
    python docs/ui_screenshots.py --example 4 --prefix ui-atlas --only-result   # the atlas example's result
    python docs/ui_screenshots.py --generate-model DIR --skip-edit   # DIR: videdit tiny-model ms-t2v DIR
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

from videdit.ui import EXAMPLES, launch

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--example", type=int, default=0, help="index into videdit.ui.EXAMPLES (default: grain)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--out", default=str(HERE))
    parser.add_argument("--frames", type=int, help="fewer frames than the example's 16 (a busy machine)")
    parser.add_argument("--steps", type=int, help="fewer steps than the example's 20 (a busy machine)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the result")
    parser.add_argument("--prefix", default="ui", help="file names: PREFIX-form.png, PREFIX-result.png")
    parser.add_argument("--only-result", action="store_true", help="no form screenshot")
    parser.add_argument("--skip-edit", action="store_true", help="no edit (with --generate-model)")
    parser.add_argument("--generate-model", help="a text-to-video model folder for the generate tab's screenshot")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    name = list(EXAMPLES)[args.example]
    with tempfile.TemporaryDirectory() as work:
        page_app, url = launch("127.0.0.1", port, workdir=work, block=False)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(url)
                if not args.skip_edit:
                    edit(page, name, args)
                if args.generate_model:
                    generate(page, args)
                browser.close()
        finally:
            page_app.close()


def edit(page, name: str, args) -> None:
    from playwright.sync_api import expect

    page.locator("#example input").click()
    page.get_by_role("option", name=name).click()
    page.wait_for_selector("#first-frame img", timeout=60_000)
    time.sleep(2)
    for option in ("frames", "steps"):
        if getattr(args, option):
            page.locator(f"#opt-{option}").locator("input, textarea").first.fill(str(getattr(args, option)))
    if "(grain" in name:
        page.get_by_text("preview the regions over the clip").click()
        expect(page.locator("#status")).to_contain_text("painted region", timeout=60_000)
        page.wait_for_selector("#regions-preview video", timeout=30_000)
    if not args.only_result:
        page.screenshot(path=str(Path(args.out) / f"{args.prefix}-form.png"), full_page=True)
    start = time.perf_counter()
    page.locator("#run").click()
    expect(page.locator("#status")).to_contain_text(re.compile("done|error|failed"), timeout=args.timeout * 1000)
    seconds = time.perf_counter() - start
    page.wait_for_selector("#result-edited video", timeout=30_000)
    time.sleep(2)
    page.screenshot(path=str(Path(args.out) / f"{args.prefix}-result.png"), full_page=True)
    print(f"{name}: {page.locator('#status').inner_text()}; {seconds:.1f} s from Run to the result in the page")


def generate(page, args) -> None:
    from playwright.sync_api import expect

    page.get_by_role("tab", name="generate a long video").click()
    values = dict(prompt="a red circle moving right on grass", frames="24", chunk="10", overlap="8",
                  steps=str(args.steps or 4), size="64")
    for option, value in values.items():
        page.locator(f"#gen-{option}").locator("input, textarea").first.fill(value)
    model = page.locator("#gen-model input")
    model.fill(args.generate_model)
    model.press("Enter")
    start = time.perf_counter()
    page.locator("#gen-run").click()
    expect(page.locator("#gen-status")).to_contain_text(re.compile("done|error|failed"), timeout=args.timeout * 1000)
    seconds = time.perf_counter() - start
    page.wait_for_selector("#gen-result video", timeout=30_000)
    time.sleep(2)
    page.screenshot(path=str(Path(args.out) / "ui-generate.png"), full_page=True)
    print(f"generate: {page.locator('#gen-status').inner_text()}; {seconds:.1f} s from Run to the result in the page")


if __name__ == "__main__":
    main()

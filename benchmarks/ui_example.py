"""`videdit ui`'s bundled ShapesWorld example through the page's API (gradio_client) against the same edit
through `videdit.api.edit` in the same process, one after the other: the page's overhead as a ratio, and the
seconds of each. The goal is under a minute on a laptop; `videdit demo` (the same clip, method and steps) is
quoted at 34 s on an idle 2-core machine, and on a busy one torch's two OpenMP threads are far slower than one.

    python benchmarks/ui_example.py [--example N]   # 4: the atlas example
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time

from gradio_client import Client, handle_file

from videdit import api
from videdit.ui import EXAMPLES, App, launch, option_fields, page_atlas_masks, page_regions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--example", type=int, default=0, help="index into videdit.ui.EXAMPLES (default: grain)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both runs (default 1: on a busy "
                        "2-core machine one is faster than two, as the tests' one_thread fixture says; 0: torch's own)")
    parser.add_argument("--no-warm", action="store_true", help="time the first runs too (by default one edit "
                        "through the API first loads the model, which both timed runs then share from memory)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    name = list(EXAMPLES)[args.example]
    with tempfile.TemporaryDirectory() as work:
        os.environ["VIDEDIT_CACHE_DIR"] = os.path.join(work, "cache")  # both runs invert from scratch
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        page, url = launch("127.0.0.1", port, workdir=os.path.join(work, "ui"), block=False)
        try:
            client = Client(url, verbose=False, download_files=os.path.join(work, "downloads"))
            values = client.predict(name, api_name="/example")
            video, regions, options = values[0], values[1], dict(zip([f.name for f in option_fields()], values[2:]))
            options["no_cache"] = True
            app: App = page.videdit_app
            kwargs = {k: v for k, v in options.items() if v not in ("", None)}
            region_list = page_regions(regions, [], app.workdir / "examples") if regions else None
            if kwargs.get("atlas_mask"):  # a mask of the app's examples folder, named relative to it
                kwargs["atlas_mask"] = page_atlas_masks(kwargs["atlas_mask"], [], app.workdir / "examples")
            if not args.no_warm:  # the model in memory (videdit.api keeps one) and imports done, for both runs
                api.edit(video, output=os.path.join(work, "warm.mp4"), regions=region_list, progress=False, **kwargs)
            start = time.perf_counter()
            status = client.predict(video=handle_file(video), regions=regions, **options, api_name="/run")[0]
            page_s = time.perf_counter() - start
            start = time.perf_counter()
            api.edit(video, output=os.path.join(work, "direct.mp4"), regions=region_list, progress=False, **kwargs)
            direct_s = time.perf_counter() - start
        finally:
            page.close()
    print(f"{name}\n  page: {status}\n  page (gradio_client, Run to result): {page_s:.1f} s\n"
          f"  videdit.api.edit, same options: {direct_s:.1f} s\n  ratio page / api: {page_s / direct_s:.2f}\n"
          f"  {'no warm-up run' if args.no_warm else 'after one warm-up run through the API'}; "
          f"torch threads {args.threads or 'default'}; load average at the end: {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores")


if __name__ == "__main__":
    main()

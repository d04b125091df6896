"""The ShapesWorld edit suite (`videdit bench shapes`) as a benchmark script: every method that can take
each of the five fixed, seeded tasks edits it, and the oracle scores it (edit success, PSNR outside the
edit, colour and background stability, seconds per frame), each method under `videdit.shapes.method_options`.
All rows come from one process, so their seconds per frame compare like with like. A row is printed as each
run ends, with the time left on stderr, and a legend under the table.

    python benchmarks/bench_shapes.py                          # every method, 16 frames, 30 steps
    python benchmarks/bench_shapes.py --methods grain anchor --json
    python benchmarks/bench_shapes.py --tasks "change a shape" --steps 20
"""

from __future__ import annotations

import sys

from videdit.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "shapes", *sys.argv[1:]]))

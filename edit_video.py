#!/usr/bin/env python
"""Seed-document entry point: ``python edit_video.py --input IN --prompt TEXT --output OUT``.

Calls the same code as ``videdit edit IN --prompt TEXT -o OUT``; other ``videdit edit`` flags pass through.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from videdit.cli import main  # noqa: E402


def translate(argv: list[str]) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument("--input", required=True, help="input video")
    parser.add_argument("--output", required=True, help="output video")
    known, rest = parser.parse_known_args(argv)
    return ["edit", known.input, "-o", known.output, *rest]


if __name__ == "__main__":
    sys.exit(main(translate(sys.argv[1:])))

"""Flags of `videdit generate`, `videdit refine`, `videdit convert` and `videdit train-streaming`,
built from `GenerateOptions` (argument parsing only; the work is in the modules of this package)."""

from __future__ import annotations

import argparse

from .options import GenerateOptions, option_fields

TRUE_BY_DEFAULT = {"shared_noise": "no-shared-noise", "progress": "no-progress"}


def _add(parser: argparse.ArgumentParser, groups: tuple[str, ...]) -> None:
    from ..cli import add_option_flags

    parser.add_argument("--prompt", required=True, help=GenerateOptions.__dataclass_fields__["prompt"].metadata["help"])
    add_option_flags(parser, [f for f in option_fields(groups) if f.name != "prompt"], TRUE_BY_DEFAULT)


def add_parsers(sub) -> None:
    p = sub.add_parser("generate", help="long text-to-video, chunk by chunk, in bounded memory")
    p.add_argument("-o", "--output", required=True, help="output video (.mp4, .mov, .mkv, .avi, .webm)")
    _add(p, ("common", "generate", "refine"))

    p = sub.add_parser("refine", help="refine a video with a text-to-video model and randomized blending")
    p.add_argument("input", help="video file")
    p.add_argument("-o", "--output", required=True, help="output video")
    _add(p, ("common", "refine"))

    p = sub.add_parser("convert", help="turn released weights into a folder videdit loads (safetensors)")
    p.add_argument("kind", choices=("streamingt2v",), help="streamingt2v: the released StreamingT2V checkpoint")
    p.add_argument("checkpoint", help="the checkpoint file (streaming_t2v.ckpt)")
    p.add_argument("-o", "--output", required=True, help="output folder (the streaming/ folder of a model)")
    p.add_argument("--base", default="ms-t2v", help="base model the modules belong to (default: ms-t2v)")
    p.add_argument("--allow-pickle", action="store_true", help="allow reading a pickle checkpoint; unpickling runs code")
    p.add_argument("--overwrite", action="store_true")


def _options(args) -> GenerateOptions:
    values = {f.name: getattr(args, f.name) for f in option_fields(("common", "generate", "refine"))
              if getattr(args, f.name, None) is not None}
    return GenerateOptions(**values).validate()


def cmd_generate(args) -> int:
    from ..cli import _quiet_libraries

    _quiet_libraries(False)
    from .stream import generate

    out = generate(_options(args), args.output)
    print(f"wrote {out}")
    return 0


def cmd_refine(args) -> int:
    from ..cli import _quiet_libraries

    _quiet_libraries(False)
    from .refine import refine_video

    out = refine_video(args.input, _options(args), args.output)
    print(f"wrote {out}")
    return 0


def cmd_convert(args) -> int:
    from ..cli import _quiet_libraries

    _quiet_libraries(False)
    from .convert import convert_streamingt2v

    out = convert_streamingt2v(args.checkpoint, args.output, base=args.base, allow_pickle=args.allow_pickle,
                               overwrite=args.overwrite)
    print(f"wrote {out}")
    return 0


COMMANDS = {"generate": cmd_generate, "refine": cmd_refine, "convert": cmd_convert}

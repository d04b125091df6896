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
    add_train_parser(sub)


def add_train_parser(sub) -> None:
    from .train import TRAIN_BASE

    p = sub.add_parser("train-streaming", help="train the CAM and APM streaming modules of a text-to-video model")
    p.add_argument("data", help="'shapes' (ShapesWorld clips) or a folder with metadata.jsonl of {video, caption}")
    p.add_argument("--base", required=True, help="base text-to-video model (UNet3D): preset, repository or folder")
    p.add_argument("-o", "--output", required=True, help="run folder: checkpoints (resumable), log.jsonl, streaming/")
    p.add_argument("--minutes", type=float, default=60.0, help="wall-time budget of this run (default: 60)")
    p.add_argument("--steps", type=int, default=None, help="step budget (whichever comes first)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--train-base", choices=TRAIN_BASE, default="temporal",
                   help="which base UNet layers train with the modules (default: temporal)")
    p.add_argument("--checkpoint-minutes", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--size", type=int, default=None, help="clip side in pixels (default: the base model's own)")


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


def cmd_train_streaming(args) -> int:
    from pathlib import Path

    from ..cli import _quiet_libraries
    from .train import train_streaming

    _quiet_libraries(False)
    if args.minutes <= 0 or (args.steps is not None and args.steps < 1) or args.checkpoint_minutes <= 0:
        from ..errors import UserError

        raise UserError("--minutes, --steps and --checkpoint-minutes must be positive")
    out = train_streaming(args.data, args.base, Path(args.output), seed=args.seed, minutes=args.minutes, steps=args.steps,
                          batch=args.batch, lr=args.lr, train_base=args.train_base, device=args.device,
                          checkpoint_minutes=args.checkpoint_minutes, size=args.size)
    print(f"wrote {out / 'streaming'}")
    return 0


COMMANDS = {"generate": cmd_generate, "refine": cmd_refine, "convert": cmd_convert, "train-streaming": cmd_train_streaming}

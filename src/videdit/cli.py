"""Command line: argument parsing only. Every command calls a function of the Python API."""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import fields
from pathlib import Path

from .config import EditOptions, option_help
from .errors import UserError, printable
from .generate.cli import COMMANDS as GENERATE_COMMANDS

TRUE_BY_DEFAULT = {"reconstruction": "no-reconstruction", "run_folder": "no-run-folder", "progress": "no-progress",
                   "layout_background": "no-layout-background"}


def _quiet_libraries(verbose: bool) -> None:
    """Hide the libraries' own info chatter and weight-loading bars unless --verbose."""
    import os
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if verbose:
        return
    warnings.filterwarnings("ignore")
    try:
        import diffusers.utils.logging as dl
        import transformers.utils.logging as tl

        tl.set_verbosity_error()
        dl.set_verbosity_error()
        tl.disable_progress_bar()
        dl.disable_progress_bar()
    except Exception:  # logging is a nicety; never fail a run over it
        pass


class Parser(argparse.ArgumentParser):
    """argparse, with errors as one line (the flag, what is wrong, the choices) and exit status 2,
    not the whole usage text."""

    def error(self, message: str):
        self.exit(2, f"videdit: error: {printable(message)} (see: {self.prog} --help)\n")


def _help_with_default(f) -> str:
    """The field's help, with its range and its default (unless the help already says it, or there is none)."""
    text = option_help(f)
    if "default" in f.metadata["help"] or f.default is None:
        return text
    return f"{text} (default: {f.default})"


def add_edit_options(parser: argparse.ArgumentParser) -> None:
    """One flag per `EditOptions` field; defaults stay None so that a YAML config can fill them."""
    parser.add_argument("--prompt", help=f"(required, here or in --config) {EditOptions.__dataclass_fields__['prompt'].metadata['help']}")
    add_option_flags(parser, [f for f in fields(EditOptions) if f.name != "prompt"], TRUE_BY_DEFAULT)


def add_option_flags(parser: argparse.ArgumentParser, option_fields, true_by_default: dict[str, str]) -> None:
    """One flag per dataclass field (help and choices from its metadata), defaults None; a bool field in
    ``true_by_default`` becomes a --no-... flag."""
    for f in option_fields:
        flag = "--" + f.name.replace("_", "-")
        help_text = _help_with_default(f)
        if f.type == "bool" and f.name in true_by_default:
            parser.add_argument("--" + true_by_default[f.name], dest=f.name, action="store_const", const=False,
                                help="do not " + f.metadata["help"])
        elif f.type == "bool":
            parser.add_argument(flag, dest=f.name, action="store_const", const=True, help=f.metadata["help"])
        else:
            kind = {"int": int, "float": float}.get(f.type.split("|")[0].strip(), str)
            parser.add_argument(flag, dest=f.name, type=kind, choices=f.metadata.get("choices"), help=help_text,
                                action="append" if f.metadata.get("repeat") else "store")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="videdit", description="Edit videos with pretrained diffusion models.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"videdit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("edit", help="edit a video so that it shows a prompt")
    p.add_argument("input", help="video file, folder of frames, or image")
    p.add_argument("-o", "--output", required=True, help="output video (.mp4 or .gif)")
    p.add_argument("--config", help="YAML file with any of the options below (flags win)")
    p.add_argument("--region", action="append", dest="regions", metavar="NAME=MASK:PROMPT",
                   help="grain: a region, repeatable; MASK is a folder of per-frame PNGs, a video, an image, or "
                        "auto:WORD (from the cross-attention of WORD in the source prompt); PROMPT must be part "
                        "of --prompt")
    add_edit_options(p)

    p = sub.add_parser("download", help="fetch models from the Hugging Face hub")
    p.add_argument("names", nargs="+", help="presets (sd15, canny, depth, openpose, ip2p, i2vgen-xl, clip-l14) or repository ids")
    p.add_argument("--allow-pickle", action="store_true", help="also fetch pickle weights where no safetensors exist")

    p = sub.add_parser("tiny-model", help="write a random-weight model of the real classes (for tests)")
    p.add_argument("kind", help="sd15, ip2p, i2vgen-xl, ms-t2v, clip or marian (a translator, for --translation-model)")
    p.add_argument("dir", help="output folder")
    p.add_argument("--with-controlnet", action="store_true", help="also write a tiny ControlNet (sd15)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser("eval", help="quality metrics of an edited video (CLIP-T, CLIP-F, warp error, ...)")
    from .evaluate import add_eval_arguments

    add_eval_arguments(p)

    p = sub.add_parser("finetune-equivariant", help="finetune an instruction editor with the same random affine "
                       "transform on source and target (consistent video edits)")
    p.add_argument("model", help="instruction editor: preset (ip2p, shapes-ip2p), repository or folder")
    p.add_argument("data", help="'shapes' (ShapesWorld triples) or a folder with metadata.jsonl of "
                   "{source, target, instruction}")
    p.add_argument("-o", "--output", required=True, help="folder for the finetuned model (diffusers layout)")
    p.add_argument("--minutes", type=float, default=10.0, help="wall-time budget (default: 10)")
    p.add_argument("--steps", type=int, default=None, help="step budget (whichever comes first)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--resolution", type=int, default=None, help="image size (default: the model's native size)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser("demo", help="edit a ShapesWorld clip with the bundled models and judge it (no download)")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--method", default="auto", choices=("auto", "grain", "anchor", "invert"),
                   help="auto (default: the best available, in this order: grain, anchor, invert)")
    p.add_argument("--model", default=None, help="default: shapes-ip2p for anchor, else shapes-sd")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--steps", type=int, default=20, help="sampling steps (default 20: about 34 s for 16 frames on 2 CPU cores, the same verdict as 25 steps in 45 s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser("bench", help="benchmarks of meaning")
    bench = p.add_subparsers(dest="suite", required=True)
    b = bench.add_parser("shapes", help="the ShapesWorld edit suite, judged by the oracle")
    b.add_argument("--methods", nargs="+", help="methods to run (default: every method available)")
    b.add_argument("--tasks", nargs="+", help="task names to run (default: all)")
    b.add_argument("--steps", type=int, default=30)
    b.add_argument("--frames", type=int, default=16)
    b.add_argument("--json", action="store_true", help="print JSON instead of a table")
    b.add_argument("--sd", default="shapes-sd", help="text-to-image model of invert and grain (default: shapes-sd)")
    b.add_argument("--ip2p", default="shapes-ip2p", help="instruction editor of anchor (default: shapes-ip2p)")
    b.add_argument("--i2v", default="shapes-i2v", help="image-to-video model of i2v (default: shapes-i2v)")

    p = sub.add_parser("shapes", help="ShapesWorld: train the project's own small models")
    shapes = p.add_subparsers(dest="shapes_command", required=True)
    t = shapes.add_parser("train", help="train a ShapesWorld model (vae, sd, ip2p, i2v) on CPU; "
                                        "see 'videdit shapes train --help'", add_help=False)
    t.add_argument("train_args", nargs=argparse.REMAINDER)

    p = sub.add_parser("atlas", help="layered atlases of a clip (background, foreground, per-frame uv and alpha), "
                       "or 'atlas render DIR' to re-render them after editing the atlas images")
    from .atlas.commands import add_atlas_arguments

    add_atlas_arguments(p)

    from .generate.cli import add_parsers as add_generate_parsers

    add_generate_parsers(sub)

    p = sub.add_parser("presets", help="list model presets")

    p = sub.add_parser("ui", help="a web page for every method (Gradio), on 127.0.0.1 unless told otherwise")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link to the page")
    p.add_argument("--workdir", help="folder for uploads and results, the only one served (default: a new "
                   "temporary folder, removed on exit)")
    p.add_argument("--max-upload-mb", type=float, default=500, help="largest upload accepted (default: 500)")
    sub.metavar = "{" + ",".join(sub.choices) + "}"  # a missing command's error lists the commands
    return parser


def cmd_edit(args) -> int:
    from .api import run_edit
    from .config import load_yaml_config, make_options

    from .masks import parse_region_arg, regions_from_config, validate_regions

    layers = [load_yaml_config(args.config)] if args.config else []
    if layers and "regions" in layers[0]:  # mask paths relative to the config file
        layers[0]["regions"] = regions_from_config(layers[0]["regions"], Path(args.config).parent)
    cli = {f.name: getattr(args, f.name) for f in fields(EditOptions)}
    if args.regions:
        cli["regions"] = validate_regions([parse_region_arg(a) for a in args.regions])
    opts, extra = make_options(*layers, cli, extra_ok=("regions",))
    _quiet_libraries(opts.verbose)
    res = run_edit(args.input, opts, args.output, extra=extra)
    if res.output is None:  # a rank other than 0 of a parallel run: rank 0 writes
        return 0
    print(f"wrote {printable(res.output)} ({len(res.frames)} frames)"
          + (f"; run folder {printable(res.run_folder)}" if res.run_folder else ""))
    return 0


def cmd_download(args) -> int:
    from .models import download

    for name, path in zip(args.names, download(args.names, allow_pickle=args.allow_pickle)):
        print(f"{name}: {path}")
    return 0


def cmd_tiny_model(args) -> int:
    from .tiny import write_tiny_model

    _quiet_libraries(False)
    if args.kind == "ms-t2v":
        from .generate.tiny import write_tiny_t2v

        print(f"wrote tiny ms-t2v model (with CAM and APM) to {write_tiny_t2v(args.dir, args.seed, args.overwrite)}")
        return 0
    if args.kind == "clip":
        from .tiny_clip import make_tiny_clip

        out = make_tiny_clip(args.dir, seed=args.seed, overwrite=args.overwrite)
        print(f"wrote tiny clip model to {out}")
        return 0
    if args.kind == "marian":
        from .tiny_marian import write_tiny_marian

        print(f"wrote tiny marian model to {write_tiny_marian(args.dir, seed=args.seed, overwrite=args.overwrite)}")
        return 0
    out = write_tiny_model(args.kind, args.dir, seed=args.seed, with_controlnet=args.with_controlnet,
                           overwrite=args.overwrite)
    print(f"wrote tiny {args.kind} model to {out}")
    return 0


def cmd_eval(args) -> int:
    from .evaluate import run_eval

    _quiet_libraries(False)
    return run_eval(args)


def cmd_finetune_equivariant(args) -> int:
    from .finetune import finetune_equivariant

    _quiet_libraries(False)
    out = finetune_equivariant(args.model, args.data, args.output, minutes=args.minutes, steps=args.steps,
                               batch=args.batch, lr=args.lr, seed=args.seed, overwrite=args.overwrite,
                               resolution=args.resolution)
    print(f"wrote the finetuned model to {out}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    _quiet_libraries(False)
    out, lines = run_demo(args.out, args.method, args.model, args.frames, args.steps, args.seed, args.overwrite,
                          say=lambda line: print(line, file=sys.stderr, flush=True))
    print("\n".join(lines))
    print(f"wrote {out}/ (source, edited, side_by_side mp4 and gif, masks, verdict.txt)")
    return 0


def cmd_bench(args) -> int:
    from .bench import LEGEND, format_header, format_row, plan_suite, run_suite, to_json

    _quiet_libraries(False)
    runs = plan_suite(args.methods, args.ip2p, args.i2v, args.steps, args.frames, args.tasks)
    print(f"{len(runs)} run{'' if len(runs) == 1 else 's'}: a row as each ends, the time left estimated from the runs so far",
          file=sys.stderr, flush=True)
    if not args.json:  # the table grows a row as each run ends; the progress goes to stderr
        print(format_header(), flush=True)

    def on_row(row, progress):
        if not args.json:
            print(format_row(row), flush=True)
        print(f"{row['task']}: {row['method']} done, {progress.line()}", file=sys.stderr, flush=True)

    rows = run_suite(args.methods, sd=args.sd, ip2p=args.ip2p, i2v=args.i2v, steps=args.steps, frames=args.frames,
                     only=args.tasks, on_row=on_row)
    print(to_json(rows) if args.json else "\n" + LEGEND)
    return 0


def cmd_shapes(args) -> int:
    from .shapes.train import main as train_main

    _quiet_libraries(False)
    train_main(args.train_args)
    return 0


def cmd_atlas(args) -> int:
    from .atlas.commands import run_atlas_command

    print(run_atlas_command(args))
    return 0


def cmd_presets(args) -> int:
    from .models import PRESETS

    for name, p in PRESETS.items():
        print(f"{name:16s} {p.kind:11s} {p.repo if not Path(p.repo).is_absolute() else '(ships with videdit)'}  {p.about}")
    return 0


def cmd_ui(args) -> int:
    _quiet_libraries(False)
    try:
        from .ui import launch
    except ImportError as exc:
        raise UserError(f"the web UI needs the ui extra ({exc.name} is missing): pip install 'videdit[ui]'") from None
    launch(args.host, args.port, args.share, args.workdir, args.max_upload_mb)
    return 0


COMMANDS = {"edit": cmd_edit, "download": cmd_download, "tiny-model": cmd_tiny_model, "eval": cmd_eval,
            "finetune-equivariant": cmd_finetune_equivariant, "demo": cmd_demo, "bench": cmd_bench, "shapes": cmd_shapes,
            "presets": cmd_presets, "ui": cmd_ui, "atlas": cmd_atlas}


COMMANDS.update(GENERATE_COMMANDS)  # generate, refine, convert (videdit.generate.cli)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if getattr(args, "shapes_command", None) == "train":  # the trainer parses its own flags
        args.train_args = unknown + args.train_args
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    previous = _terminate_as_interrupt()
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"videdit: error: {printable(str(exc))}", file=sys.stderr)
        return 2
    except Terminated:
        print("videdit: terminated; nothing was written", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("videdit: interrupted; nothing was written", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class Terminated(BaseException):
    """SIGTERM, raised where the program is, so that every atomic write on the way out removes its
    temporary output (as Ctrl-C's KeyboardInterrupt does)."""


def _terminate_as_interrupt():
    """Turn SIGTERM into `Terminated` for the length of a command; returns the handler it replaced
    (None where signals cannot be set: outside the main thread)."""
    def handler(signum, frame):
        raise Terminated()

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. a UI worker): leave signals alone
        return None


if __name__ == "__main__":
    sys.exit(main())

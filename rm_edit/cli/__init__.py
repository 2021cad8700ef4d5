"""The ``rm-edit`` command line: edit images, edit a manifest in batches, make data, train.

Subcommands live in :data:`COMMANDS` (name -> ``(add_parser, run)``). To add one, write in your module::

    def add_parser(subparsers) -> argparse.ArgumentParser:
        return subparsers.add_parser("eval", help="...", description="...")

    def run(args: argparse.Namespace) -> int:
        ...  # import heavy modules here, not at module level

and add one line to :data:`COMMANDS`: ``"eval": lazy_command("rm_edit.evaluation.cli"),``.
Raise ``ValueError`` / ``FileNotFoundError`` (or :class:`CliError`) with a one-line message for user
errors: :func:`main` prints ``rm-edit: error: <message>`` and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from rm_edit.files import one_line

from .options import PROG, USAGE_ERROR, CliError, OneLineParser, SubParsers, wrap

AddParser = Callable[[SubParsers], argparse.ArgumentParser]
Run = Callable[[argparse.Namespace], int]


# ---- registry -------------------------------------------------------------------------------------------
def lazy_command(module: str, add_parser: str = "add_parser", run: str = "run") -> tuple[AddParser, Run]:
    """A command whose ``add_parser`` / ``run`` live in ``module``; it is imported only when needed."""
    return (lambda sub: getattr(importlib.import_module(module), add_parser)(sub),
            lambda args: getattr(importlib.import_module(module), run)(args))


#: name -> (add_parser, run). Add a subcommand with one line, e.g.
#: ``"eval": lazy_command("rm_edit.evaluation.cli"),``
COMMANDS: dict[str, tuple[AddParser, Run]] = {
    "edit": lazy_command("rm_edit.cli.edit"),
    "batch": lazy_command("rm_edit.cli.batch"),
    "data": lazy_command("rm_edit.cli.data_train", "add_data_parser", "run_data"),
    "train": lazy_command("rm_edit.cli.data_train", "add_train_parser", "run_train"),
    "eval": lazy_command("rm_edit.evaluation.cli"),
    "convert": lazy_command("rm_edit.pipelines.lumina_dimoo"),
}

_MAIN_EPILOG = """\
examples:
  rm-edit edit photo.png "make the circle blue" -o edited.png --save-mask region.png
  rm-edit batch data/test/manifest.jsonl --out results/
  rm-edit data shapes --out data/shapes_train --n 20000
  rm-edit train mdm --config configs/mdm_shapes_rm.json

Run `rm-edit COMMAND --help` for the options of a command.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_MAIN_EPILOG,
        description=wrap("Edit images with instructions using Reflective Masking: a mask diffusion model "
                          "re-generates only the part of the image the instruction is about."),
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (add_parser, _) in COMMANDS.items():
        add_parser(sub).set_defaults(_command=name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser = build_parser()
        # parse_known_args so `train vq/mdm` can hand their options on untouched; elsewhere extras are errors.
        args, extra = parser.parse_known_args(argv)
        if extra and not getattr(args, "_passthrough", False):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.extra = extra
        return COMMANDS[args._command][1](args)
    except (CliError, ValueError, FileNotFoundError, OSError) as exc:
        if debug:
            raise
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130



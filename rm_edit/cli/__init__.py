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
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple

from rm_edit.files import one_line

from .options import INTERRUPTED, PROG, USAGE_ERROR, CliError, OneLineParser, SubParsers, wrap

AddParser = Callable[[SubParsers], argparse.ArgumentParser]
Run = Callable[[argparse.Namespace], int]


# ---- registry -------------------------------------------------------------------------------------------
class Command(NamedTuple):
    add_parser: AddParser
    run: Run
    help: str | None  # the one line `rm-edit --help` lists; None: import the module to find it


def lazy_command(module: str, add_parser: str = "add_parser", run: str = "run", help: str | None = None) -> Command:
    """A command whose ``add_parser`` / ``run`` live in ``module``; it is imported only when that command
    is the one on the command line (``help`` lets ``rm-edit --help`` list it without importing it)."""
    return Command(lambda sub: getattr(importlib.import_module(module), add_parser)(sub),
                   lambda args: getattr(importlib.import_module(module), run)(args), help)


#: name -> Command. Add a subcommand with one line, e.g.
#: ``"eval": lazy_command("rm_edit.evaluation.cli", help="evaluate ..."),``
COMMANDS: dict[str, Command] = {
    "edit": lazy_command("rm_edit.cli.edit", help="edit one image with an instruction"),
    "batch": lazy_command("rm_edit.cli.batch", help="edit every item of a JSONL manifest (resumable)"),
    "data": lazy_command("rm_edit.cli.data_train", "add_data_parser", "run_data",
                         help="make training data: shapes-world or Sudoku edits, pre-tokenised codes"),
    "train": lazy_command("rm_edit.cli.data_train", "add_train_parser", "run_train",
                          help="train the image tokenizer (vq) or the editing model (mdm)"),
    "eval": lazy_command("rm_edit.evaluation.cli",
                         help="evaluate a model or another tool's edits on a benchmark (or `eval compare`)"),
    "demo": lazy_command("rm_edit.cli.demo", help="a local web page to try a model (pip install -e \".[demo]\")"),
    "info": lazy_command("rm_edit.cli.info", help="what a model understands: its world, words, example instructions"),
    "convert": lazy_command("rm_edit.pipelines.lumina_dimoo",
                            help="convert a released checkpoint to this project's pipeline format"),
}

_MAIN_EPILOG = """\
examples:
  rm-edit edit assets/example.png "turn the green square red" -o edited.png --save-mask region.png
  rm-edit info                      # what the default model understands: its world, words, example instructions
  rm-edit batch data/test/manifest.jsonl --out results/
  rm-edit data shapes --out data/shapes_train --n 20000
  rm-edit train mdm --config configs/mdm_grid_rm.json

Run `rm-edit COMMAND --help` for the options of a command.
"""


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the main parser's own options take no values)."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in COMMANDS else None


def build_parser(command: str | None = None, every: bool = False) -> argparse.ArgumentParser:
    """The ``rm-edit`` parser. Only ``command``'s own options are built (its module imported; ``every``:
    all of them); the other commands are listed by their help line, so `rm-edit --help` and a typo answer
    without importing torch."""
    from rm_edit import __version__

    parser = OneLineParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_MAIN_EPILOG,
        description=wrap("Edit images with instructions using Reflective Masking: a mask diffusion model "
                          "re-generates only the part of the image the instruction is about."),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, entry in COMMANDS.items():
        if every or name == command or entry.help is None:
            p = entry.add_parser(sub)
        else:
            p = sub.add_parser(name, help=entry.help, add_help=False)
        p.set_defaults(_command=name)
    return parser


def _quiet_libraries() -> None:
    """A normal run prints our lines only: no deprecation notes from the libraries we drive."""
    import warnings

    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category, module=r"(diffusers|transformers|torch|accelerate)\b")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    # Ours (e.g. an input outside the model's world, --history on a model trained without it): one line each.
    warnings.showwarning = lambda message, *_args, **_kw: print(f"{PROG}: warning: {one_line(message)}", file=sys.stderr)


class _InterruptFlag:
    """Ctrl-C as Python's default handler does it (KeyboardInterrupt), also remembered: a library that turns
    the interrupt into its own error (diffusers reports an interrupted weights read as "Unable to load
    weights") must still end as an interrupt, not as a misleading error about the input."""

    def __init__(self) -> None:
        self.seen = False
        self.previous = signal.getsignal(signal.SIGINT)
        if self.previous is signal.default_int_handler:  # leave an ignored SIGINT ignored
            signal.signal(signal.SIGINT, self._handle)

    def restore(self) -> None:
        if self.previous is signal.default_int_handler:
            signal.signal(signal.SIGINT, self.previous)

    def _handle(self, signum, frame) -> None:
        self.seen = True
        raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    interrupt = _InterruptFlag()
    try:
        _quiet_libraries()
        parser = build_parser(_command_in(argv))
        # parse_known_args so `train vq/mdm` can hand their options on untouched; elsewhere extras are errors.
        args, extra = parser.parse_known_args(argv)
        if extra and not getattr(args, "_passthrough", False):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.extra = extra
        return COMMANDS[args._command].run(args)
    except (CliError, ValueError, FileNotFoundError, OSError) as exc:
        if debug:
            raise
        if interrupt.seen:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return INTERRUPTED
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:  # at any moment, imports included: one line, the shell's 128 + SIGINT
        if debug:
            raise
        print(f"{PROG}: interrupted", file=sys.stderr)
        return INTERRUPTED
    finally:
        interrupt.restore()

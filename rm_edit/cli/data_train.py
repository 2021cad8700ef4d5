"""``rm-edit data`` (shapes-world and Sudoku sets, pre-tokenised codes) and ``rm-edit train`` (hands over to a trainer)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the pipeline drags in diffusers; only the command functions import it
    import numpy as np
    import PIL.Image
    import torch

    from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline

import importlib

from rm_edit.files import one_line

from .options import USAGE_ERROR, CliError, SubParsers, non_negative_int, positive_int, wrap

# ---- data -----------------------------------------------------------------------------------------------
_DATA_EPILOG = """\
examples:
  rm-edit data shapes --out data/shapes_train --n 20000 --split train
  rm-edit data sudoku --out data/sudoku_test --n 500 --split test
  rm-edit data pretokenize data/shapes_train/manifest.jsonl --vq runs/vq/final --out data/train_codes.safetensors
  rm-edit data pretokenize data/magicbrush_train --preset magicbrush --vq runs/vq/final --out data/mb.safetensors
  accelerate launch --num_processes 8 -m rm_edit.cli data pretokenize hf:osunlp/MagicBrush --split train \
      --vq runs/vq/final --out data/mb.safetensors   (streamed; rows sharded; the same file as one process)
"""


def _world_set_arguments(parser, shared: str, items: str) -> None:
    """--out, --n, --split, --start: what every seeded world's ``data`` command takes."""
    parser.add_argument("--out", type=Path, required=True, metavar="DIR")
    parser.add_argument("--n", type=positive_int, required=True, metavar="N", help="number of examples")
    parser.add_argument("--split", choices=("train", "val", "test"), default="train",
                        help=f"which seeded split (default train); splits never share {shared}")
    parser.add_argument("--start", type=non_negative_int, default=0, metavar="INDEX",
                        help=f"first world index (default 0): a later start gives more {items} disjoint from a first set")

def add_data_parser(subparsers: SubParsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "data", help="make training data: shapes-world or Sudoku edits, pre-tokenised codes",
        description="Make training data.", epilog=_DATA_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="data_command", metavar="{shapes,sudoku,pretokenize}", required=True)
    s = sub.add_parser("shapes", help="write a synthetic shapes-world editing set (images, masks, manifest)",
                       description="Write N shapes-world editing examples to DIR (images/, masks/, manifest.jsonl).")
    _world_set_arguments(s, shared="scenes", items="edits")
    s.add_argument("--confusable", action="store_true",
                   help="only edits whose named shape shares its colour with another shape (the kind word decides)")
    s.add_argument("--edit-types", nargs="+", metavar="TYPE", default=None,
                   help="edit types to draw from (default: the classic five: recolour remove add replace move); "
                        "'all' = the whole language the shipped models know (partial-reference plural "
                        "replace-kind-colour relative-move null too)")
    u = sub.add_parser("sudoku", help="write a Sudoku revision set (board images, masks, manifest)",
                       description="Write N Sudoku examples to DIR (images/, masks/, manifest.jsonl): fix the "
                                   "mistakes, fill in the empty cells, or both; the solved board is the target.")
    _world_set_arguments(u, shared="a solved grid", items="examples")
    u.add_argument("--tasks", nargs="+", choices=("fix", "fill", "fill-and-fix"), metavar="TASK",
                   help="only these tasks (fix, fill, fill-and-fix; default all three)")
    t = sub.add_parser("pretokenize", help="encode a manifest's images to VQ codes for training",
                       description="Encode every source/target image of MANIFEST with the VQ model in DIR "
                                   "into FILE.safetensors (plus FILE.json with ids and instructions).")
    t.add_argument("manifest", metavar="MANIFEST.jsonl|DATASET", type=Path,
                   help="a manifest, or a Hugging Face dataset (save_to_disk / parquet folder; hf:NAME when online)")
    t.add_argument("--vq", type=Path, required=True, metavar="DIR", help="a saved diffusers VQModel folder")
    t.add_argument("--out", type=Path, required=True, metavar="FILE.safetensors")
    t.add_argument("--cell-local", action="store_true",
                   help="encode each VQ cell on its own (local codes; the shapes tokenizer is used this way)")
    from rm_edit.data.hf_cli import add_dataset_options

    add_dataset_options(t)
    return p


def run_data(args: argparse.Namespace) -> int:
    if args.data_command == "shapes":
        from rm_edit.data.shapes import has_confusable_distractor, write_shapes_dataset

        select = has_confusable_distractor if args.confusable else None
        config = None
        if args.edit_types:
            from rm_edit.data.shapes import EDIT_TYPES, ShapesWorldConfig

            types = EDIT_TYPES if args.edit_types == ["all"] else tuple(args.edit_types)
            unknown = [t for t in types if t not in EDIT_TYPES]
            if unknown:
                raise CliError(f"--edit-types: unknown {', '.join(unknown)} (known: all, {', '.join(EDIT_TYPES)})")
            config = ShapesWorldConfig(edit_types=types)
        print(write_shapes_dataset(args.out, args.n, split=args.split, start=args.start, select=select, config=config))
        return 0
    if args.data_command == "sudoku":
        from rm_edit.data.sudoku import SudokuWorldConfig, write_sudoku_dataset

        config = SudokuWorldConfig(tasks=tuple(dict.fromkeys(args.tasks))) if args.tasks else None
        print(write_sudoku_dataset(args.out, args.n, split=args.split, config=config, start=args.start))
        return 0
    from diffusers import VQModel

    from rm_edit.data.pretokenize import pretokenize_manifest
    from rm_edit.vq import as_vq_tokenizer

    from rm_edit.data.hf_cli import is_dataset, pretokenize_from_args

    if args.out.suffix != ".safetensors":
        raise CliError(f"--out {args.out}: expected a .safetensors file")
    dataset = is_dataset(args.manifest, args)
    if not dataset and not args.manifest.is_file():
        raise CliError(f"manifest not found: {args.manifest}")
    if not (args.vq / "config.json").is_file():
        raise CliError(f"--vq {args.vq}: not a saved VQModel folder (no config.json)")
    try:
        vq = VQModel.from_pretrained(args.vq).eval()
    except Exception as exc:
        raise CliError(f"cannot load VQ model from {args.vq}: {one_line(exc)}") from None
    # The folder's own mode (VQTokenizer config); --cell-local sets it for a folder saved without one.
    vq = as_vq_tokenizer(vq, True if args.cell_local else None)
    if dataset:
        return pretokenize_from_args(args, vq)
    print(pretokenize_manifest(args.manifest, vq, args.out))
    return 0


# ---- train ----------------------------------------------------------------------------------------------
_TRAINERS = {"vq": "rm_edit.training.train_vq", "mdm": "rm_edit.training.train_mdm"}


def add_train_parser(subparsers: SubParsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train", help="train the image tokenizer (vq) or the editing model (mdm)",
        description=wrap("Train a model; everything after `vq` / `mdm` goes to that trainer "
                          "(see `rm-edit train vq --help`)."),
        epilog="examples:\n  rm-edit train vq --smoke --out runs/vq\n"
               "  rm-edit train mdm --config configs/mdm_grid_rm.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="trainer", metavar="{vq,mdm}", required=True)
    for name, help_text in (("vq", "train the VQ image tokenizer"), ("mdm", "train the mask diffusion editor")):
        # add_help=False: `--help` and every other option belong to the trainer's own parser.
        sub.add_parser(name, help=help_text, add_help=False).set_defaults(_passthrough=True)
    return p


def run_train(args: argparse.Namespace) -> int:
    trainer = importlib.import_module(_TRAINERS[args.trainer])
    try:
        trainer.main(list(args.extra))
    except SystemExit as exc:  # the trainer's argparse: --help (0) or its own usage error (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else USAGE_ERROR)
    return 0



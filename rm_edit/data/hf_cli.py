"""Command-line glue for Hugging Face datasets in `rm-edit data pretokenize` (options, detection, the call)."""

from __future__ import annotations

import argparse
from pathlib import Path

PRESET_NAMES = ("magicbrush", "instructpix2pix", "ultraedit")


def add_dataset_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("Hugging Face datasets")
    g.add_argument("--preset", choices=PRESET_NAMES, help="column preset (default: detected from the columns)")
    g.add_argument("--columns", metavar="ROLE=COL,...",
                   help="columns by role: source, instruction, target, mask, id, edit_type, turn, "
                        "source_caption, target_caption (overrides the preset)")
    g.add_argument("--split", metavar="NAME", help="dataset split (default: test, else train)")
    g.add_argument("--offline", action="store_true", help="never use the network (also HF_HUB_OFFLINE=1)")


def dataset_spec(path: Path) -> str:
    """``hf:NAME`` -> ``NAME`` (a hub name); a path stays a path."""
    text = str(path)
    return text[3:] if text.startswith("hf:") else text


def is_dataset(path: Path, args: argparse.Namespace) -> bool:
    """A hub name (``hf:NAME``), a save_to_disk / parquet folder, or anything given dataset options."""
    from .hf_datasets import looks_like_dataset

    return (str(path).startswith("hf:") or looks_like_dataset(path)
            or bool(getattr(args, "columns", None) or getattr(args, "preset", None)))


def pretokenize_from_args(args: argparse.Namespace, vq) -> int:
    from ..distributed import Shard
    from .pretokenize import pretokenize_dataset

    shard = Shard.from_env()
    out = pretokenize_dataset(dataset_spec(args.manifest), vq, args.out, columns=args.columns, preset=args.preset,
                              split=args.split, offline=args.offline, shard=shard)
    if shard.is_main:
        print(out)
    return 0

"""Code caches of the shapes world straight from its scenes (no PNGs, no VQ pass).

The exact tokenizer maps every cell to its (background, colour, kind, part) id, so a scene's codes are
:meth:`ShapesWorld.codes`; ``tests/test_exact_vq.py`` checks they equal the VQ's own encoding of the
rendered images. Writing 200k training edits this way takes seconds instead of an hour of encoding.

    python -m rm_edit.training.world_codes --split train --n 200000 --out runs/codes/train.safetensors
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from rm_edit.data.pretokenize import save_code_cache
from rm_edit.data.shapes import CLASSIC_EDIT_TYPES, ShapesWorld, ShapesWorldConfig
from rm_edit.data.shapes_language import AMBIGUOUS_NULL_RATE

CAPTION = "caption"  # the edit type of a text-to-image example: no source image, the caption determines the target


def write_code_rows(out: str | Path, rows: Iterable[tuple[np.ndarray, np.ndarray, dict]], header: dict) -> Path:
    """A code cache (``load_code_cache`` format) of a world's ``rows``: (source codes, target codes, the row's
    fields: ``ids``, ``instructions``, ``edit_types`` and any more, each a list in the JSON), then ``header``."""
    sources, targets, fields = [], [], {}
    for source, target, row in rows:
        sources.append(source)
        targets.append(target)
        for key, value in row.items():
            fields.setdefault(key, []).append(value)
    return save_code_cache(out, torch.from_numpy(np.stack(sources)), torch.from_numpy(np.stack(targets)),
                           {**fields, **header})


def write_world_code_cache(out: str | Path, split: str, n: int, start: int = 0, progress: bool = True, *,
                           edit_types: tuple[str, ...] = CLASSIC_EDIT_TYPES, captions: int = 0,
                           ambiguous_null_rate: float = AMBIGUOUS_NULL_RATE) -> Path:
    """Codes of edits ``start .. start + n - 1`` of ``split`` (of ``edit_types``, null edits ambiguous at
    ``ambiguous_null_rate``), then ``captions`` text-to-image examples (``edit_type`` "caption", source = target,
    which training never shows), in the ``load_code_cache`` format."""
    world = ShapesWorld(ShapesWorldConfig(edit_types=tuple(edit_types), ambiguous_null_rate=ambiguous_null_rate),
                        split=split)

    def rows():
        for i in tqdm(range(start, start + n), desc=f"world codes ({split})", disable=not progress, unit="ex"):
            source, target, instruction, edit_type, _ = world.symbolic(i)
            yield ShapesWorld.codes(source), ShapesWorld.codes(target), {
                "ids": f"{split}_{i:06d}", "instructions": instruction, "edit_types": edit_type}
        for i in tqdm(range(captions), desc=f"world captions ({split})", disable=not progress, unit="ex"):
            scene, text = world.caption_example(i)
            codes = ShapesWorld.codes(scene)
            yield codes, codes, {"ids": f"{split}_caption_{i:06d}", "instructions": text, "edit_types": CAPTION}

    return write_code_rows(out, rows(), {"split": split, "start": start, "ambiguous_null_rate": ambiguous_null_rate})


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", default="train")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--edit-types", nargs="+", default=list(CLASSIC_EDIT_TYPES))
    p.add_argument("--captions", type=int, default=0, help="text-to-image examples after the edits")
    p.add_argument("--ambiguous-null-rate", type=float, default=AMBIGUOUS_NULL_RATE,
                   help=f"how often a null edit names one of several shapes (default {AMBIGUOUS_NULL_RATE}: the test split's)")
    a = p.parse_args(argv)
    print(write_world_code_cache(a.out, a.split, a.n, a.start, edit_types=tuple(a.edit_types), captions=a.captions,
                                 ambiguous_null_rate=a.ambiguous_null_rate))


if __name__ == "__main__":
    main()

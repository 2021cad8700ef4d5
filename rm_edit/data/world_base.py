"""What the synthetic worlds (shapes, Sudoku) share: an indexable, seeded generator of a split, and the writer of
its examples as PNGs plus a manifest.

A world's example ``i`` of split ``s`` depends only on (split, i, config); the world is unbounded unless built
with ``length``. Examples have ``source`` / ``target`` (uint8 (H, W, 3)), ``mask`` (bool (H, W)), ``instruction``,
``edit_type`` and ``id``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .manifest import write_manifest
from .records import EditRecord


class SeededWorld:
    """The split / length bookkeeping of a world; subclasses set ``split_seeds`` and ``config_class``."""

    split_seeds: Mapping[str, int] = {}
    config_class: type = object

    def __init__(self, config=None, split: str = "train", *, length: int | None = None) -> None:
        if split not in self.split_seeds:
            raise ValueError(f"unknown split '{split}' (known: {', '.join(self.split_seeds)})")
        self.config = config or self.config_class()
        self.split = split
        self.length = length

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError(f"{type(self).__name__} is unbounded; construct it with length=N")
        return self.length

    def _check_index(self, index: int) -> int:
        index = int(index)
        if index < 0 or (self.length is not None and index >= self.length):
            raise IndexError(f"index {index} out of range")
        return index


def write_world_examples(out_dir: str | Path, examples: Iterable[Any],
                         metadata: Callable[[Any], dict | None] | None = None) -> Path:
    """Write each example as ``images/{id}_source.png``, ``images/{id}_target.png`` and ``masks/{id}.png`` (white
    = the region that changes) plus ``manifest.jsonl`` (``metadata(example)`` as each row's metadata); returns
    the manifest path."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    records: list[EditRecord] = []
    for ex in examples:
        source = out_dir / "images" / f"{ex.id}_source.png"
        target = out_dir / "images" / f"{ex.id}_target.png"
        mask = out_dir / "masks" / f"{ex.id}.png"
        # Tiny flat images: fast compression loses almost nothing in size.
        Image.fromarray(ex.source).save(source, compress_level=1)
        Image.fromarray(ex.target).save(target, compress_level=1)
        Image.fromarray(ex.mask.astype(np.uint8) * 255).save(mask, compress_level=1)
        records.append(EditRecord(ex.id, source, ex.instruction, target, mask, ex.edit_type,
                                  metadata=metadata(ex) if metadata else None))
    return write_manifest(out_dir / "manifest.jsonl", records)

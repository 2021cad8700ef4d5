"""Code caches of the Sudoku world straight from its boards (no PNGs, no VQ pass), for MDM training.

The Sudoku VQ (``sudoku_vq``) encodes a board image to exactly its cell codes, so a puzzle's codes are its
``source`` / ``target`` boards; ``tests/test_sudoku_vq.py`` checks the two agree. Same format as
``world_codes`` (``rm_edit.data.pretokenize.load_code_cache``), plus each example's wrong digits and empty cells.

    python -m rm_edit.training.sudoku_codes --split train --n 200000 --out runs/sudoku_codes/train.safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm.auto import tqdm

from rm_edit.data.sudoku import SUDOKU_TASKS, SudokuWorld, SudokuWorldConfig

from .world_codes import write_code_rows


def write_sudoku_code_cache(out: str | Path, split: str, n: int, start: int = 0, progress: bool = True, *,
                            tasks: tuple[str, ...] = SUDOKU_TASKS) -> Path:
    """Codes of examples ``start .. start + n - 1`` of ``split`` (of ``tasks``) in the ``load_code_cache``
    format: ``source`` / ``target`` int16 (n, 9, 9); the JSON beside it has ids, instructions, edit types
    (the task), ``wrong_digits`` and ``blanks``."""
    world = SudokuWorld(SudokuWorldConfig(tasks=tuple(tasks)), split=split)

    def rows():
        for i in tqdm(range(start, start + n), desc=f"sudoku codes ({split})", disable=not progress, unit="ex"):
            p = world.puzzle(i)
            yield p.source, p.target, {"ids": p.id, "instructions": p.instruction, "edit_types": p.task,
                                       "wrong_digits": p.wrong, "blanks": p.blanks}

    return write_code_rows(out, rows(), {"split": split, "start": start, "world": "sudoku"})


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", default="train", choices=("train", "val", "test"))
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--tasks", nargs="+", default=list(SUDOKU_TASKS), choices=SUDOKU_TASKS)
    a = p.parse_args(argv)
    print(write_sudoku_code_cache(a.out, a.split, a.n, a.start, tasks=tuple(a.tasks)))


if __name__ == "__main__":
    main()

"""Which mistakes survive a Sudoku run? For every board of a finished ``rm-edit eval`` / scaling run that is not
exact, the wrong cells left in its output and the units (rows, columns, boxes) that still break a rule. No model
is run: the output images are decoded to cells (exact tokenizer) and compared with the solutions.

    python benchmarks/sudoku_leftover_errors.py RUN_DIR [--split test] [--n 256] [--tasks fix]

The finding it was written for (README, "What this shows, honestly"): the RM models' leftover fix mistakes are
digits swapped inside one row and one box, which only a column shows, and the model keeps them with
p(digit) ~ 0.99, so no re-mask margin or extra turn re-opens them.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from rm_edit.data.sudoku import SudokuWorld
from rm_edit.data.sudoku_cells import code_digits, encode_board

UNIT_NAMES = ("row", "column", "box")


def broken_units(digits: np.ndarray) -> dict[str, int]:
    """How many rows, columns and boxes of a (9, 9) board of digits (0 = empty) do not hold 1-9 once."""
    boxes = digits.reshape(3, 3, 3, 3).transpose(0, 2, 1, 3).reshape(9, 9)
    full = np.arange(1, 10)
    return {name: int(sum(not np.array_equal(np.sort(u), full) for u in units))
            for name, units in zip(UNIT_NAMES, (digits, digits.T, boxes))}


def leftover(board: np.ndarray, solution: np.ndarray) -> dict:
    """The wrong cells of ``board`` (digits) against ``solution``, the broken units, and whether every wrong row
    is a permutation of its true digits (a swap inside the row)."""
    wrong = (board != solution) & (board != 0)
    rows = sorted(set(np.nonzero(wrong)[0].tolist()))
    row_swaps = all(sorted(board[r][wrong[r]]) == sorted(solution[r][wrong[r]]) for r in rows)
    return {"wrong": int(wrong.sum()), "blank": int((board == 0).sum()), "broken": broken_units(board),
            "row_swaps": bool(rows) and row_swaps}


def failure_kind(broken: dict[str, int]) -> str:
    """One line for what a wrong board still breaks."""
    if not any(broken.values()):
        return "a valid board, not the solution"
    if broken["row"] == broken["box"] == 0:
        return "rows and boxes valid, only columns broken"
    return "rows valid, columns and boxes broken" if broken["row"] == 0 else "a row broken"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, help="an eval run folder (its images/<id>.png)")
    p.add_argument("--split", default="test")
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--tasks", default="fix", help="comma list of tasks to look at (fix, fill, fill-and-fix)")
    args = p.parse_args(argv)
    tasks = set(args.tasks.split(","))
    world = SudokuWorld(split=args.split)
    seen, failed, kinds = 0, [], Counter()
    for i in range(args.n):
        puzzle = world.puzzle(i)
        if puzzle.task not in tasks:
            continue
        image = args.run_dir / "images" / f"{puzzle.id}.png"
        if not image.is_file():
            raise SystemExit(f"{image}: no output image for {puzzle.id} (is {args.run_dir} a finished run?)")
        seen += 1
        board = code_digits(encode_board(Image.open(image), exact=False))
        if np.array_equal(board, puzzle.solution):
            continue
        row = leftover(board, puzzle.solution)
        failed.append((puzzle, row))
        b = row["broken"]
        kinds[failure_kind(b)] += 1
    print(f"{args.run_dir}: {len(failed)} of {seen} {'/'.join(sorted(tasks))} boards not exact")
    for puzzle, row in failed:
        b = row["broken"]
        print(f"  {puzzle.id} (k {puzzle.wrong}, blanks {puzzle.blanks}): {row['wrong']} wrong, {row['blank']} empty"
              f" left; broken rows {b['row']}, columns {b['column']}, boxes {b['box']}"
              f"{'; every wrong row a swap of its own digits' if row['row_swaps'] else ''}")
    for name, count in kinds.most_common():
        print(f"{count:4d}  {name}")


if __name__ == "__main__":
    main()

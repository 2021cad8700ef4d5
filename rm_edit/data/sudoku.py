"""The Sudoku world: revision tasks on a board image, with the solved board as the exact target.

A solved grid (:mod:`rm_edit.data.sudoku_grids`, whose splits never share a grid) becomes a board of given clues
(black ink, always right), the player's written digits (blue ink) and empty cells; the target is the solution,
clues kept and every other cell written. Three tasks, each one instruction:

* ``fix`` ("fix the mistakes"): no empty cell; ``wrong`` written digits (1-24) differ from the solution;
* ``fill`` ("fill in the empty cells"): 20-50 empty cells, every written digit right;
* ``fill-and-fix``: both, 20-50 empty cells (at most what clues and wrong digits leave) and 1-12 wrong digits.

Example ``i`` of split ``s`` depends only on (split, i, config): its grid is ``solved_grid(s, i)`` and the task
is drawn from ``numpy.random.default_rng([SUDOKU_SPLIT_SEEDS[s], i, 1])``. Images and the exact cell codes:
:mod:`rm_edit.data.sudoku_cells`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from rm_edit.data.sudoku_cells import (BOARD_CELLS, CELL_PX, IMAGE_SIZE, board_codes, code_digits, given_cells,
                                      render_board)
from rm_edit.data.sudoku_grids import SUDOKU_SPLIT_SEEDS, conflict_cells, solved_grid
from rm_edit.data.world_base import SeededWorld, write_world_examples

SUDOKU_TASKS: tuple[str, ...] = ("fix", "fill", "fill-and-fix")
INSTRUCTIONS: dict[str, str] = {
    "fix": "fix the mistakes",
    "fill": "fill in the empty cells",
    "fill-and-fix": "fill in the empty cells and fix the mistakes",
}
EDIT_VERBS: tuple[str, ...] = tuple(sorted({text.split()[0] for text in INSTRUCTIONS.values()}))
MAX_EDIT_VERBS: int = max(sum(w in EDIT_VERBS for w in text.split()) for text in INSTRUCTIONS.values())  # 2


@dataclass(frozen=True)
class SudokuWorldConfig:
    """Ranges are inclusive (low, high). Empty cells never exceed the cells left after clues and wrong digits."""

    tasks: tuple[str, ...] = SUDOKU_TASKS
    clues: tuple[int, int] = (24, 32)
    fix_wrong: tuple[int, int] = (1, 24)
    fill_blanks: tuple[int, int] = (20, 50)
    fill_and_fix_wrong: tuple[int, int] = (1, 12)
    fill_and_fix_blanks: tuple[int, int] = (20, 50)

    def __post_init__(self) -> None:
        if not self.tasks or any(t not in SUDOKU_TASKS for t in self.tasks):
            raise ValueError(f"tasks must be some of {', '.join(SUDOKU_TASKS)}, got {self.tasks}")
        for name in ("clues", "fix_wrong", "fill_blanks", "fill_and_fix_wrong", "fill_and_fix_blanks"):
            low, high = getattr(self, name)
            if not 0 <= low <= high <= 81:
                raise ValueError(f"{name} must be 0 <= low <= high <= 81, got {(low, high)}")
        if self.clues[1] + max(self.fix_wrong[0], self.fill_and_fix_wrong[0]) > 81:
            raise ValueError("clues leave no room for the wrong digits")

    def ranges(self, task: str) -> tuple[tuple[int, int], tuple[int, int]]:
        """(wrong digits, empty cells) of a task."""
        return {"fix": (self.fix_wrong, (0, 0)), "fill": ((0, 0), self.fill_blanks),
                "fill-and-fix": (self.fill_and_fix_wrong, self.fill_and_fix_blanks)}[task]


@dataclass
class SudokuPuzzle:
    """One example without pixels: boards as (9, 9) cell codes (``rm_edit.data.sudoku_cells``)."""

    id: str
    task: str
    instruction: str
    solution: np.ndarray  # digits 1-9
    source: np.ndarray  # cell codes: clues, written digits (some wrong), empty cells
    target: np.ndarray  # cell codes: clues, every other cell written with the solution's digit
    clues: int
    wrong: int  # written digits that differ from the solution
    blanks: int  # empty cells

    @property
    def metadata(self) -> dict:
        return {"task": self.task, "wrong_digits": self.wrong, "blanks": self.blanks, "clues": self.clues}


@dataclass
class SudokuExample:
    source: np.ndarray  # uint8 (72, 72, 3)
    target: np.ndarray
    mask: np.ndarray  # bool (72, 72): the cells that change
    instruction: str
    edit_type: str
    id: str
    puzzle: SudokuPuzzle = field(repr=False)


class SudokuWorld(SeededWorld):
    """Indexable, deterministic generator of Sudoku revision examples (unbounded unless ``length``)."""

    split_seeds = SUDOKU_SPLIT_SEEDS
    config_class = SudokuWorldConfig
    config: SudokuWorldConfig

    def puzzle(self, index: int) -> SudokuPuzzle:
        """Example ``index`` as boards of cell codes."""
        index = self._check_index(index)
        solution = solved_grid(self.split, index)
        rng = np.random.default_rng([SUDOKU_SPLIT_SEEDS[self.split], index, 1])
        cfg = self.config
        task = cfg.tasks[int(rng.integers(len(cfg.tasks)))]
        (wrong_lo, wrong_hi), (blank_lo, blank_hi) = cfg.ranges(task)
        clues = int(rng.integers(cfg.clues[0], cfg.clues[1] + 1))
        wrong = int(rng.integers(wrong_lo, min(wrong_hi, 81 - clues) + 1))
        blanks = int(rng.integers(min(blank_lo, 81 - clues - wrong), min(blank_hi, 81 - clues - wrong) + 1))
        order = rng.permutation(81)  # clues first, then wrong digits, then empty cells
        given = np.zeros(81, dtype=bool)
        given[order[:clues]] = True
        digits = solution.reshape(-1).copy()
        wrong_cells = order[clues:clues + wrong]
        digits[wrong_cells] = (digits[wrong_cells] - 1 + rng.integers(1, 9, size=wrong)) % 9 + 1
        digits[order[clues + wrong:clues + wrong + blanks]] = 0
        source = board_codes(digits.reshape(9, 9), given.reshape(9, 9))
        target = board_codes(solution, given.reshape(9, 9))
        return SudokuPuzzle(f"sudoku_{self.split}_{index:06d}", task, INSTRUCTIONS[task], solution, source, target,
                            clues, wrong, blanks)

    def __getitem__(self, index: int) -> SudokuExample:
        p = self.puzzle(index)
        mask = np.kron(p.source != p.target, np.ones((CELL_PX, CELL_PX), dtype=bool))
        return SudokuExample(render_board(p.source), render_board(p.target), mask, p.instruction, p.task, p.id, p)

    @staticmethod
    def vocabulary() -> list[str]:
        """Every word an instruction can contain, sorted."""
        return sorted({w for text in INSTRUCTIONS.values() for w in text.split()})


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _digits(codes) -> np.ndarray:
    """(9, 9) digits (0 = empty) of a board's 81 cell codes (an array or a CPU tensor)."""
    return code_digits(np.asarray(codes).reshape(BOARD_CELLS, BOARD_CELLS))


MIN_CLUES = 17  # the fewest givens a Sudoku with one solution can have (McGuire, Tugemann, Civario 2012)


def puzzle_problem(codes) -> str | None:
    """Why a board's 81 cell codes are no Sudoku puzzle, in one line; None when they are one. Any 9x9 image reads
    as some cells, so the README's shapes scene at 72x72 read as a board of 8 given clues (5 of them in
    conflict) and came back with 73 of 81 cells repainted; the world's boards have 24-32 clues, never in conflict."""
    codes = np.asarray(codes).reshape(BOARD_CELLS, BOARD_CELLS)
    given = given_cells(codes)
    n = int(given.sum())
    if n < MIN_CLUES:
        return (f"it reads as {_plural(n, 'given clue')} (black digits), and a Sudoku has at least {MIN_CLUES}: is it "
                "a board drawn as the world draws them (rm-edit data sudoku writes some)?")
    clashes = conflict_cells(np.where(given, code_digits(codes), 0))
    if clashes:
        return f"{_plural(clashes, 'given clue')} of its {n} break the rules among themselves: no solution keeps them"
    return None


def cell_probe() -> tuple[np.ndarray, np.ndarray]:
    """(image, its cell codes) of one board with clues, written digits and empty cells: a model whose image
    tokenizer reads it back exactly reads boards as the world's cells, which the board checks need."""
    puzzle = SudokuWorld(split="test").puzzle(0)
    return render_board(puzzle.source), puzzle.source


def instruction_problem(codes, words) -> str | None:
    """Why an instruction (its normalized ``words``) asks for what board ``codes`` (81 cell codes) does not have,
    in one line; None when it fits. "fill" without "fix" on a board with no empty cell is such a request: the
    sudoku-rm model, asked it on a board with 5 wrong digits, re-masked them and wrote one back as an empty cell."""
    digits = _digits(codes)
    if "fill" in words and "fix" not in words and not (digits == 0).any():
        clashes = conflict_cells(digits)
        hint = (f"; {_plural(clashes, 'cell')} break the rules: to correct them say 'fix the mistakes'" if clashes
                else "; every digit already obeys the rules")
        return f"the board has no empty cells to fill{hint}"
    return None


def board_problem(codes) -> str | None:
    """What an edited board (81 cell codes) still leaves undone, one line; None for a valid, full board."""
    digits = _digits(codes)
    empty, clashes = int((digits == 0).sum()), conflict_cells(digits)
    parts = ([_plural(empty, "empty cell")] if empty else []) + ([f"{_plural(clashes, 'cell')} in conflict"] if clashes else [])
    return f"the edited board still has {' and '.join(parts)}" if parts else None


def write_sudoku_dataset(out_dir: str | Path, n: int, split: str = "train", config: SudokuWorldConfig | None = None,
                         progress: bool = True, *, start: int = 0) -> Path:
    """Write examples ``start .. start + n - 1`` as PNGs plus ``manifest.jsonl`` (the shapes layout:
    ``images/{id}_source.png``, ``images/{id}_target.png``, ``masks/{id}.png``, white = the cells that change);
    each row's ``metadata`` holds the task, wrong digits, empty cells and clues. Returns the manifest path."""
    world = SudokuWorld(config, split)
    examples = (world[i] for i in tqdm(range(start, start + n), desc=f"sudoku world ({split})", disable=not progress,
                                       unit="ex"))
    return write_world_examples(out_dir, examples, lambda ex: ex.puzzle.metadata)


__all__ = ["IMAGE_SIZE", "INSTRUCTIONS", "MIN_CLUES", "SUDOKU_TASKS", "SudokuExample", "SudokuPuzzle", "SudokuWorld",
           "SudokuWorldConfig", "write_sudoku_dataset"]

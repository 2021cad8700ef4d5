"""Solved 9x9 Sudoku grids: a seeded generator whose splits never share a grid, and the board rules.

Grid ``i`` of split ``s`` comes from ``numpy.random.default_rng([SUDOKU_SPLIT_SEEDS[s], i])`` (randomised
backtracking, row by row, restarted when a branch runs long), so it depends only on (split, i). A grid belongs
to exactly one split, decided by the hash of its canonical form (digits relabelled so that the first row reads
1-9, and the smaller of the grid and its transpose): each split's generator redraws until the grid is its own.
No grid of the test split, nor a relabelling or transpose of one, can therefore occur in train or val.

Boards are int arrays (..., 9, 9) of digits, 0 = an empty cell. The split seeds are fixed forever:

    train: 20_261_211    val: 20_261_212    test: 20_261_213
"""

from __future__ import annotations

import hashlib
import random

import numpy as np

SUDOKU_SPLIT_SEEDS: dict[str, int] = {"train": 20_261_211, "val": 20_261_212, "test": 20_261_213}
SIZE = 9

_ROW = np.repeat(np.arange(SIZE), SIZE)
_COL = np.tile(np.arange(SIZE), SIZE)
_BOX = (_ROW // 3) * 3 + _COL // 3
# The 27 units (rows, columns, boxes) as (27, 9) flat cell indices, and each cell's 20 peers.
UNITS = np.array([np.flatnonzero(_ROW == i) for i in range(SIZE)] + [np.flatnonzero(_COL == i) for i in range(SIZE)]
                 + [np.flatnonzero(_BOX == i) for i in range(SIZE)])
PEERS = np.array([[j for j in range(81) if j != i and (_ROW[i] == _ROW[j] or _COL[i] == _COL[j] or _BOX[i] == _BOX[j])]
                  for i in range(81)])
_RESTART_AFTER = 1000  # backtracking calls before a fresh shuffle (random fills have a heavy tail)


def _attempt(rnd: random.Random) -> list[int] | None:
    grid = [0] * 81
    rows, cols, boxes = [0] * 9, [0] * 9, [0] * 9
    budget = [_RESTART_AFTER]

    def place(i: int) -> bool:
        if i == 81:
            return True
        budget[0] -= 1
        if budget[0] < 0:
            return False
        r, c, b = i // 9, i % 9, int(_BOX[i])
        used = rows[r] | cols[c] | boxes[b]
        candidates = [d for d in range(1, 10) if not used >> d & 1]
        rnd.shuffle(candidates)
        for d in candidates:
            bit = 1 << d
            grid[i] = d
            rows[r] |= bit
            cols[c] |= bit
            boxes[b] |= bit
            if place(i + 1):
                return True
            rows[r] ^= bit
            cols[c] ^= bit
            boxes[b] ^= bit
        return False

    return grid if place(0) else None


def random_solved_grid(rnd: random.Random) -> np.ndarray:
    """A uniformly shuffled backtracking fill: an int64 (9, 9) valid solved grid."""
    while True:
        grid = _attempt(rnd)
        if grid is not None:
            return np.array(grid, dtype=np.int64).reshape(SIZE, SIZE)


def canonical_form(grid: np.ndarray) -> bytes:
    """The grid up to digit relabelling and transposition: relabel so the first row reads 1-9, for the grid
    and its transpose, and keep the smaller byte string."""
    def relabelled(g: np.ndarray) -> bytes:
        table = np.zeros(10, dtype=np.uint8)
        table[g[0]] = np.arange(1, 10)
        return table[g].tobytes()

    g = np.asarray(grid)
    return min(relabelled(g), relabelled(g.T))


def grid_split(grid: np.ndarray) -> str:
    """The one split a grid (and its relabellings and transpose) belongs to, by its canonical hash."""
    digest = hashlib.blake2b(canonical_form(grid), digest_size=8).digest()
    return tuple(SUDOKU_SPLIT_SEEDS)[int.from_bytes(digest, "big") % len(SUDOKU_SPLIT_SEEDS)]


def solved_grid(split: str, index: int) -> np.ndarray:
    """Grid ``index`` of ``split``: deterministic, valid, and of that split (see the module doc)."""
    if split not in SUDOKU_SPLIT_SEEDS:
        raise ValueError(f"unknown split '{split}' (known: {', '.join(SUDOKU_SPLIT_SEEDS)})")
    seed = int(np.random.default_rng([SUDOKU_SPLIT_SEEDS[split], int(index)]).integers(2**63))
    rnd = random.Random(seed)
    while True:
        grid = random_solved_grid(rnd)
        if grid_split(grid) == split:
            return grid


# ---- the rules -----------------------------------------------------------------------------------------
def _flat(board: np.ndarray) -> np.ndarray:
    board = np.asarray(board)
    if board.shape[-2:] != (SIZE, SIZE):
        raise ValueError(f"expected (..., 9, 9) boards, got shape {board.shape}")
    return board.reshape(*board.shape[:-2], 81)


def is_valid(board: np.ndarray) -> np.ndarray | bool:
    """Every cell filled and every row, column and box holds 1-9 once (bool per board)."""
    units = _flat(board)[..., UNITS]  # (..., 27, 9)
    ok = (np.sort(units, axis=-1) == np.arange(1, 10)).all(axis=(-1, -2))
    return bool(ok) if ok.ndim == 0 else ok


def conflict_cells(board: np.ndarray) -> np.ndarray | int:
    """Filled cells whose digit also stands in one of their 20 peers (row, column or box), per board."""
    flat = _flat(board)
    clash = (flat[..., PEERS] == flat[..., :, None]).any(-1) & (flat != 0)
    count = clash.sum(-1)
    return int(count) if count.ndim == 0 else count

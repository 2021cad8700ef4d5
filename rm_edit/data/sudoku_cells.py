"""A Sudoku board as an image, one 8x8 px cell per token, and its exact cell tokenizer.

Every cell is one of :data:`NUM_SUDOKU_CODES` exact patterns, its code:

* ``0``: an empty cell;
* ``1..9``: a given clue, digit 1-9 in black ink;
* ``10..18``: a written digit 1-9 (code ``9 + digit``) in blue ink.

A cell is white paper with a light grey line along its right and bottom edges (so the board shows its grid)
and a 5x7 px digit glyph, drawn pixel by pixel with no anti-aliasing. The board is 9x9 cells: 72x72 px.
:func:`render_board` draws codes, :func:`encode_board` reads them back (exactly, or the nearest pattern for a
decoder's output), so ``encode_board(render_board(codes)) == codes`` for every board.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

CELL_PX = 8
BOARD_CELLS = 9
IMAGE_SIZE = CELL_PX * BOARD_CELLS  # 72
NUM_SUDOKU_CODES = 19
BLANK = 0
WRITTEN_OFFSET = 9  # written digit d is code 9 + d

PAPER = (255, 255, 255)
GRID_LINE = (180, 180, 180)
GIVEN_INK = (0, 0, 0)
WRITTEN_INK = (20, 80, 230)

# 5x7 glyphs, '#' = ink; drawn at rows 0-6, columns 1-5 of the cell (row 7 and column 7 are the grid line).
_GLYPHS = {
    1: ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    2: (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    3: (".###.", "#...#", "....#", "..##.", "....#", "#...#", ".###."),
    4: ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    5: ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    6: ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    7: ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    8: (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    9: (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
}


def glyph(digit: int) -> np.ndarray:
    """Bool (8, 8) ink mask of ``digit`` inside a cell."""
    mask = np.zeros((CELL_PX, CELL_PX), dtype=bool)
    mask[0:7, 1:6] = np.array([[ch == "#" for ch in row] for row in _GLYPHS[digit]])
    return mask


@lru_cache(maxsize=None)
def _patterns() -> np.ndarray:
    cells = np.empty((NUM_SUDOKU_CODES, CELL_PX, CELL_PX, 3), dtype=np.uint8)
    cells[:] = PAPER
    cells[:, CELL_PX - 1, :] = GRID_LINE
    cells[:, :, CELL_PX - 1] = GRID_LINE
    for digit in range(1, 10):
        cells[digit][glyph(digit)] = GIVEN_INK
        cells[WRITTEN_OFFSET + digit][glyph(digit)] = WRITTEN_INK
    cells.setflags(write=False)
    return cells


def canonical_cells() -> np.ndarray:
    """Every cell pattern, indexed by code: uint8 (NUM_SUDOKU_CODES, 8, 8, 3)."""
    return _patterns().copy()


# ---- codes <-> digits ----------------------------------------------------------------------------------
def board_codes(digits: np.ndarray, given: np.ndarray) -> np.ndarray:
    """Cell codes of a board: ``digits`` (0 = empty) with ``given`` (bool) cells in clue ink, the rest written."""
    digits = np.asarray(digits, dtype=np.int64)
    if digits.min(initial=0) < 0 or digits.max(initial=0) > 9:
        raise ValueError("digits must lie in 0-9 (0 = empty)")
    return np.where(digits == 0, BLANK, np.where(np.asarray(given, dtype=bool), digits, WRITTEN_OFFSET + digits))


def code_digits(codes: np.ndarray) -> np.ndarray:
    """The digit of every cell code (0 = empty), whatever its ink."""
    codes = _check_codes(codes)
    return np.where(codes > WRITTEN_OFFSET, codes - WRITTEN_OFFSET, codes)


def given_cells(codes: np.ndarray) -> np.ndarray:
    """Bool: the cells holding a given clue (black ink)."""
    codes = _check_codes(codes)
    return (codes >= 1) & (codes <= 9)


def _check_codes(codes: np.ndarray) -> np.ndarray:
    codes = np.asarray(codes, dtype=np.int64)
    if codes.size and (codes.min() < 0 or codes.max() >= NUM_SUDOKU_CODES):
        raise ValueError(f"Sudoku cell codes must lie in [0, {NUM_SUDOKU_CODES})")
    return codes


# ---- image <-> codes -----------------------------------------------------------------------------------
def render_board(codes: np.ndarray) -> np.ndarray:
    """A (9, 9) board of cell codes -> uint8 (72, 72, 3) image."""
    codes = _check_codes(codes)
    if codes.shape != (BOARD_CELLS, BOARD_CELLS):
        raise ValueError(f"expected a (9, 9) board of cell codes, got shape {codes.shape}")
    cells = _patterns()[codes]  # (9, 9, 8, 8, 3)
    return np.ascontiguousarray(cells.transpose(0, 2, 1, 3, 4).reshape(IMAGE_SIZE, IMAGE_SIZE, 3))


def encode_board(image, exact: bool = True) -> np.ndarray:
    """A 72x72 board image (PIL or uint8 array) -> its (9, 9) cell codes.

    ``exact``: every cell must be one of the patterns pixel for pixel (a one-line ValueError names the first
    cell that is not); else each cell gets the nearest pattern (squared RGB distance), as for a decoder's
    output."""
    arr = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    if arr.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise ValueError(f"a Sudoku board image is {IMAGE_SIZE}x{IMAGE_SIZE} RGB, got shape {arr.shape}")
    cells = arr.reshape(BOARD_CELLS, CELL_PX, BOARD_CELLS, CELL_PX, 3).transpose(0, 2, 1, 3, 4)
    cells = cells.reshape(BOARD_CELLS, BOARD_CELLS, -1).astype(np.int32)
    patterns = _patterns().reshape(NUM_SUDOKU_CODES, -1).astype(np.int32)
    distance = ((cells[:, :, None, :] - patterns[None, None]) ** 2).sum(-1)  # (9, 9, 19)
    codes = distance.argmin(-1).astype(np.int64)
    if exact:
        off = np.argwhere(distance.min(-1) != 0)
        if len(off):
            r, c = off[0]
            raise ValueError(f"cell (row {r + 1}, column {c + 1}) is not a Sudoku cell pattern "
                             f"({len(off)} such cells); use exact=False to read the nearest patterns")
    return codes

"""The Sudoku world: solved grids whose splits never meet, board images with an exact cell tokenizer, the three
tasks, and `rm-edit data sudoku`."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from PIL import Image

from rm_edit.cli import main
from rm_edit.data.manifest import load_image, load_mask, read_manifest
from rm_edit.data.sudoku import INSTRUCTIONS, SUDOKU_TASKS, SudokuWorld, SudokuWorldConfig
from rm_edit.data.sudoku_cells import (NUM_SUDOKU_CODES, board_codes, canonical_cells, code_digits, encode_board,
                                       given_cells, render_board)
from rm_edit.data.sudoku_grids import canonical_form, grid_split, is_valid, solved_grid

N = 120


def test_grids_are_valid_deterministic_and_never_shared_between_splits():
    train = [solved_grid("train", i) for i in range(N)]
    test = [solved_grid("test", i) for i in range(N)]
    assert all(is_valid(g) for g in train + test)
    np.testing.assert_array_equal(solved_grid("test", 5), test[5])
    assert {grid_split(g) for g in train} == {"train"} and {grid_split(g) for g in test} == {"test"}
    # Not even a digit relabelling or the transpose of a test grid is among the training grids.
    assert not {canonical_form(g) for g in train} & {canonical_form(g) for g in test}
    assert len({g.tobytes() for g in train}) == N  # and the grids differ from one another
    relabel = np.array([0, 9, 8, 7, 6, 5, 4, 3, 2, 1])
    assert canonical_form(relabel[test[0]].T) == canonical_form(test[0])


def test_a_cell_is_drawn_pixel_by_pixel():
    board = np.zeros((9, 9), dtype=np.int64)
    board[0, 0] = 1  # given 1
    board[0, 1] = 10 + 0  # written 1 (code 9 + 1)
    img = render_board(board)
    assert img.shape == (72, 72, 3) and img.dtype == np.uint8
    # The glyph '1' has ink at glyph column 2 of row 0, i.e. cell column 3; columns 1-2 of row 0 are paper.
    assert tuple(img[0, 3]) == (0, 0, 0) and tuple(img[0, 2]) == (255, 255, 255)
    assert tuple(img[0, 8 + 3]) == (20, 80, 230)  # the same pixel of the written 1, in blue
    assert tuple(img[7, 0]) == (180, 180, 180) and tuple(img[0, 7]) == (180, 180, 180)  # the grid line
    assert tuple(img[0, 2 * 8 + 3]) == (255, 255, 255)  # an empty cell
    colours = Counter(map(tuple, img.reshape(-1, 3)))
    assert set(colours) == {(0, 0, 0), (20, 80, 230), (180, 180, 180), (255, 255, 255)}  # no anti-aliasing
    # The glyph "1" has 1 + 2 + 1 + 1 + 1 + 1 + 3 = 10 ink pixels.
    assert colours[(0, 0, 0)] == colours[(20, 80, 230)] == 10


def test_the_cell_tokenizer_is_exact():
    cells = canonical_cells()
    assert cells.shape == (NUM_SUDOKU_CODES, 8, 8, 3) == (19, 8, 8, 3)
    assert len({c.tobytes() for c in cells}) == 19
    world = SudokuWorld(split="val")
    for i in range(12):
        p = world.puzzle(i)
        for codes in (p.source, p.target):
            img = render_board(codes)
            np.testing.assert_array_equal(encode_board(img), codes)
            np.testing.assert_array_equal(render_board(encode_board(Image.fromarray(img))), img)
    # A pixel off the patterns: refused naming the cell, or read as the nearest pattern.
    img = render_board(p.target)
    img[10, 20] = 128
    with pytest.raises(ValueError, match=r"cell \(row 2, column 3\)"):
        encode_board(img)
    np.testing.assert_array_equal(encode_board(img, exact=False), p.target)
    with pytest.raises(ValueError, match="72x72"):
        encode_board(np.zeros((64, 64, 3), np.uint8))


def test_codes_and_digits():
    digits = np.array([[5, 0, 3] + [0] * 6] + [[0] * 9] * 8)
    given = np.zeros((9, 9), bool)
    given[0, 0] = True
    codes = board_codes(digits, given)
    assert codes[0, :3].tolist() == [5, 0, 12]  # given 5, empty, written 3 (9 + 3)
    np.testing.assert_array_equal(code_digits(codes), digits)
    np.testing.assert_array_equal(given_cells(codes), given)


@pytest.mark.parametrize("task", SUDOKU_TASKS)
def test_each_task_is_a_corrupted_solution(task):
    world = SudokuWorld(SudokuWorldConfig(tasks=(task,)), split="test")
    for i in range(25):
        p = world.puzzle(i)
        ex = world[i]
        assert p.task == ex.edit_type == task and p.instruction == INSTRUCTIONS[task]
        assert is_valid(p.solution)
        source, target = code_digits(p.source), code_digits(p.target)
        np.testing.assert_array_equal(target, p.solution)
        given = given_cells(p.source)
        np.testing.assert_array_equal(given, given_cells(p.target))  # clues stay clues, everything else is written
        assert (source[given] == p.solution[given]).all() and 24 <= given.sum() == p.clues <= 32
        wrong = (source != 0) & (source != p.solution)
        assert wrong.sum() == p.wrong and (source == 0).sum() == p.blanks
        low, high = {"fix": (1, 24), "fill": (0, 0), "fill-and-fix": (1, 12)}[task]
        assert low <= p.wrong <= high
        if task == "fix":
            assert p.blanks == 0
        else:
            assert 20 <= p.blanks <= min(50, 81 - p.clues - p.wrong)  # the cells left after clues and wrong digits
        # The mask is the changed cells, 8x8 px each.
        assert ex.mask.sum() == 64 * (p.wrong + p.blanks)
        np.testing.assert_array_equal(ex.mask[::8, ::8], p.source != p.target)


def test_data_sudoku_writes_a_manifest(tmp_path, capsys):
    out = tmp_path / "sudoku"
    assert main(["data", "sudoku", "--out", str(out), "--n", "6", "--split", "test", "--start", "3"]) == 0
    records, errors = read_manifest(out / "manifest.jsonl", strict=True)
    assert not errors and [r.id for r in records] == [f"sudoku_test_{i:06d}" for i in range(3, 9)]
    world = SudokuWorld(split="test")
    for r in records:
        p = world.puzzle(int(r.id[-6:]))
        np.testing.assert_array_equal(encode_board(load_image(r.source)), p.source)
        np.testing.assert_array_equal(encode_board(load_image(r.target)), p.target)
        np.testing.assert_array_equal(load_mask(r.mask, (72, 72))[::8, ::8], p.source != p.target)
        assert r.edit_type == p.task and r.instruction == p.instruction
        assert r.metadata == {"task": p.task, "wrong_digits": p.wrong, "blanks": p.blanks, "clues": p.clues}
    assert main(["data", "sudoku", "--out", str(tmp_path / "fix"), "--n", "3", "--tasks", "fix"]) == 0
    assert {r.edit_type for r in read_manifest(tmp_path / "fix" / "manifest.jsonl")[0]} == {"fix"}


def test_every_world_board_is_a_puzzle_the_pipeline_accepts():
    """The world's boards have 24-32 given clues, never in conflict: none is refused as no puzzle."""
    from rm_edit.data.sudoku import MIN_CLUES, SudokuWorld, puzzle_problem

    assert MIN_CLUES == 17
    for split in ("train", "test"):
        world = SudokuWorld(split=split)
        assert all(puzzle_problem(world.puzzle(i).source) is None for i in range(300))

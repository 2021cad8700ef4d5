"""rm_edit.metrics.sudoku on hand-made boards; every expected value is worked out by hand in the comments."""

from __future__ import annotations

import numpy as np
import pytest

from rm_edit.metrics.sudoku import (BUCKET_SCORE, HARD_BUCKETS, board_bucket, changed_digits, changed_givens,
                                    exact_board, k_bucket, replay_mistakes, score_board, summarize_boards,
                                    target_score_mean, valid_fewest_changes)

# A valid solved grid, typed by hand (rows are shifts of 1-9 by 3, 3, then 1 between bands).
SOLUTION = np.array([
    [1, 2, 3, 4, 5, 6, 7, 8, 9],
    [4, 5, 6, 7, 8, 9, 1, 2, 3],
    [7, 8, 9, 1, 2, 3, 4, 5, 6],
    [2, 3, 4, 5, 6, 7, 8, 9, 1],
    [5, 6, 7, 8, 9, 1, 2, 3, 4],
    [8, 9, 1, 2, 3, 4, 5, 6, 7],
    [3, 4, 5, 6, 7, 8, 9, 1, 2],
    [6, 7, 8, 9, 1, 2, 3, 4, 5],
    [9, 1, 2, 3, 4, 5, 6, 7, 8],
])
# Columns 0 and 1 swapped (a permutation inside a stack): valid too, and it differs in those 18 cells.
SWAPPED = SOLUTION[:, [1, 0, 2, 3, 4, 5, 6, 7, 8]]
NO_GIVENS = np.zeros((9, 9), dtype=bool)


def test_the_solution_scores_perfectly():
    row = score_board(SOLUTION, SOLUTION, SOLUTION, NO_GIVENS, steps=[SOLUTION, SOLUTION])
    assert row == {"sudoku_exact": 1.0, "sudoku_valid": 1.0, "sudoku_conflicts": 0, "sudoku_changed_givens": 0,
                   "sudoku_changed_digits": 0, "sudoku_valid_fewest_changes": 1.0, "sudoku_replays": 0,
                   "sudoku_wrong": 0, "sudoku_blanks": 0, "sudoku_k_bucket": "k 0",
                   "sudoku_bucket": "no edit"}


def test_one_wrong_digit():
    board = SOLUTION.copy()
    board[0, 0] = 2  # the solution has 1; a 2 already stands at (0, 1) in its row and box and at (3, 0) in its column
    row = score_board(board, board, SOLUTION, NO_GIVENS)
    assert row["sudoku_conflicts"] == 3  # cells (0, 0), (0, 1), (3, 0)
    assert row["sudoku_valid"] == 0.0 and row["sudoku_exact"] == 0.0
    assert row["sudoku_wrong"] == 1 and row["sudoku_k_bucket"] == "k 1-12" and row["sudoku_replays"] is None
    # Repairing it changes one source digit, as the solution does: the fewest changes.
    assert changed_digits(board, SOLUTION) == 1 and valid_fewest_changes(board, SOLUTION, SOLUTION, NO_GIVENS)


def test_an_empty_cell_is_no_conflict_but_not_valid():
    board = SOLUTION.copy()
    board[4, 4] = 0
    row = score_board(board, board, SOLUTION, NO_GIVENS)
    assert (row["sudoku_conflicts"], row["sudoku_valid"], row["sudoku_blanks"]) == (0, 0.0, 1)


def test_another_valid_completion_of_the_empty_cells_counts_as_fewest_changes():
    source = SOLUTION.copy()
    source[:, :2] = 0  # columns 0 and 1 empty: both the solution and SWAPPED complete the board
    row = score_board(source, SWAPPED, SOLUTION, NO_GIVENS)
    assert row["sudoku_exact"] == 0.0 and row["sudoku_valid"] == 1.0
    assert row["sudoku_changed_digits"] == 0 and row["sudoku_valid_fewest_changes"] == 1.0
    assert row["sudoku_blanks"] == 18 and row["sudoku_wrong"] == 0


def test_a_valid_board_that_rewrites_more_than_the_mistakes_is_not_the_fewest_changes():
    source = SOLUTION.copy()
    source[0, 0] = 2  # one wrong written digit
    given = NO_GIVENS.copy()
    given[8, 1] = given[8, 8] = True  # clues 1 at (8, 1) and 8 at (8, 8)
    # SWAPPED keeps the 2 at (0, 0) and changes rows 1-8 of column 0 (8 cells) and all of column 1 (9 cells).
    assert changed_digits(source, SWAPPED) == 17
    assert changed_givens(source, SWAPPED, given) == 1  # the clue at (8, 1): 1 -> 9
    assert changed_givens(source, SOLUTION, given) == 0
    assert not valid_fewest_changes(source, SWAPPED, SOLUTION, given)
    assert valid_fewest_changes(source, SOLUTION, SOLUTION, given)
    assert not exact_board(SWAPPED, SOLUTION) and exact_board(SOLUTION, SOLUTION)


def test_replay_mistakes_count_wrong_digits_taken_again():
    boards = [SOLUTION.copy() for _ in range(6)]
    # Cell (0, 0), solution 1: 2, empty, 2 (replay), 3 (new, wrong), 2 (replay), 1 (right)  -> 2
    for t, d in enumerate([2, 0, 2, 3, 2, 1]):
        boards[t][0, 0] = d
    # Cell (1, 1), solution 5: 5, 5, empty, 5, 5, 5: taking the right digit again is no mistake  -> 0
    boards[2][1, 1] = 0
    # Cell (2, 2), solution 9: 9, 3 (new, wrong), 3 (kept: not taken again), empty, 3 (replay), 9  -> 1
    for t, d in enumerate([9, 3, 3, 0, 3, 9]):
        boards[t][2, 2] = d
    assert replay_mistakes(boards, SOLUTION) == 3
    assert replay_mistakes(boards[:3], SOLUTION) == 1  # only the first replay of (0, 0) so far


@pytest.mark.parametrize("k, bucket", [(0, "k 0"), (1, "k 1-12"), (12, "k 1-12"), (13, "k 13-24"), (24, "k 13-24"),
                                       (25, "k 25+")])
def test_k_buckets(k, bucket):
    assert k_bucket(k) == bucket


def test_summary_per_task_and_bucket():
    rows = [
        {"edit_type": "fix", "sudoku_k_bucket": "k 1-12", "sudoku_exact": 1.0, "sudoku_replays": 2},
        {"edit_type": "fix", "sudoku_k_bucket": "k 13-24", "sudoku_exact": 0.0, "sudoku_replays": 0},
        {"edit_type": "fill", "sudoku_k_bucket": "k 0", "sudoku_exact": 1.0, "sudoku_replays": None},
    ]
    s = summarize_boards(rows)
    assert s["all"]["n"] == 3 and s["all"]["sudoku_exact"] == pytest.approx(2 / 3)
    assert s["all"]["sudoku_replays"] == 1.0  # (2 + 0) / 2: the row without a count is left out
    assert s["by_task"]["fix"]["sudoku_exact"] == 0.5 and s["by_task"]["fill"]["sudoku_replays"] is None
    assert list(s["by_k_bucket"]) == ["k 0", "k 1-12", "k 13-24"]
    assert s["by_k_bucket"]["k 13-24"] == {"n": 1, "sudoku_exact": 0.0, "sudoku_valid": None, "sudoku_conflicts": None,
                                           "sudoku_changed_givens": None, "sudoku_changed_digits": None,
                                           "sudoku_valid_fewest_changes": None, "sudoku_replays": 0.0}


@pytest.mark.parametrize("wrong, blanks, bucket", [
    (1, 0, "fix k 1-12"), (12, 0, "fix k 1-12"), (13, 0, "fix k 13-24"), (24, 0, "fix k 13-24"), (25, 0, "fix k 25+"),
    (0, 20, "fill"), (0, 50, "fill"), (1, 20, "fill-and-fix <40 blanks"), (12, 39, "fill-and-fix <40 blanks"),
    (1, 40, "fill-and-fix 40+ blanks"), (12, 50, "fill-and-fix 40+ blanks"), (0, 0, "no edit")])
def test_buckets_read_the_task_off_the_source(wrong, blanks, bucket):
    assert board_bucket(wrong, blanks) == bucket


def test_the_hard_buckets_and_their_target_scores():
    assert HARD_BUCKETS == ("fix k 13-24", "fill-and-fix 40+ blanks")
    assert BUCKET_SCORE["fix k 1-12"] == BUCKET_SCORE["fix k 13-24"] == "sudoku_exact"
    assert BUCKET_SCORE["fill-and-fix 40+ blanks"] == BUCKET_SCORE["fill"] == "sudoku_valid_fewest_changes"


def test_a_board_with_40_empty_cells_and_a_wrong_digit_is_hard_fill_and_fix():
    source = SOLUTION.copy()
    source[:4] = 0  # rows 0-3: 36 empty cells
    source[4, :4] = 0  # 4 more: 40
    source[8, 8] = 7  # the solution has 8: one wrong digit
    row = score_board(source, SOLUTION, SOLUTION, NO_GIVENS)
    assert (row["sudoku_blanks"], row["sudoku_wrong"], row["sudoku_bucket"]) == (40, 1, "fill-and-fix 40+ blanks")
    assert row["sudoku_k_bucket"] == "k 1-12"  # the k bucket alone would mix it with fix boards
    source[4, 3] = SOLUTION[4, 3]  # 39 empty cells
    assert score_board(source, SOLUTION, SOLUTION, NO_GIVENS)["sudoku_bucket"] == "fill-and-fix <40 blanks"


def test_summary_per_bucket_with_forward_passes():
    rows = [
        {"sudoku_bucket": "fix k 1-12", "sudoku_k_bucket": "k 1-12", "sudoku_exact": 1.0, "forward_passes": 6},
        {"sudoku_bucket": "fill-and-fix 40+ blanks", "sudoku_k_bucket": "k 1-12", "sudoku_exact": 0.0,
         "sudoku_valid_fewest_changes": 1.0, "forward_passes": 10},
        {"sudoku_bucket": "fill-and-fix 40+ blanks", "sudoku_k_bucket": "k 1-12", "sudoku_exact": 1.0,
         "sudoku_valid_fewest_changes": 1.0, "forward_passes": 14},
        {"sudoku_bucket": "fix k 13-24", "sudoku_k_bucket": "k 13-24", "sudoku_exact": 0.0, "forward_passes": 20},
    ]
    s = summarize_boards(rows, extra_keys=("forward_passes",))
    # In BUCKETS order, not the rows' order.
    assert list(s["by_bucket"]) == ["fix k 1-12", "fix k 13-24", "fill-and-fix 40+ blanks"]
    hard = s["by_bucket"]["fill-and-fix 40+ blanks"]
    # exact (0 + 1) / 2, valid-fewest (1 + 1) / 2, passes (10 + 14) / 2
    assert (hard["n"], hard["sudoku_exact"], hard["sudoku_valid_fewest_changes"], hard["forward_passes"]) == (2, 0.5, 1.0, 12.0)
    assert s["all"]["forward_passes"] == 12.5  # (6 + 10 + 14 + 20) / 4
    # The k bucket "k 1-12" mixes the fix board with the two fill-and-fix boards: exact (1 + 0 + 1) / 3.
    assert s["by_k_bucket"]["k 1-12"]["sudoku_exact"] == pytest.approx(2 / 3)


def test_target_score_mean_weighs_each_buckets_own_score_by_its_boards():
    by_bucket = {"fix k 1-12": {"n": 3, "sudoku_exact": 2 / 3, "sudoku_valid_fewest_changes": 1.0},
                 "fill": {"n": 1, "sudoku_exact": 0.0, "sudoku_valid_fewest_changes": 1.0}}
    # fix by exact (2 of 3 boards), fill by valid-fewest (1 of 1): (2 + 1) / 4
    assert target_score_mean(by_bucket) == 0.75
    assert target_score_mean({}) is None


def test_leftover_errors_script_names_a_swap_inside_a_row_and_box_as_column_only(tmp_path):
    """benchmarks/sudoku_leftover_errors.py on a fake run: every fix board written exact except one, where two
    digits of one row and one box trade places (rows and boxes still hold 1-9; their two columns each repeat)."""
    import subprocess
    import sys
    from pathlib import Path

    from PIL import Image

    from rm_edit.data.sudoku import SudokuWorld
    from rm_edit.data.sudoku_cells import board_codes, render_board

    world, n = SudokuWorld(split="test"), 12
    fix = [i for i in range(n) if world.puzzle(i).task == "fix"]
    assert len(fix) >= 2
    (tmp_path / "images").mkdir()
    for i in fix:
        p = world.puzzle(i)
        digits = p.solution.copy()
        if i == fix[1]:
            digits[0, 0], digits[0, 1] = digits[0, 1], digits[0, 0]  # cells (1, 1) and (1, 2): one row, one box
        Image.fromarray(render_board(board_codes(digits, np.zeros((9, 9), bool)))).save(tmp_path / "images" / f"{p.id}.png")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "sudoku_leftover_errors.py"
    run = subprocess.run([sys.executable, str(script), str(tmp_path), "--n", str(n)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"1 of {len(fix)} fix boards not exact" in run.stdout
    assert "2 wrong, 0 empty left; broken rows 0, columns 2, boxes 0; every wrong row a swap of its own digits" in run.stdout
    assert "   1  rows and boxes valid, only columns broken" in run.stdout

"""The Sudoku test-time scaling plot draws the metric's own numbers, and the report's turn-by-turn boards show the
cells each turn re-masked: hand-made boards and trajectories, expected values worked out by hand."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from rm_edit.evaluation.scaling_plots import plot_sudoku_scaling
from rm_edit.evaluation.sudoku_eval import REMASK_INK, turn_frames, turn_strip
from rm_edit.evaluation.sudoku_scaling import scaling_markdown, scaling_point
from rm_edit.evaluation.sudoku_tables import bucket_table, headline_table
from rm_edit.metrics.sudoku import score_board, summarize_boards

# A solved grid (the classic shifted pattern: cell (r, c) = (3 (r mod 3) + r // 3 + c) mod 9 + 1).
SOLUTION = np.array([[(3 * (r % 3) + r // 3 + c) % 9 + 1 for c in range(9)] for r in range(9)])
GIVEN = np.zeros((9, 9), dtype=bool)
GIVEN[0] = True  # row 0 is clues


def _with(board, cell, digit):
    board = board.copy()
    board[cell] = digit
    return board


def _summary(rows, forward_passes):
    """What run_model's summary holds for these rows: the Sudoku means and the forward passes' mean."""
    return {"sudoku": summarize_boards(rows), "means": {"forward_passes": forward_passes}}


def test_the_plot_draws_the_metrics_own_numbers(tmp_path):
    # SOLUTION[4, 4] = (3*1 + 1 + 4) % 9 + 1 = 9; the source writes 5 there (one wrong digit).
    assert SOLUTION[4, 4] == 9
    source = _with(SOLUTION, (4, 4), 5)
    wrong = source  # a model that changed nothing
    # Board B's steps: 5 (wrong), re-masked (0), 5 again: one replay mistake.
    replay_steps = [source, _with(source, (4, 4), 0), source]
    rows = {
        # 1 turn: board A right (no replay), board B left wrong after one replay -> exact 1/2, replays (0 + 1) / 2.
        1: [score_board(source, SOLUTION, SOLUTION, GIVEN, [source, SOLUTION]) | {"edit_type": "fix"},
            score_board(source, wrong, SOLUTION, GIVEN, replay_steps) | {"edit_type": "fix"}],
        # 2 turns: both right, no replay -> exact 1, replays 0.
        2: [score_board(source, SOLUTION, SOLUTION, GIVEN, [source, SOLUTION]) | {"edit_type": "fix"}] * 2,
    }
    points = {
        "rm": [scaling_point(_summary(rows[1], 3.0), "reflective", 1),
               scaling_point(_summary(rows[2], 5.5), "reflective", 2)],
        # regenerate at 4 steps: both wrong (exact 0); at 8 steps: one right (exact 1/2).
        "sft": [scaling_point(_summary(rows[1][1:] * 2, 4.0), "regenerate", 4),
                scaling_point(_summary(rows[1], 8.0), "regenerate", 8)],
    }
    assert points["rm"][0]["exact"] == 0.5 and points["rm"][0]["replays"] == 0.5
    assert points["rm"][0]["exact_by_k_bucket"] == {"k 1-12": 0.5}
    drawn = plot_sudoku_scaling(points, tmp_path / "scaling.png")
    assert (tmp_path / "scaling.png").stat().st_size > 1000
    assert drawn["exact_vs_turns"] == {"rm": ([1.0, 2.0], [0.5, 1.0])}
    assert drawn["replays_vs_turns"] == {"rm": ([1.0, 2.0], [0.5, 0.0])}
    assert drawn["exact_vs_passes"] == {"rm (reflective)": ([3.0, 5.5], [0.5, 1.0]),
                                        "sft (regenerate)": ([4.0, 8.0], [0.0, 0.5])}
    table = scaling_markdown(points)
    # Board B's 5 at (4, 4) clashes with the solution's 5s at (4, 0) (its row: (3 + 1 + 0) % 9 + 1), (0, 4) (its
    # column: (0 + 0 + 4) % 9 + 1) and (3, 3) (its box: (0 + 1 + 3) % 9 + 1): 4 conflict cells, 0 on board A ->
    # 2.0 per board. Columns: exact, valid, valid fewest, conflicts, replays, passes, then the one bucket's target
    # score (fix k 1-12: exact).
    assert SOLUTION[4, 0] == SOLUTION[0, 4] == SOLUTION[3, 3] == 5
    assert "| rm | 1 turns | 2 | 0.500 | 0.500 | 0.500 | 2.000 | 0.500 | 3.000 | 0.500 |" in table
    assert "| sft | regenerate 4 | 2 | 0.000 |" in table
    # The bucket's own table: exact, valid, valid-fewest, replays, passes (no per-board passes in these rows: n/a).
    assert "## fix k 1-12 (n=2; target score: exact)" in table
    assert "| rm | 2 turns | 1.000 | 1.000 | 1.000 | 0.000 | n/a |" in table


def _point(model_turns, by_bucket, replays=0.5, passes=8.0):
    return {"strategy": "reflective", "turns": model_turns, "n": 4, "exact": 0.5, "replays": replays,
            "forward_passes": passes, "by_bucket": by_bucket}


def test_headline_and_bucket_tables_show_each_buckets_target_score():
    fix = {"n": 3, "sudoku_exact": 2 / 3, "sudoku_valid": 1.0, "sudoku_valid_fewest_changes": 1.0, "sudoku_replays": 0.0,
           "forward_passes": 6.0}
    hard = {"n": 1, "sudoku_exact": 0.0, "sudoku_valid": 1.0, "sudoku_valid_fewest_changes": 1.0, "sudoku_replays": 2.0,
            "forward_passes": 14.0}
    points = {"sudoku-rm": [_point(1, {"fill-and-fix 40+ blanks": hard, "fix k 13-24": fix})],
              "sudoku-rm-her": [_point(1, {"fix k 13-24": fix}, replays=0.25)]}
    head, _, rm, her = headline_table(points)
    # Buckets in the order (fix before fill-and-fix), fix scored by exact, fill-and-fix by valid-fewest.
    assert head == "| model | sampler | fix k 13-24: exact (n=3) | fill-and-fix 40+ blanks: valid, fewest (n=1) | replays | fwd passes |"
    assert rm == "| sudoku-rm | 1 turns | 0.667 | 1.000 | 0.500 | 8.000 |"
    assert her == "| sudoku-rm-her | 1 turns | 0.667 | n/a | 0.250 | 8.000 |"
    assert bucket_table(points, "fill-and-fix 40+ blanks", ["sudoku-rm"])[2:] == [
        "| sudoku-rm | 1 turns | 0.000 | 1.000 | 1.000 | 2.000 | 14.000 |"]


class _Layout:
    codebook_size = 19
    mask_code = 19


def test_turn_frames_and_the_strip_show_each_turns_re_masks():
    start = np.zeros((9, 9), dtype=np.int64)
    start[0, 0] = 14  # written 5
    masked = start.copy()
    masked[0, 0] = 19  # [MASK]
    fixed = start.copy()
    fixed[0, 0] = 12  # written 3
    none = np.zeros((9, 9), dtype=bool)
    cell = none.copy()
    cell[0, 0] = True

    def entry(codes, remasked):
        return {"codes": torch.from_numpy(codes)[None], "remasked": torch.from_numpy(remasked)[None]}

    # start, reflect (re-masks (0, 0)), reveal (writes 3), reflect (re-masks nothing: a fixed point)
    trajectory = [entry(start, none), entry(masked, cell), entry(fixed, none), entry(fixed, none)]
    frames = turn_frames(trajectory, 0, _Layout())
    # Two frames: the start, then turn 1 ending with 3 written and (0, 0) marked; the fixed point adds none.
    assert len(frames) == 2
    assert (frames[0][0] == start).all() and not frames[0][1].any()
    assert (frames[1][0] == fixed).all() and (frames[1][1] == cell).all()
    strip = np.asarray(turn_strip(frames))
    # 2 boards of 72 px at scale 2 with a 4 px gap: 144 + 4 + 144 = 292 wide, 144 high.
    assert strip.shape == (144, 292, 3)
    assert tuple(strip[0, 148 + 5]) == REMASK_INK  # the second board's cell (0, 0) top edge is red
    assert tuple(strip[0, 5]) != REMASK_INK  # the start's is not
    assert turn_frames(trajectory, 0, type("L", (), {"codebook_size": 605, "mask_code": 605})()) is None
    assert isinstance(turn_strip(frames), Image.Image)


def test_rm_settings_name_the_folders_tuned_sampler_and_a_run_with_other_options_is_not_reused(tmp_path):
    import json
    from types import SimpleNamespace

    from rm_edit.evaluation.sudoku_scaling import _finished, model_settings

    rm = SimpleNamespace(transformer=SimpleNamespace(config=SimpleNamespace(rm_post_trained=True)),
                         scheduler=SimpleNamespace(config=SimpleNamespace(reveal_steps=64, remask_margin=-2.0)))
    assert model_settings(rm, [4, 1], [8]) == [
        ("reflective", 1, {"strategy": "reflective", "num_turns": 1, "reveal_steps": 64, "remask_margin": -2.0}),
        ("reflective", 4, {"strategy": "reflective", "num_turns": 4, "reveal_steps": 64, "remask_margin": -2.0})]
    base = SimpleNamespace(transformer=SimpleNamespace(config=SimpleNamespace(rm_post_trained=False)))
    assert model_settings(base, [1], [16]) == [("regenerate", 16, {"strategy": "regenerate", "num_inference_steps": 16})]
    # A finished run of all 3 boards made before re-tuning (no reveal steps / margin in its options) is not reused.
    (tmp_path / "summary.json").write_text(json.dumps({"n_scored": 3}))
    (tmp_path / "run.json").write_text(json.dumps({"call_options": {"strategy": "reflective", "num_turns": 1}}))
    assert not _finished(tmp_path, 3, model_settings(rm, [1], [])[0][2])
    assert _finished(tmp_path, 3, {"strategy": "reflective", "num_turns": 1})
    assert not _finished(tmp_path, 4, {"strategy": "reflective", "num_turns": 1})


def test_the_card_shows_a_larger_test_sample_after_the_main_table(tmp_path):
    """A bucket of 53 boards moves 2 points a board: runs of the chosen settings on more test boards get their own
    table in SUDOKU_MODEL_CARD.md, after the main one, with their own n (RM's fix k 13-24 was 0.950 on 256 boards
    and 0.853 on 1,024)."""
    from rm_edit.training.sudoku_cards import write_sudoku_cards

    fix = {"n": 4, "sudoku_exact": 1.0, "sudoku_valid": 1.0, "sudoku_valid_fewest_changes": 1.0, "sudoku_replays": 0.0,
           "forward_passes": 6.0}
    more = dict(fix, n=16, sudoku_exact=13 / 16)  # 13 of 16 exact: 0.8125
    points = {"sudoku-rm": [_point(4, {"fix k 13-24": fix})]}
    larger = [{"n": 16, "points": {"sudoku-rm": [_point(4, {"fix k 13-24": more})]}}]
    write_sudoku_cards(tmp_path, points, {}, "python -m rm_edit.training.sudoku_recipe --work runs/sudoku", {}, "p.png",
                       larger=larger)
    card = (tmp_path / "SUDOKU_MODEL_CARD.md").read_text()
    main, _, rest = card.partition("## The same on 16 test boards (the first 4 are the table's above)")
    assert "| sudoku-rm | 4 turns | 1.000 |" in main and rest, card
    assert "| model | sampler | fix k 13-24: exact (n=16) | replays | fwd passes |" in rest
    assert "| sudoku-rm | 4 turns | 0.812 |" in rest.split("## Ablation")[0]

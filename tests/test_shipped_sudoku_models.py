"""The shipped Sudoku models: five folders of one architecture from one base, each recording how it was
post-trained, and usable through the CLI like the shapes folders (``rm-edit edit board.png "fix the mistakes"``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from rm_edit.data.sudoku_cells import board_codes, encode_board, render_board

MODELS = Path(__file__).resolve().parent.parent / "rm_edit" / "models"
# name -> (rm_post_trained, history_reference, history_decay)
FOLDERS = {"sudoku-base": (False, False, None), "sudoku-sft": (False, False, None), "sudoku-rm": (True, False, None),
           "sudoku-rm-her": (True, True, 1.0), "sudoku-rm-her-decay": (True, True, 0.7)}
TRAINING_FLAGS = {"rm_post_trained", "history_reference", "history_alpha", "history_decay", "_name_or_path"}

# A valid solved grid written out by hand (each row the one above shifted by 3, each band by 1 more).
SOLVED = np.array([[1, 2, 3, 4, 5, 6, 7, 8, 9], [4, 5, 6, 7, 8, 9, 1, 2, 3], [7, 8, 9, 1, 2, 3, 4, 5, 6],
                   [2, 3, 4, 5, 6, 7, 8, 9, 1], [5, 6, 7, 8, 9, 1, 2, 3, 4], [8, 9, 1, 2, 3, 4, 5, 6, 7],
                   [3, 4, 5, 6, 7, 8, 9, 1, 2], [6, 7, 8, 9, 1, 2, 3, 4, 5], [9, 1, 2, 3, 4, 5, 6, 7, 8]])
# Clues on the cells of a checkerboard-like pattern: 27 of 81 ((row + 2 * column) % 3 == 0).
GIVEN = (np.arange(9)[:, None] + 2 * np.arange(9)[None, :]) % 3 == 0


def _config(name: str) -> dict:
    return json.loads((MODELS / name / "transformer" / "config.json").read_text())


def test_every_sudoku_folder_has_one_architecture_and_records_its_training():
    base = {k: v for k, v in _config("sudoku-base").items() if k not in TRAINING_FLAGS}
    assert (base["d_model"], base["n_layers"], base["mlp_hidden_size"]) == (128, 5, 512)
    for name, (rm, her, decay) in FOLDERS.items():
        config = _config(name)
        assert {k: v for k, v in config.items() if k not in TRAINING_FLAGS} == base, name
        assert (config["rm_post_trained"], config["history_reference"]) == (rm, her), name
        if her:
            assert config["history_decay"] == decay, name
    steps = {name: json.loads((MODELS / name / "training.json").read_text())["examples"] for name in FOLDERS}
    post = {steps[name] for name in FOLDERS if name != "sudoku-base"}
    assert post == {500 * 64}, steps  # equal cost: every post-training saw the same examples
    assert steps["sudoku-base"] == 2000 * 64


def test_cli_fixes_one_wrong_digit_with_the_rm_her_folder(tmp_path):
    from rm_edit.cli import main

    assert GIVEN.sum() == 27 and not GIVEN[0, 1]
    wrong = SOLVED.copy()
    wrong[0, 1] = 9  # row 0 now holds two 9s; column 1 and box 0 too
    board, out = tmp_path / "board.png", tmp_path / "fixed.png"
    Image.fromarray(render_board(board_codes(wrong, GIVEN))).save(board)
    rc = main(["edit", str(board), "fix the mistakes", "--model", str(MODELS / "sudoku-rm-her"), "--out", str(out)])
    assert rc == 0
    assert (encode_board(Image.open(out), exact=False) == board_codes(SOLVED, GIVEN)).all()  # decoder pixels: nearest patterns


def test_cli_leaves_a_solved_board_as_it_is(tmp_path, capsys):
    from rm_edit.cli import main

    board, out = tmp_path / "board.png", tmp_path / "same.png"
    Image.fromarray(render_board(board_codes(SOLVED, GIVEN))).save(board)
    rc = main(["edit", str(board), "fix the mistakes", "--model", str(MODELS / "sudoku-rm"), "--out", str(out)])
    assert rc == 0 and "nothing to change" in capsys.readouterr().out
    assert (np.asarray(Image.open(out).convert("RGB")) == np.asarray(Image.open(board).convert("RGB"))).all()

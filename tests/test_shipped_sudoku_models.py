"""The shipped Sudoku models: five folders of one architecture from one base, each recording how it was
post-trained, and usable through the CLI like the shapes folders (``rm-edit edit board.png "fix the mistakes"``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from rm_edit.adapters import weights_sha256
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
    assert steps["sudoku-base"] == 2000 * 64  # a cycle; the base trained three, each from the last one's weights
    base_total = json.loads((MODELS / "sudoku-base" / "training.json").read_text())["examples_with_init"]
    assert base_total == 3 * 2000 * 64 and 4 * 500 * 64 <= base_total  # lightweight: a quarter of the base's at most
    base_weights = weights_sha256(MODELS / "sudoku-base")
    for name in FOLDERS:
        if name != "sudoku-base":  # post-trained from the shipped base's exact weights
            assert json.loads((MODELS / name / "training.json").read_text())["init_from"]["weights_sha256"] == base_weights


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


def _one_wrong_digit() -> np.ndarray:
    """SOLVED with cell (0, 1) a 9 (not a clue): it clashes with the 9s at (0, 8) (row), (5, 1) (column) and
    (2, 2) (box): 4 cells in conflict."""
    wrong = SOLVED.copy()
    wrong[0, 1] = 9
    return wrong


def test_fill_on_a_board_without_empty_cells_is_refused_in_one_line(tmp_path, capsys):
    """The model, asked to fill a board with no empty cell, re-masked its wrong digits and wrote one back empty;
    the request is refused before the model runs, naming the instruction that fits."""
    from rm_edit.cli import main

    board, out = tmp_path / "board.png", tmp_path / "out.png"
    Image.fromarray(render_board(board_codes(_one_wrong_digit(), GIVEN))).save(board)
    rc = main(["edit", str(board), "FILL IN THE EMPTY CELLS.", "--model", str(MODELS / "sudoku-rm"), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and not out.exists()
    assert err[0] == ("rm-edit: error: 'FILL IN THE EMPTY CELLS.' does not fit image 0: the board has no empty cells "
                      "to fill; 4 cells break the rules: to correct them say 'fix the mistakes'")


def test_an_image_that_is_no_board_is_refused_in_one_line(tmp_path, capsys):
    """A 64x64 shapes image reads as 8x8 cells (images under the world's size are not scaled up)."""
    from rm_edit.cli import main

    shapes_image, out = Path(__file__).resolve().parent.parent / "assets" / "example.png", tmp_path / "out.png"
    rc = main(["edit", str(shapes_image), "fix the mistakes", "--model", str(MODELS / "sudoku-rm"), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and not out.exists() and err == [
        "rm-edit: error: the image reads as 8x8 cells, not a Sudoku board's 9x9: the model reads boards of 72x72 px or "
        "larger, 8 px a cell (rm-edit data sudoku writes some)"]


def test_what_an_edited_board_leaves_undone_is_named():
    from rm_edit.data.sudoku import board_problem, instruction_problem

    assert board_problem(board_codes(SOLVED, GIVEN)) is None
    assert board_problem(board_codes(_one_wrong_digit(), GIVEN)) == "the edited board still has 4 cells in conflict"
    two_empty = SOLVED.copy()
    two_empty[0, 1] = two_empty[8, 8] = 0
    assert board_problem(board_codes(two_empty, GIVEN)) == "the edited board still has 2 empty cells"
    two_empty[0, 2] = 2  # was 3; row 0's 2 is blanked and box 0 holds no other 2, but column 2 has one at (8, 2)
    assert board_problem(board_codes(two_empty, GIVEN)) == "the edited board still has 2 empty cells and 2 cells in conflict"
    assert instruction_problem(board_codes(SOLVED, GIVEN), ["fill", "in", "the", "empty", "cells"]) == (
        "the board has no empty cells to fill; every digit already obeys the rules")
    assert instruction_problem(board_codes(two_empty, GIVEN), ["fill", "in", "the", "empty", "cells"]) is None
    assert instruction_problem(board_codes(_one_wrong_digit(), GIVEN), "fill it and fix the mistakes".split()) is None


def test_an_edit_that_leaves_empty_cells_says_so(tmp_path, capsys):
    """An all-black --mask lets nothing change, so a "fill" leaves its empty cell: exit 0, a warning naming it."""
    from rm_edit.cli import main

    one_empty = SOLVED.copy()
    one_empty[0, 1] = 0
    board, black, out = tmp_path / "board.png", tmp_path / "none.png", tmp_path / "out.png"
    Image.fromarray(render_board(board_codes(one_empty, GIVEN))).save(board)
    Image.new("L", (72, 72), 0).save(black)
    rc = main(["edit", str(board), "fill in the empty cells", "--model", str(MODELS / "sudoku-rm"), "--out", str(out),
               "--mask", str(black)])
    captured = capsys.readouterr()
    assert rc == 0 and "nothing to change" in captured.out
    assert captured.err.strip() == "rm-edit: warning: the edited board still has 1 empty cell"


def test_batch_refuses_a_fill_of_a_full_board_as_one_error_row_and_names_an_unfinished_edit(tmp_path, capsys):
    import json

    from rm_edit.cli import main

    one_empty = SOLVED.copy()
    one_empty[0, 1] = 0
    full, gap, black = tmp_path / "full.png", tmp_path / "gap.png", tmp_path / "none.png"
    Image.fromarray(render_board(board_codes(_one_wrong_digit(), GIVEN))).save(full)
    Image.fromarray(render_board(board_codes(one_empty, GIVEN))).save(gap)
    Image.new("L", (72, 72), 0).save(black)
    rows = [{"id": "full", "source": str(full), "instruction": "fill in the empty cells"},
            {"id": "gap", "source": str(gap), "instruction": "fill in the empty cells", "mask": str(black)}]
    manifest, out = tmp_path / "m.jsonl", tmp_path / "out"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rc = main(["batch", str(manifest), "--out", str(out), "--model", str(MODELS / "sudoku-rm"), "--no-progress",
               "--use-manifest-masks"])
    assert rc == 1 and (out / "gap.png").is_file() and not (out / "full.png").exists()
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [e["id"] for e in errors] == ["full"] and "the board has no empty cells to fill" in errors[0]["reason"]
    assert ("rm-edit: warning: 1 of 1 edit(s) left something undone: gap: the edited board still has 1 empty cell"
            in capsys.readouterr().err)


def test_a_shipped_model_is_named_by_its_folder_name(tmp_path, capsys):
    """`--model sudoku-rm` (as the cards say) is the shipped folder, from any directory; a name that is neither a
    folder nor a shipped model is one line naming the shipped ones."""
    from rm_edit.cli import main

    assert main(["info", "--model", "sudoku-rm"]) == 0
    out = capsys.readouterr().out
    assert f"model: {MODELS / 'sudoku-rm'}" in out and "world: " in out and "name sudoku" in out
    assert "  fix          fix the mistakes\n" in out and "  fill-and-fix fill in the empty cells and fix the mistakes\n" in out
    board = tmp_path / "board.png"
    Image.fromarray(render_board(board_codes(SOLVED, GIVEN))).save(board)
    assert main(["edit", str(board), "fix the mistakes", "--model", "sudoku-rmm", "--out", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rm-edit: error: model folder sudoku-rmm does not exist, nor is it a "
                                               "shipped model's name (")
    assert "sudoku-rm, " in err[0] and "shapes-rm, " in err[0] and not (tmp_path / "o.png").exists()


def test_an_image_that_is_no_puzzle_is_refused_in_one_line(tmp_path, capsys):
    """Any 72x72 image reads as 81 cells: the shapes example read as a board of 8 given clues and came back with
    73 cells repainted (exit 0). A board with fewer than 17 given clues, or with clues in conflict, is refused."""
    from rm_edit.cli import main

    few = GIVEN.copy()
    few[np.nonzero(GIVEN)[0][16:], np.nonzero(GIVEN)[1][16:]] = False  # the first 16 clues of 27 kept
    clash = SOLVED.copy()
    clash[0, 0] = 4  # clue (0, 0) now repeats clue (0, 3)'s 4 in row 0; no other clue of column 0 or box 0 is a 4
    assert few.sum() == 16 and GIVEN[0, 0] and GIVEN[0, 3] and SOLVED[0, 3] == 4
    cases = [(board_codes(SOLVED, few), "image 0 is no Sudoku puzzle: it reads as 16 given clues (black digits), "
                                        "and a Sudoku has at least 17"),
             (board_codes(clash, GIVEN), "image 0 is no Sudoku puzzle: 2 given clues of its 27 break the rules among "
                                         "themselves: no solution keeps them")]
    for codes, message in cases:
        board, out = tmp_path / "board.png", tmp_path / "out.png"
        Image.fromarray(render_board(codes)).save(board)
        assert main(["edit", str(board), "fix the mistakes", "--model", "sudoku-rm", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"rm-edit: error: {message}"), err
        assert not out.exists()

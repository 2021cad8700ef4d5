"""``python -m rm_edit.training.grid_report``: --model takes a folder or a shipped folder's name; another name is one
line naming the shipped ones."""

import json
from pathlib import Path

import pytest
from PIL import Image

from rm_edit.training.grid_report import main

MODELS = Path(__file__).resolve().parent.parent / "rm_edit" / "models"


def test_grid_of_a_shipped_folder_by_name(tmp_path):
    out = tmp_path / "grid.png"
    main(["--grid", str(out), "--model", "shapes-rm", "--start", "93100"])
    assert Image.open(out).width > 4 * 64  # source | edit | region | target, one row per edit


def test_an_unknown_model_name_is_one_line_naming_the_shipped_ones(tmp_path):
    with pytest.raises(SystemExit, match=r"^grid_report: --model nope: no pipeline folder there or under .*"
                                         r"\(shipped: shapes-base, shapes-sft, shapes-rm, shapes-rm-her, shapes-rm-lora\)$"):
        main(["--grid", str(tmp_path / "g.png"), "--model", "nope"])


def test_language_figures_cover_the_whole_language(tmp_path):
    """--language scores edits of all ten types (it once applied to the grid only, the figures staying on the
    classic five). Which types the first 40 test edits hold is the world's draw; by hand: more than the classic
    five, the null edits among them."""
    out = tmp_path / "figures.json"
    main(["--model", "shapes-rm", "--n", "40", "--start", "93200", "--language", "--out", str(out)])
    types = set(json.loads(out.read_text())["shapes-rm"]["by_edit_type"])
    assert "null" in types and len(types) > 5
    main(["--model", "shapes-rm", "--n", "40", "--start", "93200", "--out", str(out)])
    assert set(json.loads(out.read_text())["shapes-rm"]["by_edit_type"]) <= {
        "recolour", "remove", "add", "replace", "move"}

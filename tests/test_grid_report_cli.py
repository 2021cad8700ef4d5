"""``python -m rm_edit.training.grid_report``: --model takes a folder or a shipped folder's name; another name is one
line naming the shipped ones."""

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

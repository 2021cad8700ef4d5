"""The language people type, through `rm-edit edit` with the shipped default: each new instruction kind edits
right (pixel edit success against the world's exact target), and an instruction that names nothing in the
image, or one of several shapes ambiguously, changes nothing and says so in one line (exit 0).

Fresh test-split indices (61,000 on): no training run, tuning or figure uses them.
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest

from rm_edit.cli import main
from rm_edit.data.shapes import LANGUAGE_EDIT_TYPES, Scene, Shape, ShapesWorld, ShapesWorldConfig
from rm_edit.metrics import edit_success

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "assets" / "example.png"  # a large green square, a small green triangle, a small yellow square


def _examples(edit_type: str, n: int, start: int = 61_000):
    world = ShapesWorld(ShapesWorldConfig(edit_types=(edit_type,)), split="test")
    return [world[i] for i in range(start, start + n)]


def _edit(tmp_path, source: np.ndarray, instruction: str, capsys) -> tuple[np.ndarray, str]:
    src, out = tmp_path / "source.png", tmp_path / "out.png"
    PIL.Image.fromarray(source).save(src)
    assert main(["edit", str(src), instruction, "-o", str(out)]) == 0
    return np.asarray(PIL.Image.open(out).convert("RGB")), capsys.readouterr().out


@pytest.mark.parametrize("edit_type", [t for t in LANGUAGE_EDIT_TYPES if t != "null"])
def test_each_new_instruction_kind_edits_right_through_the_cli(tmp_path, capsys, edit_type) -> None:
    for ex in _examples(edit_type, 3):
        edited, printed = _edit(tmp_path, ex.source, ex.instruction, capsys)
        assert edit_success(ex.source, edited, ex.target).success, ex.instruction
        assert "nothing to change" not in printed


def test_hand_written_instructions_of_each_kind(tmp_path, capsys) -> None:
    """By hand, on one scene: a red circle (top left), a blue circle (center), a red square (bottom right)."""
    world = ShapesWorld(ShapesWorldConfig(edit_types=LANGUAGE_EDIT_TYPES))
    red_circle, blue_circle = Shape("circle", "red", "small", "top left"), Shape("circle", "blue", "large", "center")
    red_square = Shape("square", "red", "small", "bottom right")
    scene = Scene("beige", (red_circle, blue_circle, red_square))
    cases = {
        "remove the square": Scene("beige", (red_circle, blue_circle)),  # the only square: a kind-only reference
        "remove the blue shape": Scene("beige", (red_circle, red_square)),  # the only blue shape
        "make all the circles green": Scene("beige", (Shape("circle", "green", "small", "top left"),
                                                      Shape("circle", "green", "large", "center"), red_square)),
        "replace the blue circle with a yellow diamond": Scene("beige", (red_circle, Shape("diamond", "yellow", "large", "center"),
                                                                         red_square)),
        "move the red square up": Scene("beige", (red_circle, blue_circle, Shape("square", "red", "small", "right"))),
    }
    source = world.render(scene)
    for instruction, target in cases.items():
        edited, _ = _edit(tmp_path, source, instruction, capsys)
        assert edit_success(source, edited, world.render(target)).success, instruction


def test_null_edits_change_nothing_and_say_so(tmp_path, capsys) -> None:
    source = np.asarray(PIL.Image.open(EXAMPLE).convert("RGB"))
    # Absent (no blue circle, no diamond) and ambiguous (two squares): by hand from the picture. (An ambiguous
    # colour, "turn the green shape red" with two green shapes, is still edited: a known miss, see the README.)
    for instruction in ("remove the blue circle", "make the diamond red", "remove the square"):
        edited, printed = _edit(tmp_path, source, instruction, capsys)
        assert np.array_equal(edited, source), instruction
        assert "0 re-masked, 0 of 64 image codes changed" in printed and "nothing to change" in printed, instruction
    empty = 0
    for ex in _examples("null", 20):
        edited, printed = _edit(tmp_path, ex.source, ex.instruction, capsys)
        empty += "nothing to change" in printed and np.array_equal(edited, ex.source)
    assert empty >= 14  # measured on 300 test edits: 0.882 come back with an empty region (target 0.98: missed)

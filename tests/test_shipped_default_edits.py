"""The shipped default model edits visibly right: the README's example and fresh test edits of every type.

Judged in pixels against the world's exact targets (``rm_edit.metrics.edit_success``), with the CLI's defaults
(the folder's own sampler, paste-back on). The test-split indices used here (9,000 on) are touched by no
training run, no validation check and no figure in the model card (those use 0-499 and 5,000-5,007).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import rm_edit
from rm_edit.data.shapes import CLASSIC_EDIT_TYPES, COLOURS, ShapesWorld
from rm_edit.metrics import edit_success

ASSETS = __import__("pathlib").Path(__file__).resolve().parent.parent / "assets"


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(2)
    return rm_edit.load_default_pipeline()


def test_readme_example_is_right_for_ten_seeds(pipe):
    source = np.asarray(Image.open(ASSETS / "example.png").convert("RGB"))
    target = np.asarray(Image.open(ASSETS / "example_target.png").convert("RGB"))
    instruction = (ASSETS / "example_instruction.txt").read_text().strip()
    assert instruction == "turn the green square red"
    for seed in range(10):
        out = pipe(Image.fromarray(source), instruction, paste_back=True, output_type="np",
                   generator=torch.Generator().manual_seed(seed))
        edited = (out.images[0] * 255).round().astype(np.uint8) if out.images[0].dtype != np.uint8 else out.images[0]
        assert edit_success(source, edited, target).success, f"seed {seed}"
        # By hand: the small square fills cell (0, 0) (pixels 1..6 of the 8-px cell); its centre turns red
        # (220, 30, 35), the green triangle's cell (3, 3) and the yellow square's cells stay as they were.
        assert np.abs(edited[3:5, 3:5].astype(int) - COLOURS["red"]).max() <= 12, f"seed {seed}"
        assert (edited[24:32, 24:32] == source[24:32, 24:32]).all(), f"seed {seed}"
        assert (edited[48:64, 48:64] == source[48:64, 48:64]).all(), f"seed {seed}"


def _fresh_edits(edit_type: str, n: int, start: int = 9000):
    world = ShapesWorld(split="test")
    found, i = [], start
    while len(found) < n:
        ex = world[i]
        if ex.edit_type == edit_type:
            found.append(ex)
        i += 1
    return found


@pytest.mark.parametrize("edit_type", CLASSIC_EDIT_TYPES)  # the world the shipped models know
def test_fresh_test_edits_of_each_type_succeed(pipe, edit_type):
    examples = _fresh_edits(edit_type, 10)
    out = pipe([Image.fromarray(e.source) for e in examples], [e.instruction for e in examples],
               paste_back=True, output_type="np")
    verdicts = [edit_success(e.source, out.images[i], e.target).success for i, e in enumerate(examples)]
    failed = [e.instruction for e, ok in zip(examples, verdicts) if not ok]
    assert sum(verdicts) >= 9, f"{edit_type}: {sum(verdicts)}/10 right; failed: {failed}"
    assert out.num_forward_passes <= 16 / 3  # at most a third of the regenerate baseline's 16 passes

"""The comparison's curves are written as PNGs from the points given (the shared ``save_figure``)."""

import json

from PIL import Image

from rm_edit.training.fair_comparison import plot_base_validation, plot_curves


def test_curves_and_base_validation_are_written_as_pngs(tmp_path):
    steps = {"sft": [(400, 0.5), (800, 0.7)], "rm": [(400, 0.9), (800, 0.97)]}
    passes = {"RM+HER": [(1, 0.9, 0.999), (2, 0.98, 0.999)], "SFT regenerate": [(16, 0.93, 0.998)]}
    plot_curves(steps, passes, tmp_path / "a" / "steps.png", tmp_path / "a" / "passes.png")
    val_log = tmp_path / "val_log.jsonl"
    val_log.write_text("".join(json.dumps(dict(step=s, val_loss=l)) + "\n" for s, l in ((200, 0.7), (400, 0.2))))
    plot_base_validation(val_log, tmp_path / "base.png")
    # figsize x dpi 120: 6 x 4 in -> 720 x 480, 10 x 4 in -> 1200 x 480 (the folder "a" made on the way)
    assert Image.open(tmp_path / "a" / "steps.png").size == (720, 480)
    assert Image.open(tmp_path / "a" / "passes.png").size == (1200, 480)
    assert Image.open(tmp_path / "base.png").size == (720, 480)

"""benchmarks/val_loss_curves.py: held-out loss against examples, later folders' steps counted after earlier ones."""

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "val_loss_curves.py"


def _run_folder(folder: Path, batch: int, steps: int, losses: dict[int, float]) -> Path:
    folder.mkdir(parents=True)
    (folder / "train_config.json").write_text(json.dumps({"batch_size": batch, "steps": steps}))
    (folder / "val_log.jsonl").write_text("".join(json.dumps({"step": s, "val_loss": v}) + "\n" for s, v in losses.items()))
    return folder


def test_cycles_are_counted_one_after_another_and_a_png_is_written(tmp_path):
    first = _run_folder(tmp_path / "cycle1", batch=4, steps=10, losses={5: 0.5, 10: 0.25})
    second = _run_folder(tmp_path / "cycle2", batch=4, steps=10, losses={5: 0.125})
    wide = _run_folder(tmp_path / "wide", batch=8, steps=10, losses={5: 0.375})
    png = tmp_path / "curves.png"
    run = subprocess.run([sys.executable, str(SCRIPT), "--png", str(png), "--run", f"narrow={first},{second}",
                          "--run", f"wide={wide}"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    # cycle 1: 5 x 4 = 20 and 10 x 4 = 40 examples; cycle 2 starts after cycle 1's 40: 40 + 5 x 4 = 60; wide: 5 x 8
    assert "       20 examples  held-out loss 0.5000" in run.stdout
    assert "       40 examples  held-out loss 0.2500" in run.stdout
    assert "       60 examples  held-out loss 0.1250" in run.stdout
    assert "       40 examples  held-out loss 0.3750" in run.stdout
    assert Image.open(png).size == (768, 480)


def test_a_folder_without_a_val_log_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    run = subprocess.run([sys.executable, str(SCRIPT), "--png", str(tmp_path / "x.png"), "--run",
                          f"a={tmp_path / 'empty'}"], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert f"{tmp_path / 'empty'}: no val_log.jsonl" in run.stderr

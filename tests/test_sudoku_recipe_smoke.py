"""The Sudoku recipe at --smoke scale: every stage runs, the five folders load with the sampler and History
Reference they were trained for, the scaling figures are the runs' own, and a re-run skips finished stages."""

import json

import pytest

from rm_edit.configs import path as config_path
from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline
from rm_edit.schedulers import LuminaRegenerateScheduler, ReflectiveMaskingScheduler
from rm_edit.training.sudoku_recipe import MODELS, POST_TRAINING, main

pytestmark = pytest.mark.usefixtures("one_thread")


def test_post_training_is_equal_cost_and_a_quarter_of_the_base():
    base = json.loads(config_path("mdm_sudoku_base.json").read_text())
    assert base["steps"] * base["batch_size"] == 6400 * 64  # 409,600 examples
    for name in POST_TRAINING.values():
        cfg = json.loads(config_path(name).read_text())
        assert cfg["steps"] * cfg["batch_size"] == 1600 * 64  # 102,400 = 409,600 / 4
    decay = json.loads(config_path("mdm_sudoku_rm_her_decay.json").read_text())
    assert decay["history"] and decay["history_decay"] == 0.7
    assert json.loads(config_path("mdm_sudoku_rm_her.json").read_text())["history_decay"] == 1.0


def test_sudoku_recipe_smoke_end_to_end(tmp_path):
    main(["--work", str(tmp_path), "--smoke"])
    models = tmp_path / "models"
    for name, rm in MODELS.values():
        pipe = ReflectiveMaskingEditPipeline.from_pretrained(models / name)
        assert pipe.layout.name == "sudoku-grid" and pipe.transformer.config.d_model == 32
        assert isinstance(pipe.scheduler, ReflectiveMaskingScheduler if rm else LuminaRegenerateScheduler)
        assert pipe.transformer.config.rm_post_trained is rm
        assert pipe.transformer.config.history_reference is name.startswith("sudoku-rm-her")
    scaling = json.loads((tmp_path / "scaling" / "scaling.json").read_text())
    assert set(scaling["points"]) == {name for name, _ in MODELS.values()}
    for name, rm in MODELS.values():
        settings = ["reflective_1", "reflective_2"] if rm else ["regenerate_2", "regenerate_4"]
        runs = [json.loads((tmp_path / "scaling" / name / s / "summary.json").read_text()) for s in settings]
        # The plotted numbers are the runs' own summaries.
        assert [p["exact"] for p in scaling["points"][name]] == [r["sudoku"]["all"]["sudoku_exact"] for r in runs]
        assert [p["n"] for p in scaling["points"][name]] == [3, 3]
        if rm:
            assert scaling["plotted"]["replays_vs_turns"][name][1] == [r["sudoku"]["all"]["sudoku_replays"] for r in runs]
            report = (tmp_path / "scaling" / name / "reflective_2" / "report.html").read_text()
            assert "re-masked cells in red" in report  # the boards turn by turn
            assert len(list((tmp_path / "scaling" / name / "reflective_2" / "turns").rglob("*.png"))) == 3
    assert (tmp_path / "assets" / "sudoku_scaling.png").stat().st_size > 1000
    assert "| sudoku-rm | 2 turns | 3 |" in (tmp_path / "scaling" / "scaling.md").read_text()
    times = (tmp_path / "stage_times.json").read_text()
    main(["--work", str(tmp_path), "--smoke"])
    assert (tmp_path / "stage_times.json").read_text() == times

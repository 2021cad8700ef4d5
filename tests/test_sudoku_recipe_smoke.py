"""The Sudoku recipe at --smoke scale: every stage runs, the five folders load with the sampler and History
Reference they were trained for, base and SFT edit with their setting tuned on validation boards, the scaling
figures and the cards' are the runs' own, and a re-run skips finished stages."""

import json

import pytest

from rm_edit.configs import path as config_path
from rm_edit.metrics.sudoku import BUCKET_SCORE
from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline
from rm_edit.schedulers import LuminaRegenerateScheduler, ReflectiveMaskingScheduler
from rm_edit.training.sudoku_recipe import BASE_CYCLES, MODELS, POST_TRAINING, SudokuRecipe, main

pytestmark = pytest.mark.usefixtures("one_thread")


def test_post_training_is_equal_cost_and_fits_the_time_box():
    base = json.loads(config_path("mdm_sudoku_base.json").read_text())
    assert base["steps"] * base["batch_size"] == 2000 * 64  # 128,000 examples a cycle
    assert BASE_CYCLES == 3 and [SudokuRecipe.base_run(c) for c in (1, 2, 3)] == ["base", "base_cycle2", "base_cycle3"]
    for name in POST_TRAINING.values():
        cfg = json.loads(config_path(name).read_text())
        assert cfg["steps"] * cfg["batch_size"] == 500 * 64  # 32,000 each
        assert 4 * 500 <= 2000 * BASE_CYCLES  # at most a quarter of the base's examples (a twelfth by default)
    decay = json.loads(config_path("mdm_sudoku_rm_her_decay.json").read_text())
    assert decay["history"] and decay["history_decay"] == 0.7
    assert json.loads(config_path("mdm_sudoku_rm_her.json").read_text())["history_decay"] == 1.0


def test_sudoku_recipe_smoke_end_to_end(tmp_path):
    cycles = 2  # --base-cycles, not the default: the chain, the records and the card's command follow it
    main(["--work", str(tmp_path), "--smoke", "--base-cycles", str(cycles)])
    models = tmp_path / "models"
    # The base's cycles run one from another; the shipped base is the last, every post-training starts from it.
    last = tmp_path / SudokuRecipe.base_run(cycles) / "final"
    base_record = json.loads((models / "sudoku-base" / "training.json").read_text())
    assert (base_record["init_from"] or {}).get("path") == (
        None if cycles == 1 else str(tmp_path / SudokuRecipe.base_run(cycles - 1) / "final"))
    assert base_record["examples_with_init"] == cycles * base_record["examples"]
    for stage in POST_TRAINING:
        record = json.loads((tmp_path / stage / "final" / "training.json").read_text())
        assert record["init_from"]["path"] == str(last)
        assert record["examples_with_init"] == (cycles * base_record["examples"] + record["examples"])
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
    _check_tuned(tmp_path)
    _check_tuned_rm(tmp_path)
    _check_cards(tmp_path, scaling["points"], cycles)
    times = (tmp_path / "stage_times.json").read_text()
    cycles = 2  # --base-cycles, not the default: the chain, the records and the card's command follow it
    main(["--work", str(tmp_path), "--smoke", "--base-cycles", str(cycles)])
    assert (tmp_path / "stage_times.json").read_text() == times


def _check_tuned(work):
    """Base and SFT edit with the setting that scored best on validation boards, read from the tuning runs."""
    tuned = json.loads((work / "tuned_regenerate.json").read_text())
    assert set(tuned) == {"sudoku-base", "sudoku-sft"}
    for name, t in tuned.items():
        runs = {(g, temp): json.loads((work / "tune" / name / f"guidance_{g}_temperature_{temp}" / "summary.json").read_text())
                for g in (0.0, 1.5) for temp in (0.0, 1.0)}
        assert all(r["benchmark"] == "sudoku-val" and r["n_scored"] == 2 for r in runs.values())
        best = runs[(t["guidance_scale"], t["temperature"])]["sudoku"]["by_bucket"]
        # the chosen score is the runs' own: each bucket's target score weighted by its boards, the grid's highest
        assert t["score"] == pytest.approx(sum(m["n"] * m[BUCKET_SCORE[b]] for b, m in best.items()) / 2)
        assert t["score"] == max(r["score"] for r in t["grid"])
        folder = work / "models" / name
        assert json.loads((folder / "model_index.json").read_text())["guidance_scale"] == t["guidance_scale"]
        assert json.loads((folder / "scheduler" / "scheduler_config.json").read_text())["temperature"] == t["temperature"]


def _check_tuned_rm(work):
    """The RM models edit with the reveal steps per turn and re-mask margin that scored best on validation boards."""
    tuned = json.loads((work / "tuned_reflective.json").read_text())
    assert set(tuned) == {"sudoku-rm", "sudoku-rm-her", "sudoku-rm-her-decay"}
    for name, t in tuned.items():
        runs = {(r, m): json.loads((work / "tune" / name / f"reveal_{r}_margin_{m}" / "summary.json").read_text())
                for r, m in ((1, 0.0), (2, 0.0), (2, -1.0))}
        assert all(r["benchmark"] == "sudoku-val" and r["n_scored"] == 2 for r in runs.values())
        assert [(r["reveal_steps"], r["remask_margin"]) for r in t["grid"]] == list(runs)
        best = runs[(t["reveal_steps"], t["remask_margin"])]["sudoku"]["by_bucket"]
        assert t["score"] == pytest.approx(sum(m["n"] * m[BUCKET_SCORE[b]] for b, m in best.items()) / 2)
        assert t["score"] == max(r["score"] for r in t["grid"]) and t["turns"] == 4
        sched = json.loads((work / "models" / name / "scheduler" / "scheduler_config.json").read_text())
        assert (sched["reveal_steps"], sched["remask_margin"]) == (t["reveal_steps"], t["remask_margin"])


def _check_cards(work, points, cycles):
    """Each folder's card and the Sudoku card carry the scaling runs' own figures."""
    times = json.loads((work / "stage_times.json").read_text())
    for name, rm in MODELS.values():
        card = (work / "models" / name / "README.md").read_text()
        assert card.startswith("---\nlicense: apache-2.0") and "- sudoku\n" in card and f"# rm-edit {name}" in card
        # The folder's own setting: RM folders default to 4 turns (the smoke sweep's largest below: 2), the
        # regenerate folders to 16 steps (the smoke sweep's largest below: 4): the sweep's last point.
        own = points[name][-1]
        assert f"{'2 turns' if rm else 'regenerate 4'}: the folder's own sampler): exact {own['exact']:.3f}" in card
        assert f"replay mistakes {own['replays']:.3f} per board" in card
    card = (work / "models" / "SUDOKU_MODEL_CARD.md").read_text()
    assert f"python -m rm_edit.training.sudoku_recipe --work {work} --base-cycles {cycles} --smoke" in card
    assert "../../assets/sudoku_scaling.png" in card
    assert f"| `evaluate` | {times['evaluate']:,.0f} |" in card
    # What each trained on: the SFT row names the base's last cycle and its weights, and counts the base's cycles.
    base = json.loads((work / "models" / "sudoku-base" / "training.json").read_text())
    sft = json.loads((work / "models" / "sudoku-sft" / "training.json").read_text())
    assert (f"| sudoku-sft | `{SudokuRecipe.base_run(cycles)}` ({sft['init_from']['weights_sha256'][:12]}) | "
            f"{sft['steps']:,} x {sft['config']['batch_size']} | {sft['examples']:,} | "
            f"{cycles * base['examples'] + sft['examples']:,} |") in card
    assert f"The base trained {cycles} cosine cycle(s), each from the last one's weights" in card
    for bucket, m in points["sudoku-rm-her"][0]["by_bucket"].items():
        assert f"### {bucket} (n={m['n']};" in card
    rm_her_1 = points["sudoku-rm-her"][0]["by_bucket"]["fix k 13-24"]
    row = " | ".join(f"{rm_her_1[k]:.3f}" for k in ("sudoku_exact", "sudoku_valid", "sudoku_valid_fewest_changes",
                                                     "sudoku_replays", "forward_passes"))
    assert f"| sudoku-rm-her | 1 turns | {row} |" in card
    readme = (work / "scaling" / "readme_section.md").read_text()
    assert "#### fix k 13-24" in readme and f"| sudoku-rm-her | 1 turns | {row} |" in readme
    assert "| sudoku-sft | regenerate 4 |" in readme  # the headline table has every model; the hard buckets only RM
    assert "![Sudoku test-time scaling](assets/sudoku_scaling.png)" in readme

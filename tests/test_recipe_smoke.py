"""The whole default-model recipe at --smoke scale: every stage runs and produces loadable pipelines."""

import json

import pytest

from rm_edit.data.shapes import EDIT_TYPES
from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline
from rm_edit.schedulers import LuminaRegenerateScheduler, ReflectiveMaskingScheduler
from rm_edit.training.recipe import MODELS, main


def test_recipe_smoke_end_to_end(tmp_path):
    main(["--work", str(tmp_path), "--smoke"])
    models = tmp_path / "models"
    results = json.loads((models / "heldout_results.json").read_text())
    assert set(results) == {name for name, _ in MODELS.values()}
    for name, rm in MODELS.values():
        r = results[name]
        assert r["n"] == 4 and set(r["by_edit_type"]) <= set(EDIT_TYPES)
        pipe = ReflectiveMaskingEditPipeline.from_pretrained(models / name)
        # One architecture for every folder (the LoRA folder is the base's, adapted).
        assert pipe.transformer.config.d_model == 32 and pipe.transformer.config.grid_position_size == 8
        # RM folders default to the reflective sampler, the others to regenerate; HER is recorded for rm-her.
        assert isinstance(pipe.scheduler, ReflectiveMaskingScheduler if rm else LuminaRegenerateScheduler)
        assert pipe.transformer.config.rm_post_trained is rm
        assert pipe.transformer.config.history_reference is (name in ("shapes-rm-her", "shapes-rm-lora"))
        card = (models / name / "README.md").read_text()
        assert card.startswith("---\nlicense: apache-2.0\nlibrary_name: diffusers\npipeline_tag: image-to-image\n")
        assert ("(the default model)" in card) is (name == "shapes-rm")  # DEFAULT_MODEL, chosen on validation
    assert (tmp_path / "edit_grid.png").stat().st_size > 1000
    card = (models / "MODEL_CARD.md").read_text()
    assert "| shapes-rm |" in card and "| RM-LoRA (+HER) |" in card and "| base inpainting 16 (oracle region) |" in card
    assert (tmp_path / "assets" / "curve_forward_passes.png").stat().st_size > 1000
    assert (tmp_path / "assets" / "curve_base_validation.png").stat().st_size > 1000
    # re-running skips finished stages
    times = (tmp_path / "stage_times.json").read_text()
    main(["--work", str(tmp_path), "--smoke"])
    assert (tmp_path / "stage_times.json").read_text() == times


def test_stage_times_of_two_processes_on_one_work_folder_are_both_kept(tmp_path, monkeypatch):
    """Two recipe runs on one folder (one resumed while another stage ran): each stage's time stays recorded."""
    from rm_edit.training.recipe import Recipe

    clock = iter([100.0, 107.5, 200.0, 203.0])  # first stage 7.5 s, second 3 s
    monkeypatch.setattr("rm_edit.training.recipe.time.time", lambda: next(clock))
    first, second = Recipe(tmp_path, True, 1, {}), Recipe(tmp_path, True, 1, {})  # both read an empty record
    monkeypatch.setattr(Recipe, "stage_codes", lambda self: None, raising=False)
    monkeypatch.setattr(Recipe, "stage_vq", lambda self: None, raising=False)
    first.run(["codes"])
    second.run(["vq"])
    assert json.loads((tmp_path / "stage_times.json").read_text()) == {"codes": 7.5, "vq": 3.0}


def test_post_training_from_a_trained_base_folder_records_that_base(tmp_path):
    """--base-from: the post-trainings start from the given base folder (its weights' hash in their records)."""
    first = tmp_path / "first"
    main(["--work", str(first), "--smoke", "--stages", "codes,vq,vq_sharpen,base"])
    base = first / "base" / "final"
    second = tmp_path / "second"
    main(["--work", str(second), "--smoke", "--stages", "codes,sft", "--base-from", str(base)])
    adopted = json.loads((second / "base" / "adopted.json").read_text())
    record = json.loads((second / "sft" / "final" / "training.json").read_text())
    assert record["init_from"]["weights_sha256"] == adopted["weights_sha256"]
    assert record["steps"] == 4 and (second / "vq_sharpen" / "vq" / "config.json").exists()
    assert not (second / "vq").exists()  # the vq stages did not run: marked done from the adopted folder
    assert (second / "vq.done").read_text() == f"adopted from {base}\n"
    # A work folder with a base of its own is not overwritten.
    with pytest.raises(FileExistsError, match="has a base already"):
        main(["--work", str(second), "--smoke", "--stages", "sft", "--base-from", str(base)])

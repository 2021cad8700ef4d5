"""The whole default-model recipe at --smoke scale: every stage runs and produces loadable pipelines."""

import json

from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline
from rm_edit.training.recipe import MODELS, main


def test_recipe_smoke_end_to_end(tmp_path):
    main(["--work", str(tmp_path), "--smoke"])
    models = tmp_path / "models"
    results = json.loads((models / "heldout_results.json").read_text())
    assert {"RM (reflective)", "vanilla SFT (regenerate)"} <= set(results)
    assert 0.0 <= results["RM (reflective)"]["kept_outside"] <= 1.0
    assert (models / "rm_losses.png").stat().st_size > 1000
    for name, _ in MODELS.values():
        pipe = ReflectiveMaskingEditPipeline.from_pretrained(models / name)
        assert pipe.transformer.config.d_model == 32
    # the grounding diagnostic: every target token falls in exactly one group
    from rm_edit.training.shapes_report import (
        code_colour_purity,
        distractor_scores,
        false_positive_sources,
        instruction_ablation,
        remask_score_groups,
    )

    groups = remask_score_groups(models / "shapes-rm", n=3)
    assert set(groups) == {"changed", "other shapes", "background"}
    assert sum(g["tokens"] for g in groups.values()) == 3 * 64
    assert all(0.0 <= g["remasked_at_0"] <= 1.0 for g in groups.values())
    distractors = distractor_scores(models / "shapes-rm", n=12, split="test")
    assert distractors and all(k.endswith(" kind") for k in distractors)
    assert sum(g["tokens"] for g in distractors.values()) > 0
    assert all(0.0 <= g["remasked"] <= 1.0 for g in distractors.values() if g["tokens"])
    fps = false_positive_sources(models / "shapes-rm", n=4, split="test")
    assert fps["tokens_per_image"] == 64 and fps["false_positives_per_image"] >= 0
    shares = [v for k, v in fps.items() if k not in ("false_positives_per_image", "tokens_per_image")]
    assert len(shares) == 4 and (sum(shares) == 0 if fps["false_positives_per_image"] == 0 else abs(sum(shares) - 1) < 1e-3)
    ablation = instruction_ablation(models / "shapes-sft", n=2, split="test")
    assert set(ablation) == {"true", "colour swapped", "no instruction"}
    assert all(v["cross_entropy"] > 0 and 0.0 <= v["accuracy"] <= 1.0 for v in ablation.values())
    purity = code_colour_purity(pipe.vqvae, n=8, split="test")
    assert purity["cells"] > 0 and 0.0 < purity["purity"] <= 1.0
    # re-running skips finished stages
    times = (tmp_path / "stage_times.json").read_text()
    main(["--work", str(tmp_path), "--smoke"])
    assert (tmp_path / "stage_times.json").read_text() == times


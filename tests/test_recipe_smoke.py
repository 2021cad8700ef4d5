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
    # the confusable edits: more training examples, each naming a shape that has a same-colour twin
    from rm_edit.data.manifest import read_manifest
    from rm_edit.data.shapes import ShapesWorld, has_confusable_distractor

    hard, _ = read_manifest(tmp_path / "data" / "train_confusable" / "manifest.jsonl")
    world = ShapesWorld(split="train")
    assert len(hard) == 6 and all(has_confusable_distractor(world[int(r.id.rsplit("_", 1)[1])]) for r in hard)
    assert min(int(r.id.rsplit("_", 1)[1]) for r in hard) >= 24  # after the training set's indices
    assert (tmp_path / "data" / "train_confusable" / "codes.safetensors").is_file()
    for name, _ in MODELS.values():
        pipe = ReflectiveMaskingEditPipeline.from_pretrained(models / name)
        assert pipe.transformer.config.d_model == 32
    # the grounding diagnostic: every target token falls in exactly one group
    from rm_edit.training.shapes_report import (
        code_colour_purity,
        code_kind_readability,
        distractor_scores,
        false_positive_sources,
        instruction_ablation,
        placement_ceiling,
        remask_score_groups,
    )

    groups = remask_score_groups(models / "shapes-rm", n=3)
    assert set(groups) == {"changed", "other shapes", "background"}
    assert sum(g["tokens"] for g in groups.values()) == 3 * 64
    assert all(0.0 <= g["remasked_at_0"] <= 1.0 for g in groups.values())
    distractors = distractor_scores(models / "shapes-rm", n=12, split="test")
    assert distractors and all(k.endswith(" kind") for k in distractors)
    assert sum(g["tokens"] for g in distractors.values()) > 0
    assert all(0.0 <= g["remasked"] <= 1.0 and 0.0 <= g["auc"] <= 1.0 for g in distractors.values() if g["tokens"])
    fps = false_positive_sources(models / "shapes-rm", n=4, split="test")
    assert fps["tokens_per_image"] == 64 and fps["false_positives_per_image"] >= 0
    shares = [v for k, v in fps.items() if k not in ("false_positives_per_image", "tokens_per_image")]
    assert len(shares) == 4 and (sum(shares) == 0 if fps["false_positives_per_image"] == 0 else abs(sum(shares) - 1) < 1e-3)
    ablation = instruction_ablation(models / "shapes-sft", n=2, split="test")
    assert set(ablation) == {"true", "colour swapped", "no instruction"}
    assert all(v["cross_entropy"] > 0 and 0.0 <= v["accuracy"] <= 1.0 for v in ablation.values())
    purity = code_colour_purity(pipe.vqvae, n=8, split="test")
    ceiling = placement_ceiling(pipe.vqvae, n=12, split="test", draws=2)
    assert ceiling and set(ceiling) <= {"add", "move"}
    assert all(0.0 <= v["micro_precision"] <= 1.0 and 0.0 <= v["micro_recall"] <= 1.0 for v in ceiling.values())
    assert purity["cells"] > 0 and 0.0 < purity["purity"] <= 1.0
    kinds = code_kind_readability(pipe.vqvae, n_train=16, n_val=6, steps=3)
    assert kinds["shapes"] > 0 and 0.0 <= kinds["val_accuracy"] <= 1.0 and 0.0 <= kinds["train_accuracy"] <= 1.0
    assert kinds["by_size"] and set(kinds["by_size"]) <= {"small", "medium", "large"}
    # re-running skips finished stages
    times = (tmp_path / "stage_times.json").read_text()
    main(["--work", str(tmp_path), "--smoke"])
    assert (tmp_path / "stage_times.json").read_text() == times



def test_score_auc_counts_ordered_pairs_at_any_score_scale():
    import torch

    from rm_edit.training.shapes_report import score_auc

    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(300, generator=g) + 1, torch.randn(200, generator=g)
    pairs = (pos[:, None] > neg[None]).double().mean().item()
    assert abs(score_auc(pos, neg) - pairs) < 1e-6
    # large logits (a sigmoid would saturate them all to 1.0 and call it a tie)
    assert score_auc(torch.arange(30.0, 40.0), torch.arange(20.0, 30.0)) == 1.0
    assert score_auc(torch.arange(20.0, 30.0), torch.arange(30.0, 40.0)) == 0.0

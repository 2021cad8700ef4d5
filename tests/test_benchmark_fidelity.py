"""Scores as the benchmarks' own scripts compute them: PIE-Bench's side-by-side crop, MagicBrush's resize."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rm_edit.evaluation.benchmarks import fit_prediction, load_benchmark
from rm_edit.evaluation.runner import score
from rm_edit.metrics import EditMetrics


def _rle(mask: np.ndarray) -> list[int]:
    flat = np.concatenate([[0], mask.reshape(-1).astype(np.int8), [0]])
    d = np.diff(flat)
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return [int(v) for s, e in zip(starts, ends) for v in (s, e - s)]


def test_fit_prediction_crops_side_by_side_only_for_pie_bench():
    source = Image.new("RGB", (32, 32), (100, 100, 100))
    pair = np.zeros((32, 64, 3), np.uint8)
    pair[:, 32:] = 200  # [source | edit]: the edit is the right half
    fitted, note = fit_prediction("pie-bench", Image.fromarray(pair), source)
    assert fitted.size == (32, 32) and np.asarray(fitted).min() == 200  # box (64-32, 32-32, 64, 32)
    assert note == "64x32 (PIE-Bench: bottom-right 32x32 crop)"
    fitted, note = fit_prediction("magicbrush", Image.fromarray(pair), source)
    assert fitted.size == (32, 32) and note == "64x32"  # resized, halves blended
    same, note = fit_prediction("pie-bench", source, source)
    assert same is source and note is None


def test_pie_bench_side_by_side_prediction_scored_as_its_script(tmp_path: Path):
    root = tmp_path / "PIE-Bench"
    (root / "annotation_images/0_random_140").mkdir(parents=True)
    source = np.full((32, 32, 3), 100, np.uint8)
    Image.fromarray(source).save(root / "annotation_images/0_random_140/000000000000.png")
    mask = np.zeros((32, 32), bool)
    mask[8:16, 8:20] = True
    (root / "mapping_file.json").write_text(json.dumps({"000000000000": {
        "image_path": "0_random_140/000000000000.png", "original_prompt": "a grey square",
        "editing_prompt": "a [red] grey square", "editing_instruction": "add red", "editing_type_id": "0",
        "mask": _rle(mask)}}))
    edit = source.copy()
    edit[8:16, 8:20] = (255, 0, 0)  # inside the mask: not background
    edit[24, 24] = (151, 151, 151)  # one background pixel off by 51/255 = 0.2 in every channel
    preds = tmp_path / "preds/0_random_140"
    preds.mkdir(parents=True)
    Image.fromarray(np.concatenate([source, edit], axis=1)).save(preds / "000000000000.png")  # 64x32
    out = tmp_path / "out"
    score(load_benchmark(root), tmp_path / "preds", out, EditMetrics(), progress=False, report=True)
    row = json.loads((out / "per_sample.json").read_text())[0]
    # PIE-Bench arithmetic on the cropped edit: both images zeroed in the mask, MSE over all 32*32*3 values:
    # 3 * 0.2^2 / 3072 = 0.04 / 1024 = 3.90625e-5 -> PSNR 10*log10(25600) = 44.0824 dB, MSE x1e4 = 0.390625
    assert row["pie_mse_x1e4"] == pytest.approx(0.390625, rel=1e-5)
    assert row["pie_psnr"] == pytest.approx(10 * math.log10(25600), abs=1e-3)
    assert row["resized_from"] == "64x32 (PIE-Bench: bottom-right 32x32 crop)"
    page = (out / "report.html").read_text()
    assert "<h2>Glossary</h2>" in page and "cropped to their bottom-right corner" in page  # the convention stated


def test_structure_distance_preprocessing_is_pie_benchs():
    from rm_edit.metrics.structure import StructureDistance

    sd = StructureDistance(model_name="vit_tiny_patch16_224", layer=-1, image_size=16, allow_random_weights=True)
    x = sd._prepare(Image.new("RGB", (64, 32), (255, 0, 0)))
    assert tuple(x.shape) == (3, 16, 32)  # short side 32 -> 16, aspect kept (Resize(224, max_size=480) scaled)
    # 0-255 values, not [0, 1], through ImageNet mean/std: (255 - 0.485) / 0.229 = 1111.419; (0 - 0.456) / 0.224
    assert float(x[0].mean()) == pytest.approx(1111.419, abs=1e-2)
    assert float(x[1].mean()) == pytest.approx(-2.0357, abs=1e-3)
    a = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 64, 3), dtype=np.uint8))
    assert sd.distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_magicbrush_clip_t_is_the_raw_vit_b32_cosine_with_the_target_caption():
    from rm_edit.metrics.quality import ClipScorer

    clip_i = ClipScorer("ViT-S-32", allow_random_weights=True, image_size=32, context_length=16)
    source = np.full((32, 32, 3), 90, np.uint8)
    edit = source.copy()
    edit[8:16, 8:16] = (200, 10, 10)
    values = EditMetrics(clip_i=clip_i).compute(source, edit, target=edit, target_caption="a red square")
    raw = clip_i.text_similarity(edit, "a red square")
    assert values["clip_t"] == pytest.approx(raw, abs=1e-6)  # raw cosine: may be negative, not x100
    assert -1.0 <= values["clip_t"] <= 1.0 and values["clip_i"] == pytest.approx(1.0, abs=1e-5)
    assert "needs" not in (values["reasons"].get("clip_t") or "")


def test_magicbrush_release_local_captions_are_the_clip_t_text(tmp_path: Path):
    root = tmp_path / "test"
    d = root / "images" / "30"
    d.mkdir(parents=True)
    Image.new("RGB", (16, 16), (9, 9, 9)).save(d / "30-input.png")
    Image.new("RGB", (16, 16), (99, 9, 9)).save(d / "30-output1.png")
    (root / "edit_sessions.json").write_text(json.dumps({"30": [
        {"input": "30-input.png", "output": "30-output1.png", "instruction": "make it red"}]}))
    (root / "local_descriptions.json").write_text(json.dumps({"30": {"30-output1.png": "a dark red square"}}))
    sample = list(load_benchmark(root))[0]
    assert sample.captions == (None, "a dark red square") and sample.instruction == "make it red"

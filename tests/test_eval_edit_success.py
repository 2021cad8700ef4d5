"""Pixel edit success in `rm-edit eval` output: per-sample rows, the summary (first column, rate per edit type),
the comparison's per-type table and the HTML report. Hand-built 16x16 images with hand-worked verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from rm_edit.data.manifest import write_manifest
from rm_edit.data.records import EditRecord
from rm_edit.evaluation.benchmarks import load_benchmark
from rm_edit.evaluation.runner import score
from rm_edit.evaluation.success_table import success_by_type_markdown
from rm_edit.metrics import EditMetrics


def _save(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _bench_with_predictions(tmp_path: Path) -> tuple[Path, Path]:
    """Three recolour-a-pixel edits: a (right), b (nothing done), c (right but a far corner moved)."""
    grey = np.full((16, 16, 3), 100, np.uint8)
    target = grey.copy()
    target[8, 8] = (255, 0, 0)
    data, preds = tmp_path / "data", tmp_path / "preds"
    src, tgt = _save(data / "src.png", grey), _save(data / "tgt.png", target)
    records = [EditRecord("a", src, "make it red", tgt, None, "recolour"),
               EditRecord("b", src, "make it red", tgt, None, "recolour"),
               EditRecord("c", src, "make it red", tgt, None, "remove")]
    write_manifest(data / "manifest.jsonl", records)
    _save(preds / "a.png", target)  # exact: ratio 0, nothing moved
    _save(preds / "b.png", grey)  # the source: ratio 1 > 0.25
    spoiled = target.copy()
    spoiled[0, 0:3] = (0, 0, 0)  # 3 far pixels of 256 - 25 = 231 moved by 100/255 > 0.15: 3/231 > 0.01
    _save(preds / "c.png", spoiled)
    return data, preds


def test_eval_rows_summary_and_report_lead_with_edit_success(tmp_path):
    data, preds = _bench_with_predictions(tmp_path)
    out = tmp_path / "out"
    summary = score(load_benchmark(data), preds, out, EditMetrics(), progress=False, label="hand")
    rows = {r["id"]: r for r in json.loads((out / "per_sample.json").read_text())}
    assert [rows[i]["edit_success"] for i in "abc"] == [1.0, 0.0, 0.0]
    assert rows["a"]["changed_error_ratio"] == 0.0 and rows["b"]["changed_error_ratio"] == 1.0
    assert abs(rows["c"]["far_changed_fraction"] - 3 / 231) < 1e-12
    assert summary["columns"][0] == ["edit_success", "Edit success ↑"]
    assert summary["edit_success"] == {
        "overall": {"rate": 1 / 3, "successes": 1, "n": 3},  # a of a, b, c
        "by_edit_type": {"recolour": {"rate": 0.5, "successes": 1, "n": 2},
                         "remove": {"rate": 0.0, "successes": 0, "n": 1}}}
    md = (out / "summary.md").read_text()
    assert "| | Edit success ↑ |" in md  # the first column of the summary table
    assert "| hand | 0.333 (1/3) | 0.5 (1/2) | 0 (0/1) |" in md
    page = (out / "report.html").read_text()
    assert "Edit success by edit type" in page and "<td>0.5 (1/2)</td>" in page
    assert ">yes</td>" in page and ">no</td>" in page  # the per-sample verdicts
    assert "Changed err ratio" in page and "Far changed" in page
    assert "<dt>target_l1</dt>" in page and "MagicBrush&#x27;s convention" in page  # the glossary


def test_success_table_for_the_comparison():
    named = [("RM", {"edit_success": {"overall": {"rate": 0.75, "successes": 3, "n": 4},
                                      "by_edit_type": {"add": {"rate": 1.0, "successes": 2, "n": 2},
                                                       "move": {"rate": 0.5, "successes": 1, "n": 2}}}}),
             ("SFT", {"edit_success": {"overall": {"rate": 0.5, "successes": 1, "n": 2},
                                       "by_edit_type": {"move": {"rate": 0.5, "successes": 1, "n": 2}}}}),
             ("no targets", {"edit_success": {"overall": {"rate": None, "successes": 0, "n": 0}, "by_edit_type": {}}})]
    assert success_by_type_markdown(named).splitlines() == [
        "| Edit success | all | add | move |", "|---|---:|---:|---:|",
        "| RM | 0.75 (3/4) | 1 (2/2) | 0.5 (1/2) |", "| SFT | 0.5 (1/2) | n/a | 0.5 (1/2) |"]
    assert success_by_type_markdown(named[2:]) == ""

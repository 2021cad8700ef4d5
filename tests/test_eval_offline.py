"""`rm-edit eval` and `eval compare` look for metric weights the same way, only for the metrics the
benchmark reports, and tell an offline host once (issue #24 item 5)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from rm_edit.cli import main
from rm_edit.evaluation import runner
from rm_edit.evaluation.summary import metrics_reported
from rm_edit.metrics import suite, weights

ROOT = Path(__file__).resolve().parent.parent


def test_metrics_reported_per_benchmark_kind() -> None:
    # shapes: BG LPIPS is its only weighted column; MagicBrush: CLIP-I, DINO, CLIP-T; PIE-Bench: structure
    # (DINO ViT-B/8), LPIPS x1e3, CLIP whole / edited.
    assert metrics_reported("shapes") == {"lpips"}
    assert metrics_reported("manifest") == {"lpips"}
    assert metrics_reported("magicbrush") == {"clip_i", "dino", "clip"}
    assert metrics_reported("pie-bench") == {"structure", "lpips", "clip"}


def test_unreported_metrics_are_never_built(monkeypatch) -> None:
    def boom(*a, **k):
        raise AssertionError("weights looked for a metric the benchmark does not report")

    monkeypatch.setattr(suite, "ClipScorer", boom)
    monkeypatch.setattr(suite, "DinoScorer", boom)
    monkeypatch.setattr(runner, "StructureDistance", boom)
    metrics, structure, reasons = runner.build_metrics(download=True, offline=True, only={"lpips"})
    assert structure is None and reasons == {"structure_x1e3": "not reported for this benchmark"}
    assert metrics.unavailable["clip"] == metrics.unavailable["dino"] == "not reported for this benchmark"


def test_eval_and_compare_alike_offline_said_once_no_connection(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    probes = []
    monkeypatch.setattr(weights, "network_reachable", lambda timeout=2.0: probes.append(timeout) or False)
    attempts = []
    real_connect = socket.socket.connect

    def connect(self, address):
        if not (isinstance(address, tuple) and address[0] in ("127.0.0.1", "localhost", "::1")):
            attempts.append(address)
            raise OSError("test: no network")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    calls = []
    real_build = runner.build_metrics
    monkeypatch.setattr(runner, "build_metrics", lambda *a, **k: calls.append(k) or real_build(*a, **k))

    assert main(["eval", "--benchmark", "shapes-test", "--n", "2", "--out", str(tmp_path / "eval"),
                 "--no-progress", "--no-report"]) == 0
    first = capsys.readouterr()
    models = tmp_path / "models"
    models.mkdir()
    (models / "shapes-rm-her").symlink_to(ROOT / "rm_edit" / "models" / "shapes-rm-her")
    assert main(["eval", "compare", "--models", str(models), "--n", "1", "--out", str(tmp_path / "cmp"),
                 "--no-progress"]) == 0
    second = capsys.readouterr()
    for captured in (first, second):
        assert captured.err.count("the Hugging Face hub is unreachable") == 1
    assert len(probes) == 2 and attempts == []
    assert [(c["download"], c["offline"], set(c["only"])) for c in calls] == [(True, True, {"lpips"})] * 2

"""Metric weights: the libraries' caches (filled only when online), --offline / HF_HUB_OFFLINE, n/a with a reason.
No test touches the network: HF_HUB_OFFLINE=1 (conftest) and caches pointed at empty or hand-built folders."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from rm_edit.metrics import EditMetrics, MetricUnavailable
from rm_edit.metrics.quality import DinoScorer
from rm_edit.metrics.weights import hub_file, offline_mode, torchvision_weights


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for var in ("RM_EDIT_CLIP_WEIGHTS", "RM_EDIT_CLIP_I_WEIGHTS", "RM_EDIT_DINO_WEIGHTS", "RM_EDIT_STRUCTURE_WEIGHTS"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def _fake_hub_cache(root: Path, repo: str, filename: str, tensors: dict) -> Path:
    """The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<commit>/<file>}."""
    folder = root / "hf" / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0123abcd")
    snap = folder / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    save_file(tensors, str(snap / filename))
    return snap / filename


def test_offline_switches(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    assert offline_mode() is False and offline_mode(True) is True
    for value in ("1", "true", "YES", "on"):
        monkeypatch.setenv("HF_HUB_OFFLINE", value)
        assert offline_mode() is True
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert offline_mode() is False


def test_offline_with_empty_caches_reports_every_backbone_na(empty_caches):
    metrics = EditMetrics.from_pretrained(offline=True)
    assert (metrics.lpips, metrics.clip, metrics.clip_i, metrics.dino) == (None, None, None, None)
    assert "network is off" in metrics.unavailable["clip"] and "vit_large_patch14_clip_224.openai" in metrics.unavailable["clip"]
    assert "vit_base_patch32_clip_224.openai" in metrics.unavailable["clip_i"]
    assert "timm/vit_small_patch16_224.dino" in metrics.unavailable["dino"]
    assert "squeezenet1_1" in metrics.unavailable["lpips"] and "network is off" in metrics.unavailable["lpips"]
    values = metrics.compute(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8),
                             target=np.zeros((8, 8, 3), np.uint8), target_caption="a black square")
    assert values["clip_i"] is None and "network is off" in values["reasons"]["clip_i"]
    assert values["clip_t"] is None and values["edit_success"] == 1.0  # the rest still computed


def test_weights_come_from_the_library_cache_offline(empty_caches):
    import timm

    name = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"
    repo = timm.models.get_pretrained_cfg(name).hf_hub_id
    state = timm.create_model(name, pretrained=False, num_classes=0, img_size=32).state_dict()
    path = _fake_hub_cache(empty_caches, repo, "model.safetensors", state)
    assert hub_file(repo, "model.safetensors", "test", offline=True) == path
    dino = DinoScorer(name, download=True, offline=True, image_size=32)
    assert dino.weights == str(path)
    image = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    assert dino.image_similarity(image, image) == pytest.approx(1.0, abs=1e-5)


def test_torchvision_cache(empty_caches):
    url = "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth"
    with pytest.raises(MetricUnavailable, match="squeezenet1_1-b8a52dc0.pth is not in .* network is off"):
        torchvision_weights(url, "LPIPS-squeeze", offline=True)
    cached = empty_caches / "torch" / "hub" / "checkpoints" / "squeezenet1_1-b8a52dc0.pth"
    cached.parent.mkdir(parents=True)
    torch.save({"x": torch.zeros(1)}, cached)
    assert torchvision_weights(url, "LPIPS-squeeze", offline=True) == cached

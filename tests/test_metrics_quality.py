"""Quality metrics (pixel, random-weight CLIP / DINO), offline guards, and the metric suite."""

import math

import numpy as np
import pytest
import torch

from rm_edit.metrics import (
    LPIPS,
    ClipScorer,
    DinoScorer,
    EditMetrics,
    MetricUnavailable,
    aggregate,
    pixel_metrics,
)

TINY_CLIP = {"image_size": 64, "context_length": 16}
ENV_VARS = ("RM_EDIT_CLIP_WEIGHTS", "RM_EDIT_CLIP_I_WEIGHTS", "RM_EDIT_DINO_WEIGHTS")


@pytest.fixture(autouse=True)
def no_weight_env(monkeypatch):
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def no_downloads(monkeypatch):
    import huggingface_hub
    import open_clip.factory

    def refuse(*args, **kwargs):
        raise AssertionError("attempted a download")

    monkeypatch.setattr(open_clip.factory, "download_pretrained", refuse)
    monkeypatch.setattr(open_clip.factory, "download_pretrained_from_hf", refuse)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.fixture(scope="module")
def clip():
    # ViT-S-32 has no public weights; small inputs keep the random towers cheap on CPU.
    return ClipScorer("ViT-S-32", allow_random_weights=True, **TINY_CLIP)


def _images():
    g = torch.Generator().manual_seed(0)
    return torch.rand(3, 32, 32, generator=g), torch.rand(3, 32, 32, generator=g)


def test_pixel_metrics_by_hand():
    target = np.zeros((4, 4, 3), dtype=np.float32)
    edit = target.copy()
    edit[1, 2] = 0.5  # one pixel off by 0.5 in all channels: 3 of 48 values
    m = pixel_metrics(edit, target)
    assert m["l1"] == pytest.approx(1.5 / 48)
    assert m["l2"] == pytest.approx(0.75 / 48)
    assert m["psnr"] == pytest.approx(10 * math.log10(64))
    assert math.isinf(pixel_metrics(edit, edit)["psnr"])


def test_random_clip_similarities(clip):
    a, b = _images()
    assert clip.image_similarity(a, a) == pytest.approx(1.0, abs=1e-5)
    assert clip.image_similarity(a, b) < 1.0 - 1e-6
    # Each score from the unit embeddings, worked out here: cosine = dot product of unit vectors.
    img, txt = clip.encode_images([a, b]), clip.encode_texts(["a photo of a cat", "a cat", "a dog"])
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(2))
    cos = float(img[0] @ txt[0])
    assert clip.text_similarity(a, "a photo of a cat") == pytest.approx(cos, abs=1e-6)
    assert clip.clip_score(a, "a photo of a cat") == pytest.approx(100 * max(cos, 0.0), abs=1e-4)
    assert clip.text_similarity(a, "a photo of a cat", torch.ones(32, 32)) == pytest.approx(cos, abs=1e-6)
    half = torch.zeros(32, 32)
    half[:, :16] = 1.0  # the masked score is the score of the image times the mask
    assert clip.text_similarity(a, "a photo of a cat", half.bool()) == pytest.approx(
        float(clip.encode_images([a * half])[0] @ txt[0]), abs=1e-6)
    d_img, d_txt = img[1] - img[0], txt[2] - txt[1]
    expected = float(d_img @ d_txt / (d_img.norm() * d_txt.norm()))
    assert clip.directional_similarity(a, b, "a cat", "a dog") == pytest.approx(expected, abs=1e-5)
    assert math.isnan(clip.directional_similarity(a, a, "a cat", "a dog"))


def test_random_clip_is_deterministic(clip):
    a, b = _images()
    first = clip.text_similarity(a, "a red car")
    assert clip.text_similarity(a, "a red car") == first
    # Same seed -> same random weights -> same score from a fresh scorer.
    again = ClipScorer("ViT-S-32", allow_random_weights=True, **TINY_CLIP)
    assert again.text_similarity(a, "a red car") == pytest.approx(first, abs=1e-6)
    assert again.image_similarity(a, b) == pytest.approx(clip.image_similarity(a, b), abs=1e-6)


def test_clip_unavailable_instead_of_download(tmp_path, monkeypatch, no_downloads):
    with pytest.raises(MetricUnavailable) as exc:
        ClipScorer()
    assert exc.value.reason == "no CLIP weights: pass --clip-weights or set RM_EDIT_CLIP_WEIGHTS"
    with pytest.raises(MetricUnavailable, match="not found"):
        ClipScorer("ViT-S-32", weights=tmp_path / "missing.bin")
    # An env var pointing nowhere is an error even when random weights are allowed.
    monkeypatch.setenv("RM_EDIT_CLIP_WEIGHTS", str(tmp_path / "missing.bin"))
    with pytest.raises(MetricUnavailable, match="not found"):
        ClipScorer("ViT-S-32", allow_random_weights=True)
    with pytest.raises(MetricUnavailable, match="unknown open_clip model"):
        ClipScorer("hf-hub:someone/something", allow_random_weights=True)


def test_clip_local_weights_go_to_open_clip_as_a_path(tmp_path, monkeypatch, no_downloads):
    import open_clip

    weights = tmp_path / "clip.bin"
    weights.write_bytes(b"")
    seen = {}

    def fake_create(name, pretrained=None, **kwargs):
        seen.update(name=name, pretrained=pretrained)
        raise RuntimeError("stop")

    monkeypatch.setattr(open_clip, "create_model_and_transforms", fake_create)
    monkeypatch.setenv("RM_EDIT_CLIP_WEIGHTS", str(weights))
    with pytest.raises(RuntimeError, match="stop"):
        ClipScorer("ViT-B-32-quickgelu")
    assert seen == {"name": "ViT-B-32-quickgelu", "pretrained": str(weights)}


def test_dino_random_and_local_file(tmp_path, no_downloads):
    with pytest.raises(MetricUnavailable, match="RM_EDIT_DINO_WEIGHTS"):
        DinoScorer()
    a, b = _images()
    # vit_tiny keeps the state-dict round trip small; the loading path is the same as ViT-S/16.
    rand = DinoScorer("vit_tiny_patch16_224", allow_random_weights=True, seed=3, image_size=64)
    assert rand.image_similarity(a, a) == pytest.approx(1.0, abs=1e-5)
    path = tmp_path / "dino.pth"
    torch.save(rand.model.state_dict(), path)
    loaded = DinoScorer("vit_tiny_patch16_224", weights=path, seed=4, image_size=64)
    assert loaded.image_similarity(a, b) == pytest.approx(rand.image_similarity(a, b), abs=1e-6)


def test_suite_degrades_to_none_with_reasons(tmp_path, monkeypatch, no_downloads):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    em = EditMetrics.from_local()
    assert set(em.unavailable) == {"lpips", "clip", "clip_i", "dino"}
    src, _ = _images()
    edit = src.clone()
    edit[:, :8, :8] = 1.0
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[:8, :8] = True
    r = em.compute(src, edit, target=edit, mask=mask, target_caption="a dog")
    assert r["clip_score"] is None
    assert r["reasons"]["clip_score"] == "no CLIP weights: pass --clip-weights or set RM_EDIT_CLIP_WEIGHTS"
    assert r["bg_lpips"] is None and "squeezenet" in r["reasons"]["bg_lpips"]
    assert r["dino"] is None and r["clip_i"] is None
    assert r["target_l1"] == 0.0 and math.isinf(r["pie_psnr"]) and r["bg_mse"] == 0.0
    assert r["loc_leakage"] == 0.0 and r["loc_iou"] > 0.5
    assert r["clip_directional"] is None and "captions" in r["reasons"]["clip_directional"]
    assert "tok_iou" not in r  # token metrics only for token-model runs


def test_suite_with_random_backbones(clip):
    em = EditMetrics(lpips=LPIPS("squeeze", pretrained=False), clip=clip, clip_i=clip)
    a, b = _images()
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[:16] = True
    remasked = torch.zeros(4, 4, dtype=torch.bool)
    remasked[:2] = True
    codes = torch.arange(16).reshape(4, 4)
    r = em.compute(
        a, b, target=a, mask=mask, source_caption="a cat", target_caption="a dog",
        remasked=remasked, source_codes=codes, edited_codes=codes,
    )
    assert r["clip_i"] == pytest.approx(clip.image_similarity(b, a))
    assert r["clip_score"] == pytest.approx(clip.clip_score(b, "a dog"))
    assert r["bg_lpips"] > 0 and r["pie_lpips_x1e3"] > 0
    assert r["tok_iou"] == 1.0 and r["tok_kept_outside"] == 1.0
    assert r["dino"] is None and r["reasons"] == {"dino": "dino backbone not configured"}


def test_aggregate_mean_count_inf_missing():
    samples = [
        {"a": 1.0, "b": None, "reasons": {"b": "x"}},
        {"a": 3.0, "b": math.inf},
        {"a": math.nan, "b": 2.0},
    ]
    agg = aggregate(samples)
    assert agg["a"] == {"mean": 2.0, "count": 2, "n_inf": 0, "n_missing": 1}
    assert agg["b"] == {"mean": 2.0, "count": 1, "n_inf": 1, "n_missing": 1}
    assert "reasons" not in agg
    assert aggregate([{"c": None}])["c"]["mean"] is None

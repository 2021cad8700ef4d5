"""Background preservation: PIE-Bench arithmetic, masked mode, RLE, offline LPIPS."""

import math

import numpy as np
import pytest
import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from rm_edit.metrics import (
    LPIPS,
    MetricUnavailable,
    background_metrics,
    decode_pie_bench_rle,
    scale_pie_bench,
)


@pytest.fixture(scope="module")
def lp():
    return LPIPS("squeeze", pretrained=False)


@pytest.fixture
def no_downloads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("attempted a download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


def test_rle_decode_with_forced_border():
    # 5x6 = 30 pixels; run (8, 3) -> 8, 9, 10; run (27, 100) clipped to 27..29.
    got = decode_pie_bench_rle([8, 3, 27, 100], height=5, width=6)
    expected = np.array(
        [
            [1, 1, 1, 1, 1, 1],
            [1, 0, 1, 1, 1, 1],
            [1, 0, 0, 0, 0, 1],
            [1, 0, 0, 0, 0, 1],
            [1, 1, 1, 1, 1, 1],
        ],
        dtype=bool,
    )
    assert got.dtype == bool and np.array_equal(got, expected)
    assert decode_pie_bench_rle([], 3, 3).sum() == 8  # border only; centre stays 0
    with pytest.raises(ValueError):
        decode_pie_bench_rle([1, 2, 3], 5, 6)


def _hand_pair():
    """8x8: left half is the edit region; one background pixel differs by 0.5 in RGB."""
    src = torch.zeros(3, 8, 8)
    edit = src.clone()
    edit[:, :, :4] = 1.0  # edit region, wildly changed
    edit[:, 0, 7] = 0.5
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[:, :4] = True
    return edit, src, mask


def test_pie_bench_vs_masked_by_hand():
    edit, src, mask = _hand_pair()
    pie = background_metrics(edit, src, mask, mode="pie-bench")
    masked = background_metrics(edit, src, mask, mode="masked")
    # PIE-Bench: error averaged over all 64 pixels; masked: over the 32 background pixels.
    assert pie["mse"] == pytest.approx(0.25 / 64)
    assert pie["psnr"] == pytest.approx(10 * math.log10(256))
    assert masked["mse"] == pytest.approx(0.25 / 32)
    assert masked["psnr"] == pytest.approx(10 * math.log10(128))

    scaled = scale_pie_bench(pie)
    assert scaled["mse"] == pytest.approx(0.25 / 64 * 1e4)
    assert scaled["ssim"] == pytest.approx(pie["ssim"] * 100)
    assert scaled["psnr"] == pie["psnr"]

    # SSIM: both read the same (gaussian 11, sigma 1.5) map of the zeroed images.
    keep = (~mask).float()
    _, smap = structural_similarity_index_measure(
        (edit * keep)[None], (src * keep)[None], gaussian_kernel=True, sigma=1.5,
        kernel_size=11, data_range=1.0, return_full_image=True,
    )
    smap = smap[0].mean(0)
    assert pie["ssim"] == pytest.approx(float(smap.mean()), abs=1e-6)
    assert masked["ssim"] == pytest.approx(float(smap[~mask].mean()), abs=1e-6)
    assert masked["ssim"] != pytest.approx(pie["ssim"], abs=1e-3)


def test_edit_region_content_never_reaches_background(lp):
    edit, src, mask = _hand_pair()
    other = edit.clone()
    other[:, :, :4] = torch.rand(3, 8, 4)
    for mode in ("pie-bench", "masked"):
        a = background_metrics(edit, src, mask, mode=mode)
        b = background_metrics(other, src, mask, mode=mode)
        assert a == pytest.approx(b)
    big = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))
    big_mask = torch.zeros(32, 32, dtype=torch.bool)
    big_mask[8:24, 8:24] = True
    changed = big.clone()
    changed[:, 8:24, 8:24] = 0.3
    for mode in ("pie-bench", "masked"):
        r = background_metrics(changed, big, big_mask, mode=mode, lpips_model=lp)
        assert r["lpips"] == pytest.approx(0.0, abs=1e-6) and math.isinf(r["psnr"])


def test_modes_agree_without_mask_and_nan_without_background():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 8, 8, generator=g), torch.rand(3, 8, 8, generator=g)
    pie = background_metrics(a, b, None, mode="pie-bench")
    assert background_metrics(a, b, None, mode="masked") == pytest.approx(pie)
    assert all(math.isnan(v) for v in background_metrics(a, b, torch.ones(8, 8), mode="masked").values())
    with pytest.raises(ValueError):
        background_metrics(a, b, None, mode="bogus")  # type: ignore[arg-type]


def test_numpy_hwc_matches_torch_chw():
    edit, src, mask = _hand_pair()
    np_res = background_metrics(edit.permute(1, 2, 0).numpy(), src.permute(1, 2, 0).numpy(), mask.numpy())
    assert np_res == pytest.approx(background_metrics(edit, src, mask))


def test_random_lpips_identical_zero_different_positive_spatial_mean(lp):
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 32, 32, generator=g), torch.rand(3, 32, 32, generator=g)
    assert lp.distance(a, a) == pytest.approx(0.0, abs=1e-7)
    d = lp.distance(a, b)
    assert d > 0
    dmap = lp.distance_map(a, b)
    assert dmap.shape == (32, 32) and float(dmap.min()) >= 0
    # Upsampled per-layer maps: their mean tracks the pooled value closely (not bit-exactly).
    assert float(dmap.mean()) == pytest.approx(d, rel=0.05)
    assert LPIPS("squeeze", pretrained=False).distance(a, b) == pytest.approx(d)  # seeded

    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[:, :16] = True
    keep = (~mask).float()
    expected = lp.distance_map(a * keep, b * keep)[~mask].mean()
    got = background_metrics(a, b, mask, mode="masked", lpips_model=lp)["lpips"]
    assert got == pytest.approx(float(expected))
    pie = background_metrics(a, b, mask, mode="pie-bench", lpips_model=lp)["lpips"]
    assert pie == pytest.approx(lp.distance(a * keep, b * keep))


def test_lpips_unavailable_without_trunk_and_never_downloads(tmp_path, monkeypatch, no_downloads):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MetricUnavailable) as exc:
        LPIPS("squeeze", pretrained=True)
    assert "squeezenet1_1" in exc.value.reason and str(tmp_path) in exc.value.reason


def test_lpips_pretrained_reads_local_trunk_and_packaged_heads(tmp_path, monkeypatch, no_downloads):
    import os

    import lpips
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    trunk = torchvision.models.squeezenet1_1(weights=None).state_dict()
    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.save(trunk, ckpt / "squeezenet1_1-b8a52dc0.pth")

    model = LPIPS("squeeze", pretrained=True).model
    assert torch.equal(model.net.slice1[0].weight, trunk["features.0.weight"])
    assert torch.equal(getattr(model.net.slice7, "12").expand3x3.weight, trunk["features.12.expand3x3.weight"])
    heads = torch.load(os.path.join(os.path.dirname(lpips.__file__), "weights/v0.1/squeeze.pth"), map_location="cpu", weights_only=True)
    assert torch.equal(model.lin0.model[-1].weight, heads["lin0.model.1.weight"])

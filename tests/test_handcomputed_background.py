"""Background metrics' edges worked out by hand: PIE-Bench's RLE masks, the reporting scale, an all-edit mask,
the LPIPS input range and the one-line errors."""

import math

import numpy as np
import pytest
import torch

from rm_edit.metrics import LPIPS, background_metrics, decode_pie_bench_rle, scale_pie_bench


def test_rle_runs_border_and_default_size():
    # 6 x 6 image, runs [8, 3] -> pixels 8, 9, 10 (row 1, cols 2-4), [26, 2] -> 26, 27 (row 4, cols 2-3) and
    # [33, 10] -> 33..35 (clipped at 36, on the border row)
    m = decode_pie_bench_rle([8, 3, 26, 2, 33, 10], height=6, width=6)
    expected = np.ones((6, 6), dtype=bool)  # the 1-pixel border is forced to 1
    expected[1:5, 1:5] = False
    expected[1, 2:5] = True
    expected[4, 2:4] = True
    assert m.tolist() == expected.tolist()
    # a run may start at pixel 0 and have length 0: 5 x 5, [0, 0] marks nothing, [6, 1] the interior pixel (1, 1)
    interior = decode_pie_bench_rle([0, 0, 6, 1], height=5, width=5)[1:4, 1:4]
    assert interior.tolist() == [[True, False, False], [False, False, False], [False, False, False]]
    assert decode_pie_bench_rle([]).shape == (512, 512)  # PIE-Bench's images


@pytest.mark.parametrize("rle, message", [
    ([1, 2, 3], r"PIE-Bench RLE must have an even number of entries \(\[start, length\] pairs\)"),
    ([-1, 2], r"negative RLE run \(-1, 2\)"),
    ([3, -2], r"negative RLE run \(3, -2\)"),
])
def test_rle_errors(rle, message):
    with pytest.raises(ValueError, match=message):
        decode_pie_bench_rle(rle, height=4, width=4)


def test_scale_pie_bench_scales_only_its_four_metrics():
    # LPIPS x1e3, MSE x1e4, SSIM x1e2, PSNR as is; None stays None; anything else untouched
    got = scale_pie_bench({"psnr": 30.0, "lpips": 0.02, "mse": 0.001, "ssim": 0.9, "other": 2.0, "clip": None})
    assert got == pytest.approx({"psnr": 30.0, "lpips": 20.0, "mse": 10.0, "ssim": 90.0, "other": 2.0, "clip": None})


@pytest.fixture(scope="module")
def lp():
    return LPIPS(pretrained=False)


def test_masked_mode_with_no_background_is_nan_for_every_metric(lp):
    a = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    everything = torch.ones(8, 8, dtype=torch.bool)
    plain = background_metrics(a, 1 - a, everything, mode="masked")
    assert set(plain) == {"psnr", "mse", "ssim"} and all(math.isnan(v) for v in plain.values())
    with_lpips = background_metrics(a, 1 - a, everything, mode="masked", lpips_model=lp)
    assert set(with_lpips) == {"psnr", "mse", "ssim", "lpips"} and all(math.isnan(v) for v in with_lpips.values())


def test_background_errors_name_the_culprit():
    a = torch.zeros(3, 8, 8)
    with pytest.raises(ValueError, match=r"image and mask differ in size: \(8, 8\) vs \(4, 4\)"):
        background_metrics(a, a, torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="mode must be 'pie-bench' or 'masked', got 'nope'"):
        background_metrics(a, a, mode="nope")
    with pytest.raises(ValueError, match=r"net must be one of \['alex', 'squeeze', 'vgg'\], got 'nope'"):
        LPIPS("nope", pretrained=False)


def test_lpips_scores_inputs_mapped_to_minus_one_one(lp):
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(3, 32, 32, generator=g), torch.rand(3, 32, 32, generator=g)
    # [0, 1] -> 2x - 1 in [-1, 1], lpips' convention, applied here by hand
    with torch.no_grad():
        expected = float(lp.model(a[None] * 2 - 1, b[None] * 2 - 1).mean())
    assert lp.distance(a, b) == pytest.approx(expected, rel=1e-6)
    # defaults: squeeze trunk, seed 0, frozen
    assert lp.net == "squeeze" and not any(p.requires_grad for p in lp.model.parameters())
    assert LPIPS(pretrained=False, seed=0).distance(a, b) == pytest.approx(lp.distance(a, b), rel=1e-6)

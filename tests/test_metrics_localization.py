"""Edit localization metrics against hand-computed values on tiny grids."""

import math

import numpy as np
import pytest
import torch

from rm_edit.metrics import (
    change_map,
    changed_tokens,
    downsample_mask,
    kept_outside_fraction,
    localization_scores,
    token_localization,
)


def test_change_map_is_max_channel_abs_diff_in_every_convention():
    src = np.zeros((2, 2, 3), dtype=np.float32)
    edit = src.copy()
    edit[0, 0] = [0.1, 0.5, 0.2]  # max channel 0.5
    edit[1, 1] = [0.0, 0.0, 0.3]
    src[1, 0] = [0.0, 0.25, 0.0]  # |edit - src| = 0.25
    expected = torch.tensor([[0.5, 0.0], [0.25, 0.3]])

    assert torch.allclose(change_map(edit, src), expected)
    chw = change_map(torch.from_numpy(edit).permute(2, 0, 1), torch.from_numpy(src).permute(2, 0, 1))
    assert torch.allclose(chw, expected)
    u8 = change_map((edit * 255).round().astype(np.uint8), (src * 255).round().astype(np.uint8))
    assert torch.allclose(u8, expected, atol=1 / 255)


def test_pixel_scores_by_hand():
    gt = np.zeros((4, 4), dtype=bool)
    gt[:2, :2] = True  # 4 edit pixels, 12 outside
    change = np.zeros((4, 4), dtype=np.float32)
    for y, x in [(0, 0), (0, 1), (1, 0), (2, 2), (3, 3)]:
        change[y, x] = 0.8
    # TP = 3, FP = 2, FN = 1
    s = localization_scores(change, gt, threshold=0.1)
    assert s["precision"] == pytest.approx(3 / 5)
    assert s["recall"] == pytest.approx(3 / 4)
    assert s["iou"] == pytest.approx(3 / 6)
    assert s["leakage"] == pytest.approx(2 / 12)


def test_threshold_is_strict():
    gt = np.array([[True, False]])
    s = localization_scores(np.array([[0.1, 0.0]]), gt, threshold=0.1)
    assert s["recall"] == 0.0


def test_auroc_by_hand_with_tie():
    # positives {0.9, 0.5}, negatives {0.5, 0.1}: pairs 1 + 1 + 0.5 (tie) + 1 -> 3.5 / 4
    change = np.array([[0.9, 0.5], [0.5, 0.1]], dtype=np.float32)
    gt = np.array([[True, True], [False, False]])
    assert localization_scores(change, gt)["auroc"] == pytest.approx(0.875)
    assert localization_scores(np.array([[0.9, 0.8], [0.2, 0.1]]), gt)["auroc"] == pytest.approx(1.0)
    assert localization_scores(np.array([[0.1, 0.2], [0.8, 0.9]]), gt)["auroc"] == pytest.approx(0.0)


def test_empty_set_conventions():
    gt = np.zeros((3, 3), dtype=bool)
    gt[1, 1] = True
    noop = localization_scores(np.zeros((3, 3)), gt)
    assert noop == {"precision": 1.0, "recall": 0.0, "iou": 0.0, "leakage": 0.0, "auroc": 0.5}

    nothing_to_do = localization_scores(np.zeros((3, 3)), np.zeros((3, 3), dtype=bool))
    assert [nothing_to_do[k] for k in ("precision", "recall", "iou", "leakage")] == [1.0, 1.0, 1.0, 0.0]
    assert math.isnan(nothing_to_do["auroc"])  # one class only: undefined

    everything = localization_scores(np.full((3, 3), 0.5), np.ones((3, 3), dtype=bool))
    assert everything["leakage"] == 0.0 and everything["iou"] == 1.0
    assert math.isnan(everything["auroc"])


def test_token_level_by_hand():
    remasked = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]], dtype=bool)
    gt = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=bool)
    # TP 3, FP 1, FN 1, outside 5
    s = token_localization(remasked, torch.from_numpy(gt))
    assert s == pytest.approx({"precision": 3 / 4, "recall": 3 / 4, "iou": 3 / 5, "leakage": 1 / 5})


def test_changed_tokens_and_kept_outside():
    src = np.arange(9).reshape(3, 3)
    tgt = src.copy()
    tgt[0, 0] = 100
    assert changed_tokens(src, tgt).tolist() == [[True, False, False], [False] * 3, [False] * 3]

    gt = np.zeros((3, 3), dtype=bool)
    gt[0, :] = True  # 6 tokens outside
    edited = src.copy()
    edited[0, 1] = 50  # inside: does not count
    edited[2, 2] = 51  # outside: one of 6 lost
    assert kept_outside_fraction(src, edited, gt) == pytest.approx(5 / 6)
    assert kept_outside_fraction(src, edited, np.ones((3, 3), dtype=bool)) == 1.0


def test_downsample_mask_any_pixel_marks_token():
    m = np.zeros((4, 4), dtype=bool)
    m[3, 0] = True
    assert downsample_mask(m, (2, 2)).tolist() == [[False, False], [True, False]]

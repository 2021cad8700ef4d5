"""Pixel edit success on tiny hand-built 8-bit images; every expected figure is worked out by hand."""

import numpy as np
import pytest

from rm_edit.metrics import EditMetrics, EditSuccess, edit_success, edit_success_rates


def black(h: int = 8, w: int = 8) -> np.ndarray:
    return np.zeros((h, w, 3), np.uint8)


def one_red_pixel(h: int = 8, w: int = 8, at=(3, 3)) -> tuple[np.ndarray, np.ndarray]:
    """Source black; target with one pure-red pixel at ``at``."""
    s, t = black(h, w), black(h, w)
    t[at] = (255, 0, 0)
    return s, t


def test_close_enough_and_nothing_far_moved_is_a_success():
    s, t = one_red_pixel()
    o = s.copy()
    o[3, 3] = (204, 0, 0)
    r = edit_success(s, o, t)
    # changed = {(3,3)}; mean|S-T| = (255+0+0)/3/255 = 1/3, mean|O-T| = (51+0+0)/3/255 = 1/15 -> 0.2
    assert r.changed_error_ratio == pytest.approx(0.2, abs=1e-9)
    assert r.far_changed_fraction == 0.0
    assert r.success is True
    assert r.as_row() == {"edit_success": 1.0, "changed_error_ratio": r.changed_error_ratio,
                          "far_changed_fraction": 0.0}


@pytest.mark.parametrize("red, ratio, ok", [
    (192, 63 / 255, True),   # |O-T| = 63 -> 63/255 = 0.247 <= 0.25
    (191, 64 / 255, False),  # |O-T| = 64 -> 64/255 = 0.251 > 0.25
    (0, 1.0, False),         # the output is the source: ratio 1
])
def test_the_output_must_be_four_times_closer_than_the_source(red, ratio, ok):
    s, t = one_red_pixel()
    o = s.copy()
    o[3, 3] = (red, 0, 0)
    r = edit_success(s, o, t)
    assert r.changed_error_ratio == pytest.approx(ratio, abs=1e-9)
    assert r.success is ok


def test_the_error_is_a_mean_over_channels_and_changed_pixels():
    s, t = black(), black()
    t[3, 3] = (255, 255, 0)  # yellow: two channels change
    o = s.copy()
    o[3, 3] = (255, 0, 0)
    # mean|S-T| = (255+255+0)/3, mean|O-T| = (0+255+0)/3 -> ratio 1/2
    assert edit_success(s, o, t).changed_error_ratio == pytest.approx(0.5, abs=1e-9)
    s, t = black(), black()
    t[3, 3] = t[3, 4] = (255, 0, 0)
    o = s.copy()
    o[3, 3] = (255, 0, 0)  # one of the two changed pixels made
    # mean|S-T| = 2*255 / 6 values, mean|O-T| = 255 / 6 -> 1/2
    r = edit_success(s, o, t)
    assert r.changed_error_ratio == pytest.approx(0.5, abs=1e-9)
    assert r.success is False


def test_far_means_more_than_two_pixels_away_chebyshev():
    s, t = one_red_pixel()
    o = t.copy()
    o[5, 5] = (0, 255, 0)  # Chebyshev distance 2 from (3,3): inside the 5x5 dilation, not judged
    o[1, 1] = (0, 0, 255)  # distance 2 the other way
    r = edit_success(s, o, t)
    assert r.far_changed_fraction == 0.0 and r.success is True
    o[6, 3] = (0, 255, 0)  # distance 3: far. Far pixels = 64 - 5*5 = 39 -> 1/39 = 0.0256 > 0.01
    r = edit_success(s, o, t)
    assert r.far_changed_fraction == pytest.approx(1 / 39, abs=1e-12)
    assert r.changed_error_ratio == 0.0
    assert r.success is False


@pytest.mark.parametrize("level, moved", [(38, False), (39, True)])  # 38/255 = 0.149, 39/255 = 0.153
def test_a_far_pixel_moves_when_a_channel_differs_by_more_than_0_15(level, moved):
    s, t = one_red_pixel()
    o = t.copy()
    o[7, 7] = (0, 0, level)
    assert edit_success(s, o, t).far_changed_fraction == pytest.approx(1 / 39 if moved else 0.0, abs=1e-12)


@pytest.mark.parametrize("n_moved, fraction, ok", [
    (2, 2 / 231, True),   # 16x16 = 256 pixels, 25 near the change -> 231 far; 2/231 = 0.0087 <= 0.01
    (3, 3 / 231, False),  # 3/231 = 0.0130 > 0.01
])
def test_at_most_one_percent_of_far_pixels_may_move(n_moved, fraction, ok):
    s, t = one_red_pixel(16, 16, at=(8, 8))
    o = t.copy()
    for i in range(n_moved):
        o[0, i] = (255, 255, 255)
    r = edit_success(s, o, t)
    assert r.far_changed_fraction == pytest.approx(fraction, abs=1e-12)
    assert r.success is ok


def test_no_change_in_the_target_and_no_far_pixels():
    s = black()
    o = s.copy()
    assert edit_success(s, o, s) == EditSuccess(True, 0.0, 0.0)  # (a) holds when nothing changed
    o[0, 0] = (255, 255, 255)  # nothing changed: all 64 pixels are far -> 1/64 = 0.0156 > 0.01
    r = edit_success(s, o, s)
    assert r.far_changed_fraction == pytest.approx(1 / 64, abs=1e-12) and r.success is False
    s4, t4 = one_red_pixel(4, 4, at=(1, 1))  # the 5x5 square around (1,1) covers the whole 4x4 image
    o4 = t4.copy()
    o4[3, 3] = (255, 255, 255)
    assert edit_success(s4, o4, t4) == EditSuccess(True, 0.0, 0.0)


def test_float_images_in_zero_one():
    s = np.zeros((8, 8, 3), np.float32)
    t = s.copy()
    t[3, 3] = (1.0, 0.0, 0.0)
    o = t.copy()
    o[3, 3] = (0.5, 0.0, 0.0)  # ratio (0.5/3) / (1/3) = 0.5
    r = edit_success(s, o, t)
    assert r.changed_error_ratio == pytest.approx(0.5, abs=1e-9) and r.success is False


def test_bad_inputs_name_the_culprit():
    s, t = one_red_pixel()
    with pytest.raises(ValueError, match="source and output differ in size"):
        edit_success(s, black(8, 9), t)
    with pytest.raises(ValueError, match="source and target differ in size"):
        edit_success(s, s, black(9, 8))
    with pytest.raises(ValueError, match="target must be an RGB image"):
        edit_success(s, s, np.zeros((8, 8), np.uint8))


def test_rates_by_edit_type():
    rows = [
        {"edit_type": "remove", "edit_success": 1.0}, {"edit_type": "remove", "edit_success": 0.0},
        {"edit_type": "recolour", "edit_success": True},
        {"edit_type": "move", "edit_success": None},  # not judged (no target): left out
        {"edit_success": 1.0},  # no edit type: counts overall only
    ]
    rates = edit_success_rates(rows)
    assert rates["overall"] == {"rate": 0.75, "successes": 3, "n": 4}  # 3 successes of 4 judged
    assert rates["by_edit_type"] == {"recolour": {"rate": 1.0, "successes": 1, "n": 1},
                                     "remove": {"rate": 0.5, "successes": 1, "n": 2}}
    assert edit_success_rates([])["overall"] == {"rate": None, "successes": 0, "n": 0}


def test_the_suite_writes_success_first_hand_figures_and_reasons():
    s, t = one_red_pixel()
    o = s.copy()
    o[3, 3] = (204, 0, 0)
    values = EditMetrics().compute(s, o, target=t)
    assert values["edit_success"] == 1.0
    assert values["changed_error_ratio"] == pytest.approx(0.2, abs=1e-9)
    assert values["far_changed_fraction"] == 0.0
    values = EditMetrics().compute(s, o)
    assert values["edit_success"] is None and values["reasons"]["edit_success"] == "no target image"

"""The metric modules' input conventions (rm_edit.metrics._image), value by value: which pixels a mask marks
in each container, how images become [0, 1] CxHxW, and the one-line errors."""

import numpy as np
import PIL.Image
import pytest
import torch

from rm_edit.metrics._image import check_same_size, to_chw, to_mask, to_pil


def test_mask_thresholds_by_container():
    # 8-bit 0/255: > 127 (127 is out, 128 in); 0/1 uint8: 1 is in; float: > 0.5 (0.5 is out)
    assert to_mask(np.array([[0, 127, 128, 255]], dtype=np.uint8)).tolist() == [[False, False, True, True]]
    assert to_mask(np.array([[0, 1, 1, 0]], dtype=np.uint8)).tolist() == [[False, True, True, False]]
    assert to_mask(np.array([[0.5, 0.51, 0.0, 1.0]])).tolist() == [[False, True, False, True]]
    assert to_mask(torch.tensor([[2, 0]])).tolist() == [[True, False]]  # int64 counts: > 0.5
    # PIL: read as 8-bit luminance (an RGB white pixel is in, a dark red one is not)
    rgb = np.zeros((1, 2, 3), dtype=np.uint8)
    rgb[0, 0] = 255
    rgb[0, 1] = [200, 0, 0]  # L = 0.299 * 200 = 60 -> out
    assert to_mask(PIL.Image.fromarray(rgb)).tolist() == [[True, False]]


def test_mask_with_channels_marks_a_pixel_when_any_channel_is_set():
    hwc = np.zeros((2, 3, 3), dtype=bool)  # numpy: channels last
    hwc[1, 2, 1] = True
    assert to_mask(hwc).tolist() == [[False, False, False], [False, False, True]]
    chw = torch.zeros(3, 2, 3, dtype=torch.bool)  # tensor: channels first
    chw[2, 0, 1] = True
    assert to_mask(chw).tolist() == [[False, True, False], [False, False, False]]
    with pytest.raises(ValueError, match=r"mask must be HxW, got shape \(2, 2, 2, 2\)"):
        to_mask(np.zeros((2, 2, 2, 2)))
    assert to_mask(np.ones((2, 2)), device="meta").device.type == "meta"


def test_images_become_float_chw_in_0_1():
    hwc = np.zeros((2, 3, 3), dtype=np.uint8)
    hwc[0, 1] = [255, 51, 0]  # 8-bit: / 255 -> 1.0, 0.2, 0.0
    t = to_chw(hwc)
    assert t.shape == (3, 2, 3) and t.dtype == torch.float32
    assert t[:, 0, 1].tolist() == pytest.approx([1.0, 0.2, 0.0])
    assert to_chw(torch.full((2, 2), 0.25)).shape == (1, 2, 2)  # a grey tensor: one channel
    assert to_chw(PIL.Image.new("L", (3, 2), 51))[:, 0, 0].tolist() == pytest.approx([0.2] * 3)  # PIL -> RGB
    assert to_chw(torch.zeros(3, 2, 2), device="meta").device.type == "meta"
    with pytest.raises(ValueError, match=r"expected HxWx3 numpy or 3xHxW tensor, got shape \(2, 2, 4\)"):
        to_chw(np.zeros((2, 2, 4)))
    with pytest.raises(TypeError, match="unsupported image type list"):
        to_chw([[0.0]])


def test_to_pil_gives_8bit_rgb():
    grey = to_pil(torch.full((1, 2, 2), 0.2))  # one channel -> three, 0.2 * 255 = 51
    assert grey.mode == "RGB" and np.asarray(grey)[0, 0].tolist() == [51, 51, 51]
    assert to_pil(torch.full((3, 1, 1), 2.0)).getpixel((0, 0)) == (255, 255, 255)  # clamped to [0, 1]
    assert to_pil(PIL.Image.new("L", (1, 1), 7)).getpixel((0, 0)) == (7, 7, 7)


def test_size_errors_name_both_sizes():
    with pytest.raises(ValueError, match=r"images differ in size: \(2, 3\) vs \(4, 5\)"):
        check_same_size(torch.zeros(3, 2, 3), torch.zeros(3, 4, 5))

"""Image tokenizer interface (rm_edit.vq) and the VQ training script's smoke run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import VQModel
from PIL import Image

from rm_edit.vq import (
    build_vq,
    codebook_size,
    crop_for_vq,
    decode_codes,
    encode_to_codes,
    restore_input_size,
    preprocess_image,
    small_vq_config,
    vq_downsample_factor,
)


@pytest.fixture(scope="module")
def vq() -> VQModel:
    torch.set_num_threads(1)
    return build_vq(small_vq_config(), seed=0).eval()


def test_small_config_shape_and_size(vq: VQModel) -> None:
    assert vq.config.lookup_from_codebook
    assert vq_downsample_factor(vq) == 8
    assert codebook_size(vq) == 256
    n_bytes = sum(p.numel() for p in vq.parameters()) * 4
    assert n_bytes < 8e6


def test_encode_decode_shapes_and_range(vq: VQModel) -> None:
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    codes = encode_to_codes(vq, x)
    assert codes.shape == (3, 8, 8) and codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < codebook_size(vq)
    y = decode_codes(vq, codes)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    # Non-square inputs keep their grid.
    assert encode_to_codes(vq, torch.rand(1, 3, 32, 96)).shape == (1, 4, 12)
    # Decoding is deterministic and codes of a decoded image are again valid codes.
    assert torch.equal(decode_codes(vq, codes), y)
    assert encode_to_codes(vq, y).shape == codes.shape


def test_decode_rejects_out_of_range(vq: VQModel) -> None:
    with pytest.raises(ValueError):
        decode_codes(vq, torch.full((1, 2, 2), codebook_size(vq)))
    with pytest.raises(ValueError):
        encode_to_codes(vq, torch.rand(1, 3, 60, 64))


def test_save_load_round_trip(vq: VQModel, tmp_path: Path) -> None:
    vq.save_pretrained(tmp_path, safe_serialization=True)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    loaded = VQModel.from_pretrained(tmp_path).eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    codes = encode_to_codes(vq, x)
    assert torch.equal(encode_to_codes(loaded, x), codes)
    assert torch.equal(decode_codes(loaded, codes), decode_codes(vq, codes))


@pytest.mark.parametrize(
    "size,multiple,max_tokens",
    [((512, 512), 32, 256), ((1024, 768), 32, 256), ((1000, 100), 32, 256), ((100, 1000), 32, 256),
     ((300, 200), 32, 256), ((64, 64), 8, 64), ((70, 61), 8, 64), ((20, 12), 8, 64), ((4000, 3000), 16, 1024),
     ((33, 31), 32, 256)],
)
def test_crop_rule(size: tuple[int, int], multiple: int, max_tokens: int) -> None:
    w, h = size
    crop = crop_for_vq(w, h, multiple, max_tokens=max_tokens, max_aspect=4)
    l, t, r, b = crop.box
    cw, ch = r - l, b - t
    assert cw % multiple == 0 and ch % multiple == 0 and cw > 0 and ch > 0
    gw, gh = cw // multiple, ch // multiple
    assert (gw, gh) == crop.grid
    assert gw * gh <= max_tokens
    assert max(gw, gh) <= 4 * min(gw, gh)
    rw, rh = crop.resized_size
    assert 0 <= l and 0 <= t and r <= rw and b <= rh
    # Centred (to a pixel) and never more resizing than needed.
    assert abs(l - (rw - r)) <= 1 and abs(t - (rh - b)) <= 1
    if (w // multiple) * (h // multiple) <= max_tokens and min(w, h) >= multiple:
        assert crop.resized_size == (w, h)
        assert max(w, h) <= 4 * min(w, h) or max(gw, gh) == 4 * min(gw, gh)
    il, it, ir, ib = crop.input_box
    assert 0 <= il < ir <= w and 0 <= it < ib <= h


def test_crop_examples() -> None:
    assert crop_for_vq(512, 512, 32).grid == (16, 16)  # Lumina at 512px: 256 cells, 1024 codes
    assert crop_for_vq(1024, 1024, 32).grid == (16, 16)
    assert crop_for_vq(530, 520, 32).box == (9, 4, 521, 516)
    assert crop_for_vq(64, 64, 8, max_tokens=64).resized_size == (64, 64)
    assert crop_for_vq(1000, 100, 32).grid == (12, 3)


def test_preprocess_and_restore_input_size() -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(61, 70, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    x, crop = preprocess_image(img, multiple=8, max_tokens=64)
    assert x.shape == (1, 3, crop.grid[1] * 8, crop.grid[0] * 8)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    l, t, r, b = crop.box
    np.testing.assert_allclose(x[0].permute(1, 2, 0).numpy() * 255, arr[t:b, l:r], atol=1e-3)
    out = restore_input_size(img, x, crop)
    assert out.size == img.size
    np.testing.assert_array_equal(np.asarray(out), arr)  # unchanged crop pasted back = identity
    big = Image.fromarray(rng.integers(0, 256, size=(300, 500, 3), dtype=np.uint8))
    y, crop2 = preprocess_image(big, multiple=32, max_tokens=16)
    assert y.shape[2] * y.shape[3] <= 16 * 32 * 32 and restore_input_size(big, y, crop2).size == big.size


def test_smoke_training_writes_loadable_safetensors_vq(tmp_path: Path) -> None:
    from rm_edit.training.train_vq import main

    out = tmp_path / "run"
    final = main(["--smoke", "--out", str(out), "--threads", "1", "--no-progress"])
    files = {p.name for p in final.iterdir()}
    assert files == {"config.json", "diffusion_pytorch_model.safetensors"}
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pt")) and not list(out.rglob("*.pth"))
    vq = VQModel.from_pretrained(final)
    assert vq.config.lookup_from_codebook and codebook_size(vq) == 256
    metrics = json.loads((out / "vq_metrics.json").read_text())
    assert {"psnr_mean", "codes_used"} <= set(metrics)
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 4
    # Interrupted after 2 steps then resumed: the same weights as the uninterrupted run (data and
    # restarts depend only on (seed, step), optimizer moments come back from safetensors).
    part = tmp_path / "part"
    main(["--smoke", "--steps", "2", "--out", str(part), "--threads", "1", "--no-progress"])
    resumed = main(["--smoke", "--out", str(part), "--threads", "1", "--no-progress", "--resume"])
    assert json.loads((part / "vq_metrics.json").read_text())["resumed_from"] == 2
    a, b = vq.state_dict(), VQModel.from_pretrained(resumed).state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)

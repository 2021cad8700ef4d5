"""The demo's click as plain Python (no browser): refusals as one line, the pictures, the brush mask; and the
Gradio page builds for a folder without a world (needs the demo extra)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest

import rm_edit
from rm_edit.cli.demo_edit import demo_edit, painted_mask, region_overlay

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "assets" / "example.png"


@pytest.fixture(scope="module")
def pipe():
    return rm_edit.load_default_pipeline()


def test_refusals_are_one_line_messages(pipe) -> None:
    image = PIL.Image.open(EXAMPLE)
    assert demo_edit(pipe, None, "turn the green square red").message == "upload an image (or pick an example) first"
    big = PIL.Image.new("RGB", (1100, 1000))
    refused = demo_edit(pipe, big, "turn the green square red", max_pixels=1_000_000)
    # 1100 x 1000 = 1,100,000 pixels > 1,000,000
    assert refused.message == "the image is 1100x1000 (1,100,000 pixels); this demo takes at most 1,000,000 pixels"
    assert refused.edit is None
    unknown = demo_edit(pipe, image, "make the sky blue")
    assert unknown.edit is None and unknown.message.startswith("'sky' is not a word this model knows")
    assert "\n" not in unknown.message
    assert demo_edit(pipe, image, "  ").message.startswith("type an instruction")


def test_edit_overlay_strip_and_brush(pipe) -> None:
    image = PIL.Image.open(EXAMPLE)
    result = demo_edit(pipe, image, "Turn the green square red.", paste_back=True)
    # The large square is 2x2 cells: 4 codes re-masked and changed; the default sampler runs at most 2 turns x
    # (reflect + reveal).
    passes, rest = result.message.split(" forward passes, ", 1)
    assert 2 <= int(passes) <= 4 and rest.startswith("4 re-masked, 4 of 64 image codes changed"), result.message
    assert result.edit.size == (64, 64) and result.overlay.size == (256, 256)  # 4x, nearest
    assert result.strip.width > 3 * result.strip.height  # source + one frame per step
    # A brush stroke far from the green square: the edit may not touch the square, so nothing changes.
    layer = np.zeros((64, 64, 4), dtype=np.uint8)
    layer[40:48, 0:8, 3] = 255
    mask = painted_mask({"background": None, "layers": [layer], "composite": None}, (64, 64))
    assert mask.sum() == 64 and mask[40:48, 0:8].all()
    held = demo_edit(pipe, image, "turn the green square red", mask, paste_back=True)
    assert held.message.startswith("nothing to change")
    assert np.array_equal(np.asarray(held.edit), np.asarray(image.convert("RGB")))
    assert painted_mask({"layers": [np.zeros((8, 8, 4), np.uint8)]}, (64, 64)) is None
    assert painted_mask(None, (64, 64)) is None


def test_overlay_tints_exactly_the_region() -> None:
    image = PIL.Image.new("RGB", (2, 1), (100, 100, 100))
    region = np.array([[True, False]])
    out = np.asarray(region_overlay(image, region, min_side=1))
    # 0.45 * 100 + 0.55 * (255, 0, 80) = (185.25, 45, 89) -> (185, 45, 89); outside unchanged
    assert out[0, 0].tolist() == [185, 45, 89] and out[0, 1].tolist() == [100, 100, 100]


def test_page_builds_for_a_folder_without_a_world(tmp_path) -> None:
    pytest.importorskip("gradio", reason='the demo extra is not installed: pip install -e ".[demo]"')
    from rm_edit.cli.demo import build_app
    from tests.conftest import make_tiny_pipeline

    tiny = make_tiny_pipeline()
    tiny.save_pretrained(tmp_path / "tiny")
    app, example_dir = build_app(tiny, tmp_path / "tiny", example_dir=tmp_path / "examples")
    assert app is not None and list(Path(example_dir).glob("*.png")) == []  # no world: no example images

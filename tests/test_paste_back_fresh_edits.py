"""README promise, on 50 fresh edits each through the pipeline and the CLI: with paste-back every pixel
outside the returned / saved mask is the source's own, bit for bit, at odd sizes (resized up, resized down
and cropped) and with both samplers."""

import json

import numpy as np
import PIL.Image
import pytest
import torch

from rm_edit.cli import main

from .conftest import make_tiny_pipeline

# Five odd sizes (as is, resized up, resized down + centre-cropped), ten images each: 50 edits.
SIZES = [(64, 64), (77, 93), (150, 61), (101, 57), (45, 130)]
PER_SIZE = 10
INSTRUCTIONS = ["make the red circle blue", "remove the square", "add a green triangle", "turn it yellow"]


def _fresh_images(size: tuple[int, int], n: int, seed: int) -> list[PIL.Image.Image]:
    """Smooth random colour fields (upsampled 8x8 noise) no test or training set has seen."""
    rng = np.random.default_rng(seed)
    return [PIL.Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize(size, PIL.Image.Resampling.BICUBIC)
            for _ in range(n)]


def _user_region(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random rectangle covering part of the image (True = may change)."""
    w, h = size
    x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
    x1, y1 = x0 + rng.integers(w // 4, w // 2 + 1), y0 + rng.integers(h // 4, h // 2 + 1)
    region = np.zeros((h, w), dtype=bool)
    region[y0:y1, x0:x1] = True
    return region


def _check_outside_is_source(src: np.ndarray, edited: np.ndarray, inside: np.ndarray, what: str) -> None:
    assert inside.shape == src.shape[:2] and edited.shape == src.shape, what
    assert (~inside).any(), what
    np.testing.assert_array_equal(edited[~inside], src[~inside], err_msg=what)


@pytest.fixture(scope="module")
def pipe():
    p = make_tiny_pipeline(seed=5)
    p.set_progress_bar_config(disable=True)
    return p


def test_pipeline_paste_back_on_50_fresh_edits(pipe):
    rng = np.random.default_rng(19)
    checked = changed = 0
    for k, size in enumerate(SIZES):
        images = _fresh_images(size, PER_SIZE, seed=100 + k)
        regions = [_user_region(size, rng) for _ in images]
        strategy = "reflective" if k % 2 == 0 else "regenerate"
        out = pipe(images, [INSTRUCTIONS[i % 4] for i in range(PER_SIZE)], mask_image=regions, paste_back=True,
                   strategy=strategy, temperature=1.0, **({"num_turns": 2} if strategy == "reflective" else {"num_inference_steps": 4}),
                   generator=[torch.Generator().manual_seed(1000 * k + i) for i in range(PER_SIZE)])
        for i, (image, edited, inside) in enumerate(zip(images, out.images, out.edit_masks)):
            src = np.asarray(image.convert("RGB"))
            edited = np.asarray(edited)
            _check_outside_is_source(src, edited, inside, f"{strategy} {size} #{i}")
            checked += 1
            changed += bool((edited != src).any())
    assert checked == 50
    assert changed >= 25  # the promise is not met by editing nothing


def test_cli_batch_paste_back_on_50_fresh_edits(tmp_path, pipe):
    model = tmp_path / "model"
    pipe.save_pretrained(model)
    rng = np.random.default_rng(91)
    data, lines, sources = tmp_path / "data", [], {}
    data.mkdir()
    for k, size in enumerate(SIZES):
        for i, image in enumerate(_fresh_images(size, PER_SIZE, seed=200 + k)):
            item = f"e{k}_{i}"
            image.save(data / f"{item}.png")
            PIL.Image.fromarray(_user_region(size, rng).astype(np.uint8) * 255).save(data / f"{item}.allowed.png")
            lines.append(json.dumps({"id": item, "source": f"{item}.png", "instruction": INSTRUCTIONS[i % 4],
                                     "mask": f"{item}.allowed.png"}))
            sources[item] = np.asarray(image.convert("RGB"))
    (data / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert main(["batch", str(data / "manifest.jsonl"), "--out", str(out), "--model", str(model),
                 "--use-manifest-masks", "--paste-back", "--num-turns", "2", "--no-progress", "--device", "cpu"]) == 0
    changed = 0
    for item, src in sources.items():
        edited = np.asarray(PIL.Image.open(out / f"{item}.png").convert("RGB"))
        inside = np.asarray(PIL.Image.open(out / f"{item}.mask.png")) > 127
        _check_outside_is_source(src, edited, inside, item)
        changed += bool((edited != src).any())
    assert len(sources) == 50 and changed >= 25

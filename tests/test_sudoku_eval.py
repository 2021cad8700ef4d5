"""`rm-edit eval --benchmark sudoku-test` and `rm-edit batch` on the Sudoku world, with a tiny random pipeline of
the sudoku-grid layout (the exact Sudoku VQ, the Sudoku word tokenizer): the wiring, not a trained model."""

from __future__ import annotations

import html
import json

import numpy as np
import pytest
import torch
from PIL import Image

from rm_edit import LLaDATransformer
from rm_edit.cli import main
from rm_edit.data.manifest import read_manifest
from rm_edit.data.sudoku import SudokuWorld
from rm_edit.data.sudoku_cells import code_digits, encode_board
from rm_edit.data.text_tokenizer import build_sudoku_tokenizer
from rm_edit.layout import SUDOKU_GRID
from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline
from rm_edit.schedulers import ReflectiveMaskingScheduler
from rm_edit.training.sudoku_vq import build_sudoku_vq

pytestmark = pytest.mark.usefixtures("one_thread")
EVAL = ["--no-report", "--no-progress", "--offline"]


def make_tiny_sudoku_pipeline(seed: int = 0) -> ReflectiveMaskingEditPipeline:
    torch.manual_seed(seed)
    transformer = LLaDATransformer(vocab_size=SUDOKU_GRID.vocab_size, d_model=32, n_layers=1, n_heads=2,
                                   mlp_hidden_size=64, mask_token_id=SUDOKU_GRID.mask_token_id, max_sequence_length=512)
    with torch.no_grad():  # lean towards [MASK] so the reflective turns re-mask and reveal something
        transformer.output_head_weight[SUDOKU_GRID.mask_token_id] *= 3
    return ReflectiveMaskingEditPipeline(
        vqvae=build_sudoku_vq(seed).eval(), transformer=transformer.eval(), tokenizer=build_sudoku_tokenizer(),
        scheduler=ReflectiveMaskingScheduler(codebook_size=SUDOKU_GRID.codebook_size, num_turns=2, reveal_steps=2),
        layout="sudoku-grid", crop_multiple=8, max_crop_cells=81, guidance_scale=1.0, image_guidance_scale=1.0,
        world={"name": "sudoku", "image_size": 72},
    )


@pytest.fixture(scope="module")
def sudoku_model(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("tiny_sudoku")
    make_tiny_sudoku_pipeline().save_pretrained(folder)
    return str(folder)


def test_eval_sudoku_test_reports_the_sudoku_metrics(sudoku_model, tmp_path):
    out = tmp_path / "eval"
    assert main(["eval", "--benchmark", "sudoku-test", "--n", "4", "--model", sudoku_model, "--out", str(out),
                 "--batch-size", "4", "--no-progress", "--offline"]) == 0
    assert "sudoku_valid_fewest_changes" in (out / "report.html").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kind"] == "sudoku" and summary["n_scored"] == 4
    rows = json.loads((out / "per_sample.json").read_text())
    world = SudokuWorld(split="test")
    for i, row in enumerate(rows):
        p = world.puzzle(i)
        assert row["id"] == p.id and row["edit_type"] == p.task and row["sudoku_wrong"] == p.wrong
        board = code_digits(encode_board(Image.open(out / "images" / row["image"]), exact=False))
        assert row["sudoku_exact"] == float((board == p.solution).all())
        assert isinstance(row["sudoku_replays"], int)  # read from the sampler's steps (sudoku-grid codes)
    buckets = {r["sudoku_k_bucket"] for r in rows}
    assert set(summary["sudoku"]["by_k_bucket"]) == buckets and summary["sudoku"]["all"]["n"] == 4
    assert summary["sudoku"]["all"]["sudoku_exact"] == pytest.approx(np.mean([r["sudoku_exact"] for r in rows]))
    assert set(summary["sudoku"]["by_bucket"]) == {r["sudoku_bucket"] for r in rows}
    for bucket, means in summary["sudoku"]["by_bucket"].items():
        mine = [r for r in rows if r["sudoku_bucket"] == bucket]
        assert means["n"] == len(mine)
        assert means["forward_passes"] == pytest.approx(np.mean([r["forward_passes"] for r in mine]))
    md = (out / "summary.md").read_text()
    assert "Valid, fewest changes" in md and "## Sudoku by k" in md and "## Sudoku by task" in md
    # Test boards 0-3: fix k 18, fix k 7, fill-and-fix with 27 and 38 empty cells (world.puzzle(i)).
    assert list(summary["sudoku"]["by_bucket"]) == ["fix k 1-12", "fix k 13-24", "fill-and-fix <40 blanks"]
    assert "## Sudoku by bucket" in md and "fix k 13-24: Exact, fill-and-fix <40 blanks: Valid, fewest changes" in md
    report = (out / "report.html").read_text()
    assert all(html.escape(f"bucket {b} (n=") in report for b in summary["sudoku"]["by_bucket"])


def test_perfect_and_unchanged_predictions(tmp_path):
    world = SudokuWorld(split="test")
    perfect, unchanged = tmp_path / "perfect", tmp_path / "unchanged"
    for folder in (perfect, unchanged):
        folder.mkdir()
    for i in range(3):
        ex = world[i]
        Image.fromarray(ex.target).save(perfect / f"{ex.id}.png")
        Image.fromarray(ex.source).save(unchanged / f"{ex.id}.png")
    for folder in (perfect, unchanged):
        assert main(["eval", "--benchmark", "sudoku-test", "--n", "3", "--predictions", str(folder),
                     "--out", str(tmp_path / f"eval_{folder.name}"), *EVAL]) == 0
    good = json.loads((tmp_path / "eval_perfect" / "summary.json").read_text())["sudoku"]["all"]
    # The solution itself: exact, valid, no conflict, no given changed, as few changes as the solution (itself).
    assert (good["sudoku_exact"], good["sudoku_valid"], good["sudoku_conflicts"], good["sudoku_changed_givens"],
            good["sudoku_valid_fewest_changes"]) == (1.0, 1.0, 0.0, 0.0, 1.0)
    assert good["sudoku_replays"] is None  # no model steps to read
    same = json.loads((tmp_path / "eval_unchanged" / "summary.json").read_text())["sudoku"]["all"]
    # The source given back: nothing changed, and (wrong digits or empty cells) never exact nor valid.
    assert (same["sudoku_exact"], same["sudoku_valid"], same["sudoku_changed_digits"]) == (0.0, 0.0, 0.0)


def test_batch_edits_a_sudoku_manifest(sudoku_model, tmp_path):
    assert main(["data", "sudoku", "--out", str(tmp_path / "data"), "--n", "2", "--split", "val"]) == 0
    manifest = tmp_path / "data" / "manifest.jsonl"
    assert main(["batch", str(manifest), "--model", sudoku_model, "--out", str(tmp_path / "edits")]) == 0
    for record in read_manifest(manifest)[0]:
        edit = Image.open(tmp_path / "edits" / f"{record.id}.png")
        assert edit.size == (72, 72)
        encode_board(edit, exact=False)  # a board image: every cell reads as some pattern

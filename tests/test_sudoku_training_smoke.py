"""configs/mdm_sudoku_rm.json trains (two steps of a tiny model) from a Sudoku code cache and the Sudoku parts, and
its output folder is a pipeline that edits a board image: the wiring a Sudoku model needs, not a trained one."""

from __future__ import annotations

import pytest
from PIL import Image

from rm_edit.configs import path as config_path
from rm_edit.data.sudoku import SudokuWorld
from rm_edit.data.sudoku_cells import encode_board
from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline
from rm_edit.training.mdm_config import MDMTrainConfig
from rm_edit.training.sudoku_codes import write_sudoku_code_cache
from rm_edit.training.sudoku_vq import write_sudoku_parts
from rm_edit.training.train_mdm import train

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_sudoku_config_trains_a_pipeline_folder(tmp_path):
    parts = write_sudoku_parts(tmp_path / "parts", steps=0, progress=False, heldout_examples=1)
    codes = write_sudoku_code_cache(tmp_path / "codes" / "train.safetensors", "train", 8, progress=False)
    cfg = MDMTrainConfig.from_file(
        config_path("mdm_sudoku_rm.json"), tokenizer=str(parts / "tokenizer"), vq=str(parts / "vqvae"),
        train_codes=str(codes), out=str(tmp_path / "run"), steps=2, batch_size=2, warmup_steps=1, save_every=0,
        log_every=1, threads=1, model=dict(d_model=32, n_layers=1, n_heads=2, mlp_hidden_size=64))
    final = train(cfg, progress=False)
    pipe = ReflectiveMaskingEditPipeline.from_pretrained(final)
    assert pipe.layout.name == "sudoku-grid" and pipe.transformer.config.rm_post_trained
    assert pipe.config.world == {"name": "sudoku", "image_size": 72} and pipe.config.max_crop_cells == 81
    ex = SudokuWorld(split="test")[0]
    out = pipe(Image.fromarray(ex.source), ex.instruction, num_turns=1)
    assert out.codes.shape[-2:] == (9, 9) and out.images[0].size == (72, 72)
    encode_board(out.images[0], exact=False)

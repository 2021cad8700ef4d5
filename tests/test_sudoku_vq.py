"""The Sudoku world's exact VQ (exact_vq's mechanism with the 19 Sudoku cells), its code caches and the parts a
Sudoku pipeline folder ships with."""

from __future__ import annotations

import json

import numpy as np
import torch
from transformers import AutoTokenizer

from rm_edit.data.pretokenize import load_code_cache
from rm_edit.data.sudoku import INSTRUCTIONS, SudokuWorld
from rm_edit.data.sudoku_cells import NUM_SUDOKU_CODES, canonical_cells
from rm_edit.layout import SUDOKU_GRID, get_layout
from rm_edit.training.sudoku_codes import write_sudoku_code_cache
from rm_edit.training.sudoku_vq import build_sudoku_vq, write_sudoku_parts
from rm_edit.vq import VQTokenizer, decode_codes, encode_to_codes


def test_the_layout_has_one_code_per_cell_pattern():
    assert get_layout("sudoku-grid") is SUDOKU_GRID and SUDOKU_GRID.codebook_size == NUM_SUDOKU_CODES == 19
    assert SUDOKU_GRID.vocab_size == 256 + 19 and SUDOKU_GRID.mask_code == 19


@torch.no_grad()
def test_encoding_board_images_gives_the_worlds_cell_codes(tmp_path):
    vq = build_sudoku_vq().eval()
    assert vq.config.num_vq_embeddings == 19 and vq.config.cell_local
    cells = torch.from_numpy(canonical_cells()).permute(0, 3, 1, 2).float() / 255
    assert encode_to_codes(vq, cells).flatten().tolist() == list(range(19))
    world = SudokuWorld(split="test")
    examples = [world[i] for i in range(6)]
    images = torch.from_numpy(np.stack([e.source for e in examples] + [e.target for e in examples]))
    images = images.permute(0, 3, 1, 2).float() / 255
    truth = np.stack([e.puzzle.source for e in examples] + [e.puzzle.target for e in examples])
    np.testing.assert_array_equal(encode_to_codes(vq, images).numpy(), truth)
    assert decode_codes(vq, torch.from_numpy(truth[:1])).shape == (1, 3, 72, 72)
    vq.save_pretrained(tmp_path / "vq")
    again = VQTokenizer.from_pretrained(tmp_path / "vq").eval()
    np.testing.assert_array_equal(encode_to_codes(again, images).numpy(), truth)


def test_code_cache_holds_the_boards(tmp_path):
    path = write_sudoku_code_cache(tmp_path / "codes.safetensors", "val", 5, start=2, progress=False)
    cache = load_code_cache(path)
    world = SudokuWorld(split="val")
    assert cache.source.shape == cache.target.shape == (5, 9, 9)
    for j, i in enumerate(range(2, 7)):
        p = world.puzzle(i)
        np.testing.assert_array_equal(cache.source[j].numpy(), p.source)
        np.testing.assert_array_equal(cache.target[j].numpy(), p.target)
        assert cache.ids[j] == p.id and cache.edit_types[j] == p.task and cache.instructions[j] == INSTRUCTIONS[p.task]
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["wrong_digits"][0] == world.puzzle(2).wrong and meta["blanks"][0] == world.puzzle(2).blanks


def test_the_parts_of_a_sudoku_pipeline_folder(tmp_path):
    out = write_sudoku_parts(tmp_path / "parts", steps=2, batch_examples=1, progress=False, heldout_examples=2)
    assert (out / "vqvae" / "config.json").is_file() and json.loads((out / "state.json").read_text())["step"] == 2
    metrics = json.loads((out / "vq_metrics.json").read_text())
    assert metrics["codes_exact"] == 1.0 and metrics["boards"] == 4
    tok = AutoTokenizer.from_pretrained(str(out / "tokenizer"))
    for text in INSTRUCTIONS.values():
        assert tok.unk_token_id not in tok(text.capitalize() + ".")["input_ids"]
    assert tok.convert_tokens_to_ids("<IMAGE>") == SUDOKU_GRID.image_begin_id

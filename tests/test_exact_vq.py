"""The shapes world's exact tokenizer (training/exact_vq.py): one code per cell pattern, as the world's own ids."""

from __future__ import annotations

import numpy as np
import torch

from rm_edit.data.shapes import NUM_CELL_CODES, ShapesWorld, canonical_cells
from rm_edit.training.exact_vq import build_exact_vq, decode_from_codes
from rm_edit.vq import VQTokenizer, encode_to_codes


@torch.no_grad()
def test_encoding_world_images_gives_the_worlds_own_cell_ids(tmp_path):
    vq = build_exact_vq().eval()
    assert vq.config.num_vq_embeddings == NUM_CELL_CODES == 605 and vq.config.cell_local
    world = ShapesWorld(split="test")
    examples = [world[i] for i in range(24)]
    images = torch.from_numpy(np.stack([e.source for e in examples] + [e.target for e in examples]))
    images = images.permute(0, 3, 1, 2).float() / 255
    truth = np.stack([ShapesWorld.codes(e.source_scene) for e in examples] + [ShapesWorld.codes(e.target_scene) for e in examples])
    np.testing.assert_array_equal(encode_to_codes(vq, images).numpy(), truth)
    # Every canonical cell is its own code (a 1x1-cell image per pattern: ids 0..604 in order).
    cells = torch.from_numpy(canonical_cells(8)).permute(0, 3, 1, 2).float() / 255
    assert encode_to_codes(vq, cells).flatten().tolist() == list(range(605))
    # The folder keeps its cell-local mode and codebook.
    vq.save_pretrained(tmp_path / "vq")
    again = VQTokenizer.from_pretrained(tmp_path / "vq").eval()
    assert again.config.cell_local
    np.testing.assert_array_equal(encode_to_codes(again, images).numpy(), truth)


def test_decoder_takes_codes_to_images():
    vq = build_exact_vq()
    codes = torch.from_numpy(np.stack([ShapesWorld.codes(ShapesWorld(split="val")[0].source_scene)]))
    out = decode_from_codes(vq, codes)
    assert out.shape == (1, 3, 64, 64)
    out.abs().mean().backward()  # trainable: the decoder gets gradients, the codebook does not change
    assert vq.decoder.conv_out.weight.grad is not None

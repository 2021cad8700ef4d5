"""The hand-set colour-preserving cell encoder (training/vq_cell_encoder.py)."""

from __future__ import annotations

import torch
from diffusers import VQModel

from rm_edit.data.shapes import BACKGROUNDS, COLOURS
from rm_edit.training.vq_cell_encoder import build_cell_pixel_vq
from rm_edit.vq import cell_latents, encode_to_codes


def _flat_cells(colours) -> torch.Tensor:
    rgb = torch.tensor(list(colours), dtype=torch.float32) / 255
    return rgb[:, :, None, None].expand(-1, 3, 8, 8).contiguous()


@torch.no_grad()
def test_every_world_colour_gets_its_own_latent():
    vq = build_cell_pixel_vq().eval()
    lat = cell_latents(vq, _flat_cells([*BACKGROUNDS.values(), *COLOURS.values()]))[:, :, 0, 0]
    d = torch.cdist(lat, lat)
    off_diagonal = d[~torch.eye(len(lat), dtype=torch.bool)]
    assert off_diagonal.min() > 0.3  # a random-encoder + GroupNorm cell encoding maps flat colours together


@torch.no_grad()
def test_latent_depends_only_on_the_cells_2x2_averages():
    vq = build_cell_pixel_vq().eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 8, 8, generator=g)
    # Same 2x2 means, different pixels: swap the two pixels of every 2x2 block's top row.
    shuffled = x.clone()
    shuffled[..., 0::2, 0::2], shuffled[..., 0::2, 1::2] = x[..., 0::2, 1::2], x[..., 0::2, 0::2]
    a, b = cell_latents(vq, x), cell_latents(vq, shuffled)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    # Moving one sub-cell's colour moves the latent; the sub-cell layout is kept (no pooling over the cell).
    moved = x.clone()
    moved[0, :, 0:2, 0:2] = 1 - moved[0, :, 0:2, 0:2]
    assert (cell_latents(vq, moved)[0] - a[0]).abs().max() > 0.05
    flipped = torch.flip(x, dims=[-1])
    assert (cell_latents(vq, flipped) - a).abs().max() > 0.05


@torch.no_grad()
def test_saved_tokenizer_reloads_with_identical_codes(tmp_path):
    vq = build_cell_pixel_vq().eval()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    codes = encode_to_codes(vq, x, cell_local=True)
    vq.save_pretrained(tmp_path / "vq")
    again = VQModel.from_pretrained(tmp_path / "vq").eval()
    assert torch.equal(encode_to_codes(again, x, cell_local=True), codes)
    assert again.decode(codes.reshape(-1), force_not_quantize=True, shape=(2, 2, 2, 96)).sample.shape == (2, 3, 16, 16)


"""A colour-preserving encoder for the shapes tokenizer, set by hand inside a diffusers ``VQModel``.

Why: the first shipped tokenizer encoded each 8x8 cell with a random encoder (GroupNorm per cell) and
clustered the latents with k-means; its codes keep a shape's colour poorly. Measured on the validation split
(cells at least a quarter covered by a shape): the majority colour of a code's cells covers 62% of them
(92% with this encoder), and one code served cells of all six shape colours. The editing models trained on
those codes could not tell "the red circle" from "the blue one" and re-masked every shape.

This encoder keeps the ``VQModel`` architecture (so the folder loads with ``VQModel.from_pretrained`` and
decodes as before) and sets its weights so that a cell's latent is its pixels, averaged to 4x4 sub-cells of
2x2 px, plus constant 1 and 0 channels:

* ``conv_in`` copies r, g, b and adds a constant-1 channel; every residual branch is zeroed (so residual
  blocks are identities, or their 1x1 shortcut);
* block 0's stride-2 convolution averages 2x2 px; blocks 1 and 2 move each of the four taps of their
  stride-2 convolution into its own channels (space-to-depth), ending at 1x1 x (16 sub-cells x 5);
* ``conv_norm_out`` (one group) normalises that vector; because it holds constant 1 and 0 entries, mean and
  scale can be undone, so no colour is lost; a small gain keeps SiLU in its near-linear range and
  ``conv_out`` rescales. Distances between latents are then (close to) pixel distances between cells.

The shapes world's exact tokenizer (``exact_vq``) then sets the codebook to the latents of the world's
canonical cells and trains a spatial-norm decoder on the fixed codes.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers import VQModel

from rm_edit.vq import small_vq_config

CHANNELS = 5  # r, g, b, constant 1, constant 0 per sub-cell
TAPS = ((0, 0), (0, 1), (1, 0), (1, 1))
GAIN, OFFSET = 0.1, 2.0  # conv_norm_out affine: SiLU is monotone and close to linear on [1.5, 2.5]


def cell_pixel_vq_config(codebook_size: int = 256) -> dict[str, Any]:
    """64x64 -> 8x8 codes; channel widths leave room for the space-to-depth layout (20 at 4x4, 80 at 1x1)."""
    config = small_vq_config(codebook_size, block_out_channels=(32, 32, 96, 96), latent_channels=96, norm_num_groups=1)
    config["norm_type"] = "spatial"  # the decoder: MoVQ-style spatial norm re-injects the codes at every norm
    return config


@torch.no_grad()
def set_cell_pixel_encoder(vq: VQModel) -> VQModel:
    """Overwrite ``vq``'s encoder and ``quant_conv`` with the hand-set pixel encoder (see the module doc)."""
    enc = vq.encoder
    widths = tuple(vq.config.block_out_channels)
    if widths[1] < 4 * CHANNELS or widths[2] < 16 * CHANNELS or len(widths) != 4 or vq.config.latent_channels < widths[3]:
        raise ValueError(f"set_cell_pixel_encoder needs 4 blocks with widths >= (5, 20, 80, latent), got {widths}")
    for p in list(enc.parameters()) + list(vq.quant_conv.parameters()):
        p.zero_()
    for c in range(3):
        enc.conv_in.weight[c, c, 1, 1] = 1.0
    enc.conv_in.bias[3] = 1.0  # channel 4 stays 0
    # Block 0: 8x8 -> 4x4 by 2x2 averaging (Downsample2D pads right/bottom, then a 3x3 stride-2 conv).
    down0 = enc.down_blocks[0].downsamplers[0].conv
    for c in range(CHANNELS):
        down0.weight[c, c, 0:2, 0:2] = 0.25
    # Block 1: 4x4 -> 2x2, each tap into its own channels.
    down1 = enc.down_blocks[1].downsamplers[0].conv
    for k, (dy, dx) in enumerate(TAPS):
        for c in range(CHANNELS):
            down1.weight[k * CHANNELS + c, c, dy, dx] = 1.0
    # Block 2: its resnet widens 32 -> 96 through the 1x1 shortcut (copy), then 2x2 -> 1x1 the same way.
    shortcut = enc.down_blocks[2].resnets[0].conv_shortcut
    for c in range(4 * CHANNELS):
        shortcut.weight[c, c, 0, 0] = 1.0
    down2 = enc.down_blocks[2].downsamplers[0].conv
    for k, (dy, dx) in enumerate(TAPS):
        for c in range(4 * CHANNELS):
            down2.weight[k * 4 * CHANNELS + c, c, dy, dx] = 1.0
    enc.conv_norm_out.weight.fill_(GAIN)
    enc.conv_norm_out.bias.fill_(OFFSET)
    width = widths[3]
    for c in range(width):
        enc.conv_out.weight[c, c, 1, 1] = 1.0 / GAIN
    enc.conv_out.bias.fill_(-F.silu(torch.tensor(OFFSET)).item() / GAIN)
    for c in range(vq.config.latent_channels):
        vq.quant_conv.weight[c, c, 0, 0] = 1.0
    return vq


def build_cell_pixel_vq(codebook_size: int = 256, seed: int = 0) -> VQModel:
    """A ``VQModel`` with the hand-set encoder (its codebook and decoder still to be fitted)."""
    torch.manual_seed(seed)
    return set_cell_pixel_encoder(VQModel(**cell_pixel_vq_config(codebook_size)))

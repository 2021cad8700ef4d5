"""Widen a trained VQ's encoder into a bigger VQModel that computes the very same codes.

Used once to give the shapes tokenizer a spatial-norm (MoVQ-style) decoder, which needs decoder widths that
are multiples of 32, without changing a single code the MDMs were trained on: every encoder weight is
copied into the top-left block of the wider tensor and the new channels are zero. With twice the GroupNorm
groups each old group keeps exactly its members, and the zero channels stay zero through every layer.
"""

from __future__ import annotations

import torch
from diffusers import VQModel


@torch.no_grad()
def widen_encoder(vq: VQModel, factor: int = 2, **new_config) -> VQModel:
    config = {k: v for k, v in vq.config.items() if not k.startswith("_")}
    config.update(
        block_out_channels=[c * factor for c in config["block_out_channels"]],
        norm_num_groups=config["norm_num_groups"] * factor,
        **new_config,
    )
    wide = VQModel(**config)
    old = vq.state_dict()
    state = wide.state_dict()
    for name, tensor in state.items():
        if not name.startswith(("encoder.", "quant_conv.", "quantize.")):
            continue
        src = old[name]
        tensor.zero_()
        tensor[tuple(slice(0, s) for s in src.shape)] = src
    wide.load_state_dict(state)
    return wide

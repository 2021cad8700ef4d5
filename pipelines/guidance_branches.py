"""One forward over an editing step's guidance branches, without the drift padding causes in 16-bit.

The no-image guidance branch is shorter than the conditional and no-instruction ones, so a batch of all three is
padded and attends with a key mask. In bf16 that is not the computation of each branch run alone (attention
takes another kernel path and rounds differently): on a random-weight Lumina-layout LLaDA, 8 regenerate steps
agreed with the unpadded branches on 54% of the codes (``python benchmarks/benchmark_bf16_branches.py``).
So in 16-bit dtypes the branches run grouped by length, each group unpadded, as Lumina-DiMOO's own code runs
them (100% agreement); fp32 keeps the one padded batch (100% agreement already, and bit-for-bit the results
this project has published). A key/value-cached step keeps the padded batch (the cache is approximate anyway).
"""

from __future__ import annotations

import torch

from rm_edit.layout import SequenceBatch

__all__ = ["forward_branches"]


def forward_branches(transformer, batch: SequenceBatch, embedding_offset: torch.Tensor | None = None,
                     kv_cache=None, output_classes: torch.Tensor | None = None) -> torch.Tensor:
    """Logits (B, N, V) at ``batch.target_positions`` (V: ``output_classes`` when given), as
    ``transformer(...)`` would give them."""
    if kv_cache is not None or transformer.dtype == torch.float32:
        return transformer(batch.input_ids, batch.attention_mask, embedding_offset=embedding_offset,
                           output_positions=batch.target_positions, kv_cache=kv_cache,
                           output_classes=output_classes).logits
    lengths = batch.attention_mask.sum(-1)
    if bool((lengths == lengths[0]).all()):
        return transformer(batch.input_ids, batch.attention_mask, embedding_offset=embedding_offset,
                           output_positions=batch.target_positions, kv_cache=kv_cache,
                           output_classes=output_classes).logits
    out = None
    for length in lengths.unique().tolist():
        rows = (lengths == length).nonzero().squeeze(1)
        if not bool(batch.attention_mask[rows, :length].all()):
            raise ValueError("forward_branches expects right-padded sequences (rm_edit.layout.pad_sequences)")
        offset = None if embedding_offset is None else embedding_offset[rows, :length]
        logits = transformer(batch.input_ids[rows, :length], None, embedding_offset=offset,
                             output_positions=batch.target_positions[rows], output_classes=output_classes).logits
        if out is None:
            out = logits.new_empty((batch.input_ids.shape[0], *logits.shape[1:]))
        out[rows] = logits
    return out

"""An editing step's guidance branches in one forward pass, each computed as it would be alone.

Per image a step runs up to three sequences (conditional, no instruction, no source image); the no-image one is
shorter. A padded batch attends with a key mask, which in bf16 is not the computation of each branch alone (on a
random-weight Lumina-layout LLaDA, 8 regenerate steps agreed with the branches run alone on 84-88% of codes,
``python benchmarks/benchmark_bf16_branches.py``); running each length alone costs a pass per length (3 at batch
1, up to 9 at batch 4). So the branches are packed into one row (:mod:`rm_edit.packing`): one pass, attention
per length group without a mask. A key/value-cached step keeps the padded batch (the cache is approximate).

:class:`BranchInputs` holds a call's sequences on the device for a set of batch rows, built on the host once;
each step writes only the (B, N) state into them, so the loop reads nothing back from the device.
"""

from __future__ import annotations

import torch

from rm_edit.history import scatter_offsets
from rm_edit.layout import SequenceBatch, TokenLayout
from rm_edit.packing import PackedSequences, pack_sequences

__all__ = ["BranchInputs", "forward_branches", "forward_packed"]


def forward_packed(transformer, packed: PackedSequences, embedding_offset: torch.Tensor | None = None,
                   output_classes: torch.Tensor | None = None) -> torch.Tensor:
    """Logits (S, N, V) at each packed sequence's target positions, in one pass."""
    s, n = packed.target_positions.shape
    logits = transformer(packed.input_ids, embedding_offset=embedding_offset, packing=packed,
                         output_positions=packed.target_positions.reshape(1, -1), output_classes=output_classes).logits
    return logits.view(s, n, -1)


def forward_branches(transformer, batch: SequenceBatch, embedding_offset: torch.Tensor | None = None,
                     kv_cache=None, output_classes: torch.Tensor | None = None) -> torch.Tensor:
    """Logits (B, N, V) at ``batch.target_positions`` of a right-padded (host) batch, each sequence computed as
    it would be alone (packed; with ``kv_cache``: the padded batch, filling the cache)."""
    if kv_cache is not None:
        return transformer(batch.input_ids, batch.attention_mask, embedding_offset=embedding_offset,
                           output_positions=batch.target_positions, kv_cache=kv_cache,
                           output_classes=output_classes).logits
    packed = pack_sequences(batch)
    offset = None
    if embedding_offset is not None:
        lengths = batch.attention_mask.sum(-1).tolist()
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        offset = torch.cat([embedding_offset[i, : lengths[i]] for i in order])[None]
    device = transformer.device
    return forward_packed(transformer, packed.to(device), offset, output_classes)


class BranchInputs:
    """A call's branch sequences for batch ``rows`` (conditional rows, then each guidance branch's), on
    ``device``; ``packed``: one packed row (else the padded batch a key/value cache needs)."""

    def __init__(self, layout: TokenLayout, host_batch: SequenceBatch, rows: tuple[int, ...], device, packed: bool):
        self.layout, self.rows = layout, rows
        self.row_index = torch.tensor(rows, device=device)
        self.copies = host_batch.input_ids.shape[0] // len(rows)
        self.packed = pack_sequences(host_batch).to(device) if packed else None
        self.padded = None if packed else host_batch.to(device)

    def _ids_and_positions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(1 or S, T) token ids and the target positions in them, flattened to one row when packed."""
        if self.packed is not None:
            return self.packed.input_ids, self.packed.target_positions.reshape(1, -1)
        return self.padded.input_ids, self.padded.target_positions

    def with_state(self, state: torch.Tensor) -> torch.Tensor:
        """The token ids with every branch's target block holding ``state`` (len(rows), N)."""
        ids, positions = self._ids_and_positions()
        codes = self.layout.ids_from_code_state(state).repeat(self.copies, 1)
        return ids.scatter(1, positions, codes.reshape(positions.shape))

    def offset(self, reference: torch.Tensor | None) -> torch.Tensor | None:
        """History Reference (len(rows), N, D) placed at every branch's target positions."""
        if reference is None:
            return None
        ids, positions = self._ids_and_positions()
        return scatter_offsets(reference.repeat(self.copies, 1, 1).reshape(*positions.shape, -1), positions,
                               ids.shape[1])

    def forward(self, transformer, state: torch.Tensor, reference: torch.Tensor | None,
                output_classes: torch.Tensor | None, kv_cache=None) -> torch.Tensor:
        """A full pass: logits (S, N, C) of every branch (fills ``kv_cache`` when given)."""
        ids, offset = self.with_state(state), self.offset(reference)
        if self.packed is not None:
            packed = PackedSequences(ids, self.packed.positions, self.packed.target_positions, self.packed.groups)
            return forward_packed(transformer, packed, offset, output_classes)
        return transformer(ids, self.padded.attention_mask, embedding_offset=offset,
                           output_positions=self.padded.target_positions, kv_cache=kv_cache,
                           output_classes=output_classes).logits

    def forward_cached(self, transformer, state: torch.Tensor, reference: torch.Tensor | None,
                       output_classes: torch.Tensor | None, kv_cache, target_index: torch.Tensor) -> torch.Tensor:
        """A cached pass recomputing target indices ``target_index`` (len(rows), P) of every branch: (S, P, C)."""
        seq_index = torch.gather(self.padded.target_positions, 1, target_index.repeat(self.copies, 1))
        return transformer(self.with_state(state), self.padded.attention_mask, embedding_offset=self.offset(reference),
                           kv_cache=kv_cache, compute_positions=seq_index, output_classes=output_classes).logits

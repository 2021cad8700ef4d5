"""An editing step's guidance branches in one forward pass, each computed as it would be alone.

Per image a step runs up to three sequences (conditional, no instruction, no source image); the no-image one is
shorter. A padded batch attends with a key mask, which in bf16 is not the computation of each branch alone (on a
random-weight Lumina-layout LLaDA, 8 regenerate steps agreed with the branches run alone on 84-88% of codes,
``python benchmarks/benchmark_bf16_branches.py``); running each length alone costs a pass per length (3 at batch
1, up to 9 at batch 4). So the branches are packed into one row (:mod:`rm_edit.packing`): one pass, attention
per length group without a mask. The key/value cache holds that packed row too (no padding positions in it), and
a cached step recomputes the same positions of every branch, in the row's order.

:class:`BranchInputs` holds a call's sequences on the device for a set of batch rows, built on the host once;
each step writes only the (B, N) state into them, so the loop reads nothing back from the device.
"""

from __future__ import annotations

import torch

from rm_edit.history import scatter_offsets
from rm_edit.layout import SequenceBatch, TokenLayout
from rm_edit.packing import PackedSequences, forward_packed, pack_sequences  # forward_packed: one rule, training's too

__all__ = ["BranchInputs", "forward_branches", "forward_packed", "forward_packed_cached"]


def forward_packed_cached(transformer, packed: PackedSequences, target_index: torch.Tensor, kv_cache,
                          embedding_offset: torch.Tensor | None = None,
                          output_classes: torch.Tensor | None = None) -> torch.Tensor:
    """Logits (S, P, V) at target indices ``target_index`` (S, P) of each packed sequence, recomputed against the
    packed ``kv_cache`` (filled by :func:`forward_packed`); the sequences go in row order and come back in S order."""
    order = torch.tensor(packed.order, device=target_index.device)
    in_row = torch.gather(packed.target_positions, 1, target_index).index_select(0, order)
    logits = transformer(packed.input_ids, embedding_offset=embedding_offset, packing=packed, kv_cache=kv_cache,
                         compute_positions=in_row.reshape(1, -1), output_classes=output_classes).logits
    back = torch.empty_like(order).scatter_(0, order, torch.arange(len(packed.order), device=order.device))
    return logits.view(*in_row.shape, -1).index_select(0, back)


def forward_branches(transformer, batch: SequenceBatch, embedding_offset: torch.Tensor | None = None,
                     output_classes: torch.Tensor | None = None) -> torch.Tensor:
    """Logits (B, N, V) at ``batch.target_positions`` of a right-padded (host) batch, each sequence computed as
    it would be alone (packed)."""
    packed = pack_sequences(batch)
    offset = None if embedding_offset is None else packed.pack(embedding_offset)
    device = transformer.device
    return forward_packed(transformer, packed.to(device), offset, output_classes)


class BranchInputs:
    """A call's branch sequences for batch ``rows`` (conditional rows, then each guidance branch's), on
    ``device``, packed in one row."""

    def __init__(self, layout: TokenLayout, host_batch: SequenceBatch, rows: tuple[int, ...], device):
        self.layout, self.rows = layout, rows
        self.row_index = torch.tensor(rows, device=device)
        self.copies = host_batch.input_ids.shape[0] // len(rows)
        self.packed = pack_sequences(host_batch).to(device)

    def _ids_and_positions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, T) token ids and the target positions in them, flattened to one row."""
        return self.packed.input_ids, self.packed.target_positions.reshape(1, -1)

    def _with(self, ids: torch.Tensor) -> PackedSequences:
        p = self.packed
        return PackedSequences(ids, p.positions, p.target_positions, p.groups, p.order)

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
        packed, offset = self._with(self.with_state(state)), self.offset(reference)
        if kv_cache is None:
            return forward_packed(transformer, packed, offset, output_classes)
        return forward_packed(transformer, packed, offset, output_classes, kv_cache=kv_cache)

    def forward_cached(self, transformer, state: torch.Tensor, reference: torch.Tensor | None,
                       output_classes: torch.Tensor | None, kv_cache, target_index: torch.Tensor) -> torch.Tensor:
        """A cached pass recomputing target indices ``target_index`` (len(rows), P) of every branch: (S, P, C)."""
        return forward_packed_cached(transformer, self._with(self.with_state(state)), target_index.repeat(self.copies, 1),
                                     kv_cache, self.offset(reference), output_classes)

"""Sequences of different lengths in one forward pass, without padding: packed end to end in one row.

An editing step runs up to three guidance branches per image (conditional, no instruction, no source image) of
different lengths. A padded batch attends with a key mask, which in 16-bit dtypes is not the computation of each
sequence alone (another attention kernel, another rounding); running each length alone costs a forward pass per
length. Packing puts every sequence in one row (grouped by length, each sequence's RoPE positions from 0), so
every token-wise layer (norms, projections, MLP, head: nearly all of the FLOPs) runs once over all of them, and
attention runs per group of equal-length sequences (one unmasked SDPA call per length, as each would run alone:
no sequence sees another). The layout is decided on the host once per set of sequences, so the per-step forward
needs no host read.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .layout import SequenceBatch


@dataclass
class PackedSequences:
    """S sequences in one row of T tokens, grouped by length."""

    input_ids: torch.Tensor  # (1, T)
    positions: torch.Tensor  # (1, T) RoPE positions, from 0 in each sequence
    target_positions: torch.Tensor  # (S, N) each sequence's target codes, as indices into the packed row
    groups: tuple[tuple[int, int, int], ...]  # (start, count, length): ``count`` sequences of ``length`` from start
    order: tuple[int, ...] = ()  # the sequences (their index in S) in the order they sit in the row

    def to(self, device) -> "PackedSequences":
        return PackedSequences(self.input_ids.to(device), self.positions.to(device), self.target_positions.to(device),
                               self.groups, self.order)

    @property
    def num_sequences(self) -> int:
        return self.target_positions.shape[0]

    def pack(self, values: torch.Tensor) -> torch.Tensor:
        """Per-token values of the right-padded batch this was packed from, (S, L, ...) -> (1, T, ...) in the
        row's order (e.g. an embedding offset placed at the padded batch's positions)."""
        lengths = [length for _, count, length in self.groups for _ in range(count)]
        return torch.cat([values[i, :n] for i, n in zip(self.order, lengths)])[None]


def pack_sequences(batch: SequenceBatch) -> PackedSequences:
    """Pack a right-padded (host) batch: sequences ordered by length (stable), padding dropped."""
    if batch.input_ids.device.type != "cpu":
        raise ValueError("pack_sequences works on the host batch (its lengths decide the layout)")
    lengths = batch.attention_mask.sum(-1).tolist()
    for i, n in enumerate(lengths):
        if not bool(batch.attention_mask[i, :n].all()):
            raise ValueError(f"sequence {i} is not right-padded (rm_edit.layout.pad_sequences)")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    ids, positions, starts, groups = [], [], [0] * len(lengths), []
    offset = 0
    for i in order:
        n = lengths[i]
        ids.append(batch.input_ids[i, :n])
        positions.append(torch.arange(n))
        starts[i] = offset
        if groups and groups[-1][2] == n:
            groups[-1][1] += 1
        else:
            groups.append([offset, 1, n])
        offset += n
    target = batch.target_positions + torch.tensor(starts).unsqueeze(1)
    return PackedSequences(torch.cat(ids)[None], torch.cat(positions)[None], target,
                           tuple(tuple(g) for g in groups), tuple(order))


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, groups, enable_gqa: bool,
                      queries: int | None = None) -> torch.Tensor:
    """Attention of packed (1, heads, T, head_dim) q/k/v within each sequence -> (1, T, heads * head_dim).

    Each group's sequences are viewed as a batch (count, heads, length, head_dim), with the strides a sequence run
    alone has, and attend without a mask: the same kernel and rounding as each sequence alone. With ``queries``
    (a cached forward, :mod:`rm_edit.kv_cache`) ``q`` holds that many positions per sequence, the sequences in
    row order, against the whole packed keys/values: (1, S * queries, heads * head_dim)."""
    out, first = [], 0
    for start, count, length in groups:
        span = slice(start, start + count * length)
        kg, vg = (t[0, :, span].unflatten(1, (count, length)).transpose(0, 1) for t in (k, v))
        n = length if queries is None else queries
        qspan = span if queries is None else slice(first * queries, (first + count) * queries)
        qg = q[0, :, qspan].unflatten(1, (count, n)).transpose(0, 1)
        att = F.scaled_dot_product_attention(qg, kg, vg, enable_gqa=enable_gqa)
        out.append(att.transpose(1, 2).reshape(count * n, -1))
        first += count
    return torch.cat(out)[None]


def forward_packed(transformer, packed: PackedSequences, embedding_offset: torch.Tensor | None = None,
                   output_classes: torch.Tensor | None = None, **kv_cache) -> torch.Tensor:
    """Logits (S, N, V) at each packed sequence's target positions, in one pass, in S order (``kv_cache=``:
    filling it). The guidance branches of an editing step and the trainer's padded batches both run this way."""
    s, n = packed.target_positions.shape
    logits = transformer(packed.input_ids, embedding_offset=embedding_offset, packing=packed,
                         output_positions=packed.target_positions.reshape(1, -1), output_classes=output_classes,
                         **kv_cache).logits
    return logits.view(s, n, -1)


__all__ = ["PackedSequences", "forward_packed", "grouped_attention", "pack_sequences"]

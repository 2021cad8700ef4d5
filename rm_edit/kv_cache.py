"""A key/value cache for the steps of one edit, in the spirit of Lumina-DiMOO's ML-Cache.

A mask diffusion model attends bidirectionally, so a changed token changes every position's keys and values
a little: an exact cache does not exist. Between two steps of an edit, though, most of the sequence (the
system prompt, the instruction, the source image, the target codes that stayed put) does not change, and its
keys/values barely move. :class:`KVCache` keeps every layer's keys/values from the last full forward; a
cached forward (``LLaDATransformer(..., kv_cache=cache, compute_positions=idx)``) recomputes only the
positions in ``idx`` (the changed and still-masked target codes) against the cached rest, writes their new
keys/values back, and returns logits for those positions only. Samplers refresh it with a full forward when
the approximation matters: every reflect step of Reflective Masking, whose keep / re-mask decision is taken
at every position, is a full forward; the reveal steps between them use the cache. The pipeline caches the packed
row of its guidance branches (:mod:`rm_edit.packing`: no padding positions, attention within each sequence).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class KVCache:
    """Per layer (B, n_kv_heads, L, head_dim) keys (after RoPE) and values, plus the (B, L) token ids and
    padding mask they were computed from (packed: B = 1, no mask, and the packing's ``groups``)."""

    keys: list[torch.Tensor] = field(default_factory=list)
    values: list[torch.Tensor] = field(default_factory=list)
    input_ids: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    groups: tuple | None = None  # the packing's groups when the batch is packed (rm_edit.packing), else None
    full_passes: int = 0  # forwards that (re)built the cache
    cached_passes: int = 0  # forwards that reused it
    computed_positions: int = 0  # positions recomputed by cached forwards, summed over rows
    rows: tuple[int, ...] | None = None  # the sampling call's batch rows the keys/values belong to
    row_index: torch.Tensor | None = None  # the same rows as an index on the codes' device
    codes: torch.Tensor | None = None  # (B, N) code-space state of every row when they were computed

    def serves(self, rows) -> bool:
        """Whether the cache holds exactly these batch rows (a row that left the batch needs a full pass)."""
        return self.rows is not None and self.rows == tuple(int(r) for r in rows)

    def filled_from(self, rows, codes: torch.Tensor, row_index: torch.Tensor | None = None) -> None:
        """A full forward over ``rows`` of the (B, N) state ``codes`` has just (re)built the cache."""
        self.rows = tuple(int(r) for r in rows)
        self.row_index = row_index if row_index is not None else torch.tensor(self.rows, device=codes.device)
        self.codes = codes.clone()

    def stale_positions(self, codes: torch.Tensor, mask_code: int) -> torch.Tensor:
        """(len(rows), P) target indices a cached forward recomputes: still [MASK], or changed since filled;
        they are marked fresh (a reveal step reads only masked positions' logits). P is data-dependent: the one
        host read of a cached step."""
        now, then = codes[self.row_index], self.codes[self.row_index]
        index = indices_to_recompute((now == mask_code) | (now != then))
        rows = self.row_index[:, None].expand_as(index)
        self.codes[rows, index] = codes[rows, index]
        return index

    @property
    def is_empty(self) -> bool:
        return not self.keys

    def store(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """A full forward's keys/values for ``layer`` (layers arrive in order)."""
        if layer == 0:
            self.keys, self.values = [], []
        self.keys.append(k)
        self.values.append(v)

    def update(self, layer: int, index: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the recomputed positions ``index`` (B, P) of ``layer``; return the layer's full keys/values."""
        idx = index[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[-1])
        # In place: only the recomputed positions are written (an out-of-place scatter rewrites the whole cache).
        self.keys[layer].scatter_(2, idx, k)
        self.values[layer].scatter_(2, idx, v)
        return self.keys[layer], self.values[layer]

    def select_rows(self, rows: torch.Tensor) -> None:
        """Keep only batch rows ``rows`` (rows that left the batch, e.g. edits that reached a fixed point)."""
        self.keys = [k.index_select(0, rows) for k in self.keys]
        self.values = [v.index_select(0, rows) for v in self.values]
        if self.input_ids is not None:
            self.input_ids = self.input_ids.index_select(0, rows)
        if self.attention_mask is not None:
            self.attention_mask = self.attention_mask.index_select(0, rows)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)


def indices_to_recompute(need: torch.Tensor) -> torch.Tensor:
    """(B, N) bool "recompute this position" -> (B, P) its indices, P = the largest count in a row.

    Shorter rows repeat their first index (recomputing a position twice writes the same keys/values); a row
    that needs nothing recomputes index 0.
    """
    counts = need.sum(-1)
    p = max(int(counts.max()), 1) if need.numel() else 1
    # A stable sort puts the needed indices first, in order.
    order = torch.sort((~need).to(torch.int8), dim=-1, stable=True).indices[:, :p]
    valid = torch.arange(p, device=need.device)[None, :] < counts[:, None]
    return torch.where(valid, order, order[:, :1].expand(-1, p))

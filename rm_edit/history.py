"""History Reference (HER): a parameter-free memory of each position's earlier states.

Each target position keeps a decayed running mean of the embeddings (from the model's own input table) of
the image codes it held at earlier steps; [MASK] states are not recorded. ``alpha`` times that mean is added
to the position's input embedding, so a position re-masked after holding a wrong code still "sees" the code
it rejected and the model can avoid replaying it. With ``gamma < 1`` older states fade. Nothing here is
learned, and ``alpha = 0`` leaves the model's input untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .layout import TokenLayout


@dataclass
class HistoryState:
    total: torch.Tensor  # (B, N, D) fp32, decayed sum of embeddings of held codes
    weight: torch.Tensor  # (B, N, 1) fp32, decayed count of recorded states

    @classmethod
    def empty(cls, batch: int, positions: int, dim: int, device=None) -> "HistoryState":
        return cls(torch.zeros(batch, positions, dim, device=device), torch.zeros(batch, positions, 1, device=device))


def code_embeddings(embedding: nn.Embedding, layout: TokenLayout, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Input embeddings of the codes in ``state`` (B, N) and which positions hold a code (not [MASK])."""
    holds_code = state != layout.mask_code
    ids = layout.code_ids(state.clamp(max=layout.codebook_size - 1))
    return embedding(ids).float(), holds_code


def update_history(
    history: HistoryState, embeddings: torch.Tensor, holds_code: torch.Tensor, gamma: float = 1.0
) -> HistoryState:
    """Record one step: decay what was there by ``gamma``, add the codes held now."""
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"history decay gamma must be in (0, 1], got {gamma}")
    present = holds_code.unsqueeze(-1).float()
    return HistoryState(
        total=gamma * history.total + embeddings.detach().float() * present,
        weight=gamma * history.weight + present,
    )


def history_embedding(history: HistoryState, alpha: float = 1.0) -> torch.Tensor:
    """``alpha`` times the decayed mean of recorded embeddings (zero where nothing was recorded)."""
    return alpha * history.total / history.weight.clamp_min(1e-6)


def scatter_offsets(
    reference: torch.Tensor, positions: torch.Tensor, seq_len: int, dim: int | None = None
) -> torch.Tensor:
    """Place per-target-position vectors (B, N, D) at sequence ``positions`` (B, N) of a zero (B, L, D) tensor."""
    b, n, d = reference.shape
    out = reference.new_zeros(b, seq_len, dim or d)
    return out.scatter(1, positions.unsqueeze(-1).expand(b, n, d), reference)

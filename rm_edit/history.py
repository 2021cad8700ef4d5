"""History Reference (HER): a parameter-free memory of each position's earlier states.

Each target position keeps a decayed running mean of the embeddings (from the model's own input table) of
the image codes it held at earlier steps; [MASK] states are not recorded. ``alpha`` times that mean is added
to the position's input embedding, so a position re-masked after holding a wrong code still "sees" the code
it rejected and the model can avoid replaying it. With ``decay < 1`` older states fade (``history_decay`` at inference and in training configs). Nothing here is
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
    history: HistoryState, embeddings: torch.Tensor, holds_code: torch.Tensor, decay: float = 1.0
) -> HistoryState:
    """Record one step: decay what was there by ``decay``, add the codes held now."""
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"history decay must be in (0, 1], got {decay}")
    present = holds_code.unsqueeze(-1).float()
    return HistoryState(
        total=decay * history.total + embeddings.detach().float() * present,
        weight=decay * history.weight + present,
    )


def history_embedding(history: HistoryState, alpha: float = 1.0) -> torch.Tensor:
    """``alpha`` times the decayed mean of recorded embeddings (zero where nothing was recorded)."""
    return alpha * history.total / history.weight.clamp_min(1e-6)


def history_of_states(
    embedding: nn.Embedding, layout: TokenLayout, states: torch.Tensor, decay: float = 1.0
) -> HistoryState:
    """The history after recording ``states`` (B, N, T), oldest first ([MASK] = ``layout.mask_code``), one
    :func:`update_history` per step: what inference has accumulated after T steps. Training simulates
    History Reference with it, so the model learns on exactly the inputs the sampler gives it. The width is
    ``embedding.embedding_dim`` (under ZeRO-3 the weight itself reads as an empty partition)."""
    b, n, steps = states.shape
    history = HistoryState.empty(b, n, embedding.embedding_dim, device=states.device)
    for t in range(steps):
        history = update_history(history, *code_embeddings(embedding, layout, states[..., t]), decay)
    return history


class HistoryRecorder:
    """History Reference for one sampling call: records every state a forward pass saw and gives the
    ``alpha``-scaled history embeddings of the rows asked for. A scheduler owns it during the call
    (``scheduler.begin(..., history=...)``) and records each ``sample`` it steps from."""

    def __init__(self, embedding: nn.Embedding, layout: TokenLayout, batch: int, positions: int,
                 alpha: float = 1.0, decay: float = 1.0, device: torch.device | str | None = None):
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"history decay must be in (0, 1], got {decay}")
        self.embedding, self.layout, self.alpha, self.decay = embedding, layout, alpha, decay
        # The state lives where the embedding lookups run (the transformer's device): recording and reading it
        # never copies (B, N, D) tensors between host and device.
        self.device = embedding.weight.device if device is None else torch.device(device)
        # embedding_dim, not weight.shape: under DeepSpeed ZeRO-3 the weight is a partition of shape (0,)
        # outside the embedding's own forward.
        self.state = HistoryState.empty(batch, positions, embedding.embedding_dim, device=self.device)

    def record(self, sample: torch.Tensor) -> None:
        """Record the (B, N) code-space state the last forward pass saw ([MASK] positions record nothing)."""
        emb, held = code_embeddings(self.embedding, self.layout, sample.to(self.device))
        self.state = update_history(self.state, emb, held, self.decay)

    def embeddings(self, rows: torch.Tensor) -> torch.Tensor | None:
        """(len(rows), N, D) ``alpha`` x the decayed mean for batch ``rows``; None when alpha is 0."""
        if self.alpha == 0:
            return None
        return history_embedding(self.state, self.alpha)[rows.to(self.device) if isinstance(rows, torch.Tensor) else rows]


def scatter_offsets(
    reference: torch.Tensor, positions: torch.Tensor, seq_len: int, dim: int | None = None
) -> torch.Tensor:
    """Place per-target-position vectors (B, N, D) at sequence ``positions`` (B, N) of a zero (B, L, D) tensor."""
    b, n, d = reference.shape
    out = reference.new_zeros(b, seq_len, dim or d)
    return out.scatter(1, positions.unsqueeze(-1).expand(b, n, d), reference)

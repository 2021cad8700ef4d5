"""Masking schedules as pure functions, shared by training and sampling (MaskGIT / Lumina-DiMOO style)."""

from __future__ import annotations

import math

import torch


def cosine_mask_ratio(r: torch.Tensor | float) -> torch.Tensor | float:
    """Fraction of positions masked at progress ``r`` in [0, 1]: cos(r * pi / 2) (1 at r=0, 0 at r=1)."""
    if isinstance(r, torch.Tensor):
        return torch.cos(r * math.pi / 2)
    return math.cos(r * math.pi / 2)


def sample_mask_ratio(batch_size: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Training ratios: cos(r * pi / 2) with r ~ U(0, 1), one per sample (Lumina-DiMOO's recipe)."""
    r = torch.rand(batch_size, generator=generator, device=device)
    return cosine_mask_ratio(r)


def masked_after_step(n0: torch.Tensor, step: int, total_steps: int, min_masked: int = 0) -> torch.Tensor:
    """Positions still masked after ``step`` (0-based) of ``total_steps``: floor(n0 * cos(pi/2 * (s+1)/T)),
    at least ``min_masked`` before the last step (Lumina-DiMOO clamps to 1), 0 after it."""
    if not 0 <= step < total_steps:
        raise ValueError(f"step {step} outside [0, {total_steps})")
    ratio = math.cos(math.pi / 2 * (step + 1) / total_steps)
    remaining = torch.floor(n0.float() * ratio).long().clamp(min=min_masked)
    return torch.zeros_like(remaining) if step == total_steps - 1 else remaining


def reveal_count(n0: torch.Tensor, n_masked_now: torch.Tensor, step: int, total_steps: int,
                 min_masked: int = 0) -> torch.Tensor:
    """How many of the ``n_masked_now`` positions to reveal at ``step`` so the cosine schedule is kept."""
    return (n_masked_now - masked_after_step(n0, step, total_steps, min_masked)).clamp(min=0)

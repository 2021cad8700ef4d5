"""Reflective Masking's training losses: one cross-entropy per kind of target position.

A simulated reflective state has three kinds of positions (``rm_edit.training.trajectories``): *reveal*
([MASK] -> the target's code), *mask* (a wrong code -> [MASK]) and *keep* (a right code -> itself). Each kind
gets its own mean cross-entropy, so the rare re-mask targets are not drowned by the many keeps, and the
total weights them. The class space is the caller's: the whole vocabulary (the shapes models) or the image
codes and [MASK] (LoRA on Lumina-DiMOO, 8,193 of 134k classes).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F


def rm_losses(logits: torch.Tensor, labels: torch.Tensor, kind: torch.Tensor,
              names: Mapping[int, str]) -> dict[str, torch.Tensor]:
    """Mean cross-entropy of ``logits`` (B, N, C) against ``labels`` (B, N) over the positions of each kind
    in ``names`` (kind id -> loss name); a kind absent from the batch has no entry."""
    token_loss = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
    return {name: token_loss[kind == k].mean() for k, name in names.items() if (kind == k).any()}


def weighted_loss(losses: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    """The training objective: sum of each loss times its weight (1 when not given)."""
    return sum(weights.get(name, 1.0) * value for name, value in losses.items())


def changed_weighted_loss(logits: torch.Tensor, labels: torch.Tensor, changed: torch.Tensor,
                          changed_weight: float) -> torch.Tensor:
    """Cross-entropy over every target position, the positions in ``changed`` weighted ``changed_weight`` x.

    One mean over all positions (not one per kind): a wrong re-mask of a distractor costs as much as a
    missed re-mask of the named shape, so the model is not pushed to re-mask whenever it is unsure.
    """
    token_loss = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
    weights = 1.0 + (changed_weight - 1.0) * changed.float()
    return (token_loss * weights).sum() / weights.sum()


@torch.no_grad()
def false_remasks(logits: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor, mask_class: int) -> torch.Tensor:
    """The keep positions (``keep``: the state holds the right code) where the sampler would re-mask:
    p([MASK]) > p(the code held), Reflective Masking's rule. A null edit's misses are all of this kind."""
    held = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return keep & (logits[..., mask_class] > held)

"""Held-out loss of the masked objective: the base model's convergence curve.

The same masks every time (a fixed seed), so successive evaluations differ only by the model: the base trains
until this stops improving (``MDMTrainConfig.val_patience``), and ``val_log.jsonl`` is the curve.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F

from rm_edit.data.pretokenize import CodeCache
from rm_edit.layout import TokenLayout

from .trajectories import REVEAL, vanilla_corruption


@torch.no_grad()
def masked_validation_loss(model, layout: TokenLayout, bank, cache: CodeCache, cfg, build_batch, *,
                           seed: int = 0, batch_size: int = 64) -> float:
    """Mean cross-entropy over the masked target codes of every example of ``cache`` (no guidance dropout)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    plain = replace(cfg, p_drop_instruction=0.0, p_drop_image=0.0)
    total, count = 0.0, 0
    for start in range(0, len(cache), batch_size):
        index = torch.arange(start, min(start + batch_size, len(cache)))
        corrupted = vanilla_corruption(cache.target[index].flatten(1), layout.codebook_size, gen)
        batch = build_batch(layout, bank, cache, index, corrupted.state, plain, gen).to(device)
        logits = model(batch.input_ids, batch.model_mask, output_positions=batch.target_positions).logits.float()
        labels = layout.ids_from_code_state(corrupted.labels).to(device)
        scored = corrupted.kind.to(device) == REVEAL
        total += F.cross_entropy(logits[scored], labels[scored], reduction="sum").item()
        count += int(scored.sum())
    model.train(was_training)
    return total / max(count, 1)

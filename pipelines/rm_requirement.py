"""Reflective editing needs a model that predicts [MASK]; say so instead of silently returning the source.

A transformer's config records ``rm_post_trained``: True once Reflective Masking post-training is in it (a
LoRA adapter loaded or merged by :mod:`rm_edit.adapters`), False for a checkpoint known not to have it
(Lumina-DiMOO as released: its head never learned [MASK], so p(MASK) < p(code) everywhere, the first reflect
step re-masks nothing and the edit converges to the unchanged source), None when not recorded (folders
written before the flag existed), which is not refused.
"""

from __future__ import annotations

from rm_edit.schedulers import ReflectiveMaskingScheduler

__all__ = ["NEEDS_RM_ADAPTER", "is_rm_post_trained", "require_rm_post_training"]

NEEDS_RM_ADAPTER = (
    "reflective editing needs a model taught to predict [MASK], and this checkpoint was not RM post-trained (it "
    "would return the source unchanged): load an RM adapter with rm_edit.adapters.load_rm_adapter("
    "pipe.transformer, ADAPTER_DIR) or load_lumina_dimoo(..., rm_adapter=ADAPTER_DIR) (train one with `python -m "
    "rm_edit.training.lora_rm`), or edit with strategy=\"regenerate\""
)


def is_rm_post_trained(transformer) -> bool | None:
    """The transformer's ``rm_post_trained`` flag (None: not recorded)."""
    return transformer.config.get("rm_post_trained")


def require_rm_post_training(scheduler, transformer) -> None:
    """Raise a one-line ValueError when ``scheduler`` is the reflective sampler and ``transformer`` is recorded
    as not RM post-trained."""
    if isinstance(scheduler, ReflectiveMaskingScheduler) and is_rm_post_trained(transformer) is False:
        raise ValueError(NEEDS_RM_ADAPTER)

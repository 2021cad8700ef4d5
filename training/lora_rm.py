"""Reflective Masking post-training of big MDMs (Lumina-DiMOO, 8B) with LoRA: the MDM trainer
(:mod:`rm_edit.training.train_mdm`, one loop for full and LoRA training) with the ``lumina-dimoo-lora`` preset.

    accelerate launch --config_file configs/accelerate/single_gpu.yaml -m rm_edit.training.lora_rm \\
        --base Lumina-DiMOO --train-codes data/my_edits/codes.safetensors --out runs/dimoo_rm \\
        --rank 32 --steps 2000 --batch-size 1 --grad-accum 8 --precision bf16 --gradient-checkpointing true

Every ``train_mdm`` option is accepted (``--history true``, ``--lr``, ``--save-merged true``...); ``--base``,
``--rank``, ``--alpha`` and ``--precision`` name ``init_from``, ``lora_rank``, ``lora_alpha`` and ``lora_dtype``.

What trains: LoRA adapters (peft, through the transformer's diffusers ``PeftAdapterMixin.add_adapter``) on every
block's attention and MLP projections (``q_proj k_proj v_proj attn_out ff_proj up_proj`` and the block's
``ff_out``, never the top-level head ``transformer.ff_out``), plus one vector added to the head's [MASK] row:
Lumina-DiMOO never trained [MASK] as a target, so the head must learn to predict it. The rest is frozen; with
``--precision bf16`` the frozen weights are bf16 and the trainable ones fp32.

The objective is :mod:`rm_edit.training.trajectories`' (reflective_trajectory states, oracle labels, the
reveal / mask / keep cross-entropies, optional simulated History Reference), computed over the image codes
and [MASK] (the classes the samplers normalise over) rather than the whole 134k vocabulary.

Data: a code cache made by :mod:`rm_edit.data.pretokenize` from the project's JSONL manifest; with
``--manifest`` (and the cache missing) it is made first with the checkpoint's VQ (``vqvae/``). The images of a
manifest must share one size that is a multiple of 32 px (at most 256 cells of 32x32 for Lumina-DiMOO).

Outputs (``--out``): ``final/``, an RM adapter folder (``pytorch_lora_weights.safetensors`` as diffusers'
``save_lora_adapter`` writes it, ``mask_row_delta.safetensors``, ``rm_adapter.json`` naming the base,
``scheduler/``, ``training.json``) that loads as a pipeline with the base applied:
``ReflectiveMaskingEditPipeline.from_pretrained("runs/dimoo_rm/final")``; ``log.jsonl``; ``merged/`` with
``--save-merged true`` (a plain pipeline folder). Into a loaded pipeline: :func:`rm_edit.adapters.load_rm_adapter`.
"""

from __future__ import annotations

import argparse

import torch

from rm_edit.layout import SequenceBatch, TokenLayout
from rm_edit.losses import rm_losses as per_kind_losses

from .mdm_config import MDMTrainConfig, add_config_arguments
from .mdm_model import prepare_lora_model, trainable_parameters
from .train_mdm import LOSS_NAMES, build_batch, train
from .trajectories import CorruptedTargets, TrajectoryConfig, reflective_trajectory

PRESET = "lumina-dimoo-lora"
ALIASES = {"--base": "init_from", "--rank": "lora_rank", "--alpha": "lora_alpha", "--precision": "lora_dtype"}

__all__ = ["PRESET", "lumina_lora_config", "make_rm_batch", "prepare_lora_model", "rm_losses", "trainable_parameters"]


def lumina_lora_config(**values) -> MDMTrainConfig:
    """The trainer's config for LoRA RM on a Lumina-DiMOO-class base: the preset, then ``values``."""
    return MDMTrainConfig.with_preset(**{"preset": PRESET, **values})


# ---- one step's pieces, for checks that drive the objective by hand (tests, benchmarks/gpu_check.py) ------------
def rm_losses(model, layout: TokenLayout, batch: SequenceBatch, corrupted: CorruptedTargets,
              embedding_offset: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The reveal / mask / keep cross-entropies over the image codes and [MASK] (code-space labels)."""
    logits = model(batch.input_ids, batch.model_mask, embedding_offset=embedding_offset,
                   output_positions=batch.target_positions,
                   output_classes=layout.image_class_ids(batch.input_ids.device)).logits
    code_logits = logits.float()  # the head computed only the 8,193 classes (of 134k) before the upcast
    device = code_logits.device
    return per_kind_losses(code_logits, corrupted.labels.to(device), corrupted.kind.to(device), LOSS_NAMES)


def make_rm_batch(layout: TokenLayout, bank, cache, index: torch.Tensor, native: torch.Tensor, cfg,
                  generator: torch.Generator) -> tuple[SequenceBatch, CorruptedTargets]:
    """States of simulated reflective trajectories for examples ``index`` and their sequences (with dropout)."""
    source = cache.source[index].flatten(1)
    target = cache.target[index].flatten(1)
    corrupted = reflective_trajectory(source, target, layout.codebook_size, native, TrajectoryConfig(**cfg.trajectory),
                                      generator, with_history=cfg.history)
    return build_batch(layout, bank, cache, index, corrupted.state, cfg, generator), corrupted


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="JSON file of train_mdm config fields (the lumina-dimoo-lora preset first)")
    add_config_arguments(parser, ALIASES)
    parser.add_argument("--no-progress", action="store_true")
    args = vars(parser.parse_args(argv))
    progress = not args.pop("no_progress")
    config = args.pop("config")
    cfg = MDMTrainConfig.from_file(config, **args)
    if cfg.preset is None:  # the Lumina defaults unless the config names another preset
        cfg = MDMTrainConfig.from_file(config, **{**args, "preset": PRESET})
    if not cfg.init_from or not cfg.lora_rank:
        parser.error("--base (the model to post-train) and --rank > 0 are required")
    print(f"saved {train(cfg, progress=progress)}")


if __name__ == "__main__":
    main()

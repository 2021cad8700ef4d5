"""The MDM trainer's config: one dataclass for full and LoRA post-training, shapes and Lumina-DiMOO alike,
with named presets (``preset``) for the defaults of each, and the command line built from its fields."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field, fields
from pathlib import Path

# Defaults a config starts from before its own keys (``"preset": NAME``); a key the config sets wins.
PRESETS: dict[str, dict] = {
    # Lumina-DiMOO-class models (8B): LoRA Reflective Masking on simulated trajectories, the loss over the image
    # codes and [MASK] only (the classes the samplers normalise over, not the 134k vocabulary).
    "lumina-dimoo-lora": dict(
        layout="lumina-dimoo", objective="reflective", states="simulated", lora_rank=16, lr=1e-4, warmup_steps=20,
        weight_decay=0.0, batch_size=1, adam_beta2=0.99, loss_classes="codes", p_drop_instruction=0.1,
        p_drop_image=0.1, save_every=0, grid_positions=0, attribute_rows=False,
        gradient_checkpointing=True,  # ~24 GB of activations per 2.2k-token sequence without it (8B)
    ),
    # The shipped shapes world's LoRA recipe on a base folder (configs/mdm_grid_rm_lora.json sets the rest).
    "shapes-lora": dict(layout="shapes-grid", objective="reflective", lora_rank=16, weight_decay=0.0,
                        attribute_rows=False),
}


# Config keys renamed since a config was saved: accepted for one release under their old names.
RENAMED_CONFIG_KEYS = {"history_gamma": "history_decay"}


def renamed_config_keys(raw: dict) -> dict:
    """``raw`` with old key names (:data:`RENAMED_CONFIG_KEYS`) under their new ones."""
    return {RENAMED_CONFIG_KEYS.get(k, k): v for k, v in raw.items()}


@dataclass
class MDMTrainConfig:
    preset: str | None = None  # a PRESETS name whose values are the defaults of this config
    objective: str = "vanilla"  # "vanilla" | "reflective"
    history: bool = False  # reflective only: simulate History Reference inputs
    history_alpha: float = 1.0
    history_decay: float = 0.7  # History Reference's per-step decay (the pipeline's history_decay); recorded
    layout: str = "shapes"
    model: dict = field(default_factory=lambda: dict(d_model=192, n_layers=4, n_heads=4, mlp_hidden_size=384))
    # What training starts from: a pipeline folder (model_index.json), an RM adapter folder, a Lumina-DiMOO /
    # LLaDA checkpoint folder, or a bare LLaDATransformer folder; None = a fresh model (``model``).
    init_from: str | None = None
    code_embedding_init: str | None = None  # fresh models: a VQModel folder whose codebook seeds the code rows
    grid_positions: int = 0  # > 0: (row, column) embeddings of image codes (LLaDATransformer.grid_position_size)
    attribute_rows: bool = False  # shapes-grid: code rows = free row + sum of the cell's attribute vectors
    tokenizer: str | None = None  # a tokenizer folder; None = the init folder's (shapes layouts: built)
    vq: str | None = None  # the VQ the output pipeline decodes with; None = the init folder's (shapes-grid: shipped)
    world: dict | None = None  # the output's model_index.json ``world``; None = the init folder's (shapes: the world)
    pipeline: dict = field(default_factory=dict)  # output pipeline config overrides (crop_multiple, guidance_scale...)
    sampler: dict = field(default_factory=dict)  # output scheduler config overrides (num_turns, temperature...)
    train_codes: str = "data/shapes/train/codes.safetensors"
    manifest: str | None = None  # a JSONL manifest pre-tokenised (with the VQ) into train_codes when that is missing
    extra_codes: list | None = None  # more code caches trained on with train_codes (e.g. confusable edits)
    edit_types: list | None = None  # train on these edit types only (a curriculum phase); None = all
    # Sampling weight of each edit type's examples (a type not named: 1), e.g. more of the hard language kinds;
    # None = every example equally likely.
    edit_type_weights: dict | None = None
    out: str = "runs/mdm"
    steps: int = 1000  # the length of the learning-rate schedule
    stop_after: int | None = None  # end (and save) after this many steps, partway through the schedule
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 1e-3
    warmup_steps: int = 50
    weight_decay: float = 0.01
    adam_beta2: float = 0.98
    max_grad_norm: float = 1.0
    p_drop_instruction: float = 0.1
    p_drop_image: float = 0.1
    native_refresh_every: int = 4  # reflective: refresh the model's own samples for one batch every N steps (0 never)
    trajectory: dict = field(default_factory=dict)  # TrajectoryConfig overrides
    states: str = "simulated"  # reflective: "simulated" trajectories, or the "sampler"'s own passes
    sampler_states: dict = field(default_factory=dict)  # SamplerStatesConfig overrides (states = "sampler")
    rollouts: dict = field(default_factory=dict)  # RolloutConfig overrides: on-policy states (states = "sampler")
    changed_weight: float = 0.0  # > 0: one cross-entropy over all positions, changed cells weighted this much
    # With changed_weight: the keeps the model would re-mask (p([MASK]) > p(the right code)) weigh as much as the
    # changed cells, so a wrong re-mask (a null edit's miss) costs what a missed one does.
    weight_false_remasks: bool = False
    loss_weights: dict = field(default_factory=lambda: {"reveal": 1.0, "mask": 1.0, "keep": 1.0})
    reveal_changed_loss: bool = False  # reflective: reveals of the cells the edit changes get their own mean loss
    loss_classes: str = "vocab"  # "vocab": cross-entropy over every token; "codes": image codes + [MASK] only
    lora_rank: int = 0  # > 0: LoRA post-training (peft adapters + the [MASK] row); the output is an adapter folder
    lora_alpha: float | None = None  # default: lora_rank
    lora_dropout: float = 0.0
    train_mask_row: bool = True  # LoRA: learn a vector added to the head's [MASK] row (a base never predicted [MASK])
    mask_row_lr: float | None = None  # default: lr
    lora_dtype: str = "auto"  # LoRA: dtype of the frozen weights, "bf16" | "fp32" | "auto" (bf16 on CUDA)
    gradient_checkpointing: bool = False
    # A batch whose prompts differ in length runs packed into one row (rm_edit.packing, as inference runs its
    # guidance branches): attention per length group without a mask, so SDPA may pick flash (a padding mask rules
    # it out) and no padding is computed. None = on under CUDA; on CPU off (no flash kernel to gain; the shipped
    # shapes models were trained padded, and their recipes stay bit-reproducible).
    pack_batches: bool | None = None
    base_reference: str | None = None  # LoRA: the base folder the adapter names; None = init_from (package-relative if shipped)
    save_merged: bool = False  # LoRA: also write merged/, a plain pipeline folder with the adapter folded in
    mixed_precision: str = "no"
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 = torch's default
    save_every: int = 250  # resumable checkpoint every N steps (0: none)
    log_every: int = 10
    val_codes: str | None = None  # a code cache scored by the masked objective's held-out loss (val_log.jsonl)
    val_every: int = 0  # steps between held-out evaluations (0 = none)
    val_patience: int = 0  # > 0: stop when the held-out loss has not improved for this many evaluations
    snapshot_every: int = 0  # > 0: also save the transformer every N steps under snapshots/step_NNNNNN (curves)

    @classmethod
    def from_file(cls, path: str | Path | None, **overrides) -> "MDMTrainConfig":
        raw = renamed_config_keys(json.loads(Path(path).read_text()) if path else {})
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"{path}: unknown config keys {sorted(unknown)}")
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls.with_preset(**raw)

    @classmethod
    def with_preset(cls, **values) -> "MDMTrainConfig":
        """The config of ``values`` on top of its preset's defaults."""
        name = values.get("preset")
        if name is not None and name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        return cls(**{**PRESETS.get(name, {}), **values})


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


_KINDS = {"int": int, "int | None": int, "float": float, "float | None": float, "str": str, "str | None": str,
          "bool": _bool, "bool | None": _bool, "dict": _json_object, "dict | None": _json_object}


def add_config_arguments(parser: argparse.ArgumentParser, aliases: dict[str, str] | None = None) -> None:
    """One ``--field-name`` option per config field (dicts as JSON, lists as several values); ``aliases``:
    extra option names for fields (``{"--base": "init_from"}``)."""
    for f in fields(MDMTrainConfig):
        flags = ["--" + f.name.replace("_", "-")] + [a for a, name in (aliases or {}).items() if name == f.name]
        if f.type in _KINDS:
            parser.add_argument(*flags, dest=f.name, type=_KINDS[f.type], default=None)
        elif f.type == "list | None":  # e.g. --edit-types remove, --extra-codes A.safetensors B.safetensors
            parser.add_argument(*flags, dest=f.name, nargs="+", default=None)

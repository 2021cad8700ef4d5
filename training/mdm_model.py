"""The model MDM training optimises: the init's transformer (grown with grid positions when asked) or a fresh
one, with the shapes-grid attribute rows, and for LoRA post-training the adapters and the [MASK] row."""

from __future__ import annotations

import torch
from torch import nn

from rm_edit.adapters import LORA_TARGET_MODULES, attach_mask_row
from rm_edit.layout import TokenLayout
from rm_edit.transformer import LLaDATransformer

__all__ = ["build_model", "init_code_rows_from_codebook", "lora_dtype", "optimizer_groups", "prepare_lora_model",
           "trainable_parameters"]


@torch.no_grad()
def init_code_rows_from_codebook(model: LLaDATransformer, layout: TokenLayout, codebook: torch.Tensor, seed: int) -> None:
    """Seed the image-code rows of the input embedding and output head with a random projection of the codebook.

    Codes that stand for similar cells (same colour, similar coverage) then start with similar embeddings and
    logits, so the model need not discover from co-occurrence alone which of 1,024 codes are "green".
    """
    if codebook.shape[0] != layout.codebook_size:
        raise ValueError(f"codebook has {codebook.shape[0]} codes, layout {layout.name!r} {layout.codebook_size}")
    gen = torch.Generator().manual_seed(seed)
    d = model.get_input_embeddings().weight.shape[1]
    centred = codebook.float() - codebook.float().mean(0)
    rows = centred @ torch.randn(codebook.shape[1], d, generator=gen)
    rows *= 0.02 / rows.std().clamp_min(1e-8)  # the scale of the model's own init
    codes = slice(layout.image_code_offset, layout.image_code_offset + layout.codebook_size)
    model.get_input_embeddings().weight[codes] = rows
    model.output_head_weight[codes] = rows


def prepare_lora_model(
    transformer: LLaDATransformer,
    rank: int = 16,
    alpha: float | None = None,
    train_mask_row: bool = True,
    dropout: float = 0.0,
    dtype: torch.dtype | None = None,
    gradient_checkpointing: bool = False,
    target_modules: str | list[str] = LORA_TARGET_MODULES,
    adapter_name: str = "default",
) -> LLaDATransformer:
    """Add a LoRA adapter (and the [MASK]-row delta), freeze everything else; returns ``transformer``.

    dtype: cast the frozen weights first (bf16 for 8B models); trainable weights are always fp32.
    """
    from peft import LoraConfig

    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {rank}")
    if dtype is not None:
        transformer.to(dtype)
    transformer.requires_grad_(False)
    transformer.add_adapter(
        LoraConfig(r=rank, lora_alpha=alpha if alpha is not None else rank, lora_dropout=dropout,
                   target_modules=target_modules, init_lora_weights=True),
        adapter_name=adapter_name,
    )
    for name, param in transformer.named_parameters():
        if "lora_" in name:
            param.data = param.data.float()
            param.requires_grad_(True)
    if "ff_out" in transformer.transformer and any(
        "lora_" in n for n, _ in transformer.transformer["ff_out"].named_parameters()
    ):
        raise ValueError("the LoRA targets matched the output head transformer.ff_out; target block modules only")
    if train_mask_row:
        attach_mask_row(transformer).requires_grad_(True)
    if gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    return transformer


def trainable_parameters(transformer: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in transformer.named_parameters() if p.requires_grad}


def resolve_lora_dtype(name: str, fsdp: bool = False) -> str:
    """``lora_dtype`` as run: "auto" is bf16 on CUDA, else fp32; under FSDP always fp32 (see below)."""
    if fsdp:
        # FSDP flattens each LLaDABlock (frozen weights and its LoRA weights) into one tensor of one dtype, and
        # trainable weights stay fp32: the frozen ones must be fp32 too; mixed_precision bf16 computes in bf16.
        if name not in ("auto", "fp32"):
            raise ValueError(f"lora_dtype {name!r} under FSDP: each LLaDABlock is one FSDP unit whose frozen and "
                             "LoRA weights must share a dtype; use lora_dtype fp32 (auto) with mixed_precision bf16")
        return "fp32"
    if name == "auto":
        return "bf16" if torch.cuda.is_available() else "fp32"
    return name


def lora_dtype(name: str) -> torch.dtype:
    """The frozen weights' dtype of LoRA training: "bf16", "fp32", or "auto" (bf16 on CUDA, else fp32)."""
    name = resolve_lora_dtype(name)
    if name not in ("bf16", "fp32"):
        raise ValueError(f"lora_dtype must be 'bf16', 'fp32' or 'auto', got {name!r}")
    return {"bf16": torch.bfloat16, "fp32": torch.float32}[name]


def build_model(cfg, init: LLaDATransformer | None, layout: TokenLayout, seq_len: int) -> LLaDATransformer:
    """The model of ``cfg`` from ``init`` (None: fresh, ``cfg.model``), ready for its optimiser."""
    grid = dict(grid_position_size=cfg.grid_positions, image_begin_id=layout.image_begin_id,
                end_of_row_id=layout.end_of_row_id, image_end_id=layout.image_end_id) if cfg.grid_positions else {}
    if cfg.lora_rank and init is None:
        raise ValueError("LoRA post-training needs init_from (the base model the adapter is trained on)")
    if init is not None:
        model = init
        if grid and not model.config.grid_position_size:  # add them, starting at zero: the same function at step 0
            if cfg.lora_rank:
                raise ValueError("grid_positions: the base has none, and LoRA cannot add (train) them")
            config = {k: v for k, v in model.config.items() if not k.startswith("_")}
            grown = LLaDATransformer(**{**config, **grid})
            missing = grown.load_state_dict(model.state_dict(), strict=False).missing_keys
            assert all(k.startswith("transformer.grid_") for k in missing), missing
            with torch.no_grad():
                grown.transformer["grid_rows"].weight.zero_()
                grown.transformer["grid_cols"].weight.zero_()
            model = grown
    else:
        model = LLaDATransformer(vocab_size=layout.vocab_size, mask_token_id=layout.mask_token_id,
                                 max_sequence_length=seq_len, **cfg.model, **grid)
        if cfg.code_embedding_init:
            from diffusers import VQModel

            codebook = VQModel.from_pretrained(cfg.code_embedding_init).quantize.embedding.weight
            init_code_rows_from_codebook(model, layout, codebook, cfg.seed)
    if cfg.attribute_rows and not cfg.lora_rank:  # LoRA trains no rows: the base's stay as they are
        from .code_embeddings import attach_attribute_rows

        attach_attribute_rows(model, layout, fresh=init is None)
    if cfg.lora_rank:
        prepare_lora_model(model, cfg.lora_rank, cfg.lora_alpha, cfg.train_mask_row, cfg.lora_dropout,
                           dtype=lora_dtype(cfg.lora_dtype), gradient_checkpointing=cfg.gradient_checkpointing)
    elif cfg.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    return model


def optimizer_groups(cfg, model: nn.Module) -> list[dict]:
    """AdamW groups: every trainable weight with ``weight_decay``; the [MASK]-row vector (LoRA) without decay,
    at ``mask_row_lr``."""
    params = trainable_parameters(model)
    row = params.pop("rm_mask_row.delta", None)
    groups = [{"params": list(params.values()), "weight_decay": cfg.weight_decay}]
    if row is not None:
        groups.append({"params": [row], "weight_decay": 0.0, "lr": cfg.mask_row_lr or cfg.lr})
    return groups

"""RM adapters of big MDMs: load, save, merge and unload a LoRA adapter and the [MASK]-row delta.

An adapter folder (what :mod:`rm_edit.training.lora_rm` trains) holds ``pytorch_lora_weights.safetensors``
(diffusers' ``save_lora_adapter`` format, the LoRA config in its metadata), ``mask_row_delta.safetensors`` and
``rm_adapter.json``. Lumina-DiMOO never trained [MASK] as a target, so the head's [MASK] row gets a learned
vector, attached with hooks so nothing of the 134k x d head is copied. Loading lives here, in the core, so a
pipeline loads an adapter without importing the training code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from rm_edit.transformer import LLaDATransformer

LORA_TARGET_MODULES = r".*blocks\.\d+\.(q_proj|k_proj|v_proj|attn_out|ff_proj|up_proj|ff_out)"
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"  # diffusers' LORA_WEIGHT_NAME_SAFE
LORA_METADATA_KEY = "lora_adapter_metadata"  # diffusers' LORA_ADAPTER_METADATA_KEY
MASK_ROW_WEIGHTS = "mask_row_delta.safetensors"
ADAPTER_INFO = "rm_adapter.json"

__all__ = ["LORA_TARGET_MODULES", "MaskRowDelta", "attach_mask_row", "detach_mask_row", "load_rm_adapter",
           "merge_rm_adapter", "save_rm_adapter", "unload_rm_adapter", "weights_sha256"]

# ---- the [MASK] row ------------------------------------------------------------------------------------------
class MaskRowDelta(nn.Module):
    """A trainable vector added to the head's [MASK] row: ``logits[..., mask] += hidden . delta``.

    It is attached with hooks (the transformer's head is a plain ``F.linear``): a forward hook on ``ln_f``
    keeps the final hidden state, and one on the transformer adds the [MASK] column's delta to the logits, so
    nothing of the 134k x d head is copied or differentiated. It is called as a module, so ZeRO-3 / FSDP gather
    its parameter like any other.
    """

    def __init__(self, d_model: int, mask_token_id: int):
        super().__init__()
        self.mask_token_id = int(mask_token_id)
        self.delta = nn.Parameter(torch.zeros(d_model))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden.float() @ self.delta.float()


def attach_mask_row(transformer: LLaDATransformer, delta: torch.Tensor | None = None) -> MaskRowDelta:
    row = getattr(transformer, "rm_mask_row", None)
    if row is None:
        head = transformer.output_head_weight
        row = MaskRowDelta(transformer.config.d_model, transformer.config.mask_token_id).to(head.device)
        transformer.rm_mask_row = row  # a registered submodule: its parameter trains and saves with the model
        captured: dict[str, torch.Tensor] = {}

        def keep_hidden(module, args, output):
            captured["hidden"] = output

        def add_mask_column(module, args, kwargs, output):
            hidden = captured.pop("hidden", None)
            if hidden is None:
                return output
            positions = kwargs.get("output_positions", args[3] if len(args) > 3 else None)
            if positions is not None:
                hidden = torch.gather(hidden, 1, positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
            logits = output.logits if hasattr(output, "logits") else output[0]
            contribution = module.rm_mask_row(hidden).to(logits.dtype)
            classes = kwargs.get("output_classes")
            if classes is None:
                logits[..., module.rm_mask_row.mask_token_id] += contribution
            else:  # the head computed only ``classes``: add where [MASK] is among them (no host read)
                logits += contribution.unsqueeze(-1) * (classes == module.rm_mask_row.mask_token_id).to(logits.dtype)
            return output

        transformer._rm_mask_row_hooks = [
            transformer.transformer["ln_f"].register_forward_hook(keep_hidden),
            transformer.register_forward_hook(add_mask_column, with_kwargs=True),
        ]
    if delta is not None:
        with torch.no_grad():
            row.delta.copy_(delta.to(row.delta.device, row.delta.dtype))
    return row


def detach_mask_row(transformer: LLaDATransformer) -> torch.Tensor | None:
    row = getattr(transformer, "rm_mask_row", None)
    if row is None:
        return None
    for handle in transformer._rm_mask_row_hooks:
        handle.remove()
    del transformer._rm_mask_row_hooks
    del transformer.rm_mask_row
    return row.delta.detach()




def weights_sha256(folder: str | Path) -> str:
    """One hash over a folder's weight files (``*.safetensors`` at any depth, in path order, with their paths):
    what an adapter records of the base it was trained on."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.safetensors")):
        digest.update(str(path.relative_to(folder)).encode())
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 24), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _adapter_config(transformer, adapter_name: str) -> dict:
    config = transformer.peft_config[adapter_name].to_dict()
    return {k: (sorted(v) if isinstance(v, set) else v) for k, v in config.items()}


def save_rm_adapter(transformer: LLaDATransformer, folder: str | Path, adapter_name: str = "default",
                    state_dict: dict[str, torch.Tensor] | None = None) -> Path:
    """Write the LoRA weights (diffusers' ``save_lora_adapter`` format) and the [MASK]-row delta (safetensors).

    state_dict: a full (gathered) state dict of the model, for sharded training (FSDP / ZeRO-3) where the
    module's own parameters are shards; None reads the module directly.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if adapter_name not in getattr(transformer, "peft_config", {}):
        raise ValueError(f"the model has no LoRA adapter {adapter_name!r}")
    config = _adapter_config(transformer, adapter_name)
    if state_dict is None:
        transformer.save_lora_adapter(str(folder), adapter_name=adapter_name, safe_serialization=True)
        row = getattr(transformer, "rm_mask_row", None)
        delta = None if row is None else row.delta.detach()
    else:
        tag = f".{adapter_name}."
        lora = {k.replace(tag, "."): v.detach().contiguous().cpu() for k, v in state_dict.items()
                if "lora_" in k and tag in k}
        if not lora:
            raise ValueError(f"no LoRA weights of adapter {adapter_name!r} in the given state dict")
        save_file(lora, str(folder / LORA_WEIGHTS),
                  metadata={"format": "pt", LORA_METADATA_KEY: json.dumps(config, indent=2, sort_keys=True)})
        delta = state_dict.get("rm_mask_row.delta")
    mask_id = int(transformer.config.mask_token_id)
    if delta is not None:
        save_file({"delta": delta.float().contiguous().cpu()}, str(folder / MASK_ROW_WEIGHTS),
                  metadata={"format": "pt", "mask_token_id": str(mask_id)})
    c = transformer.config
    info = {
        "format": "rm-edit-lora", "lora_weights": LORA_WEIGHTS, "mask_row": MASK_ROW_WEIGHTS if delta is not None else None,
        "rank": config["r"], "alpha": config["lora_alpha"], "target_modules": config["target_modules"],
        "base": {"d_model": c.d_model, "n_layers": c.n_layers, "vocab_size": c.vocab_size,
                 "embedding_size": c.embedding_size or c.vocab_size, "mask_token_id": mask_id},
    }
    (folder / ADAPTER_INFO).write_text(json.dumps(info, indent=2))
    return folder


def _lora_config_from_file(path: Path):
    from peft import LoraConfig

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if LORA_METADATA_KEY not in metadata:
        raise ValueError(f"{path}: no LoRA config in the safetensors metadata ({LORA_METADATA_KEY})")
    raw = json.loads(metadata[LORA_METADATA_KEY])
    accepted = {f.name for f in dataclasses.fields(LoraConfig) if f.init} - {"peft_type", "peft_version", "auto_mapping"}
    return LoraConfig(**{k: v for k, v in raw.items() if k in accepted})


def load_rm_adapter(transformer: LLaDATransformer, folder: str | Path, adapter_name: str = "default",
                    merge: bool = False) -> LLaDATransformer:
    """Load what :func:`save_rm_adapter` wrote into ``transformer`` (e.g. ``pipe.transformer``).

    The LoRA layers stay separate (toggle with ``disable_lora`` / ``enable_lora``) and the [MASK]-row delta is
    applied by hooks, so :func:`unload_rm_adapter` restores the base model exactly; ``merge=True`` folds both
    into the weights instead.
    """
    from peft import set_peft_model_state_dict

    folder = Path(folder)
    info_path = folder / ADAPTER_INFO
    info = json.loads(info_path.read_text()) if info_path.is_file() else {"lora_weights": LORA_WEIGHTS}
    base = info.get("base", {})
    c = transformer.config
    if base and (base["d_model"] != c.d_model or base["n_layers"] != c.n_layers):
        raise ValueError(f"{folder}: adapter for d_model {base['d_model']} x {base['n_layers']} layers, "
                         f"model is d_model {c.d_model} x {c.n_layers} layers")
    weights = folder / info["lora_weights"]
    config = _lora_config_from_file(weights)
    state = load_file(str(weights))
    transformer.add_adapter(config, adapter_name=adapter_name)
    result = set_peft_model_state_dict(transformer, state, adapter_name=adapter_name)
    unexpected = [k for k in result.unexpected_keys if "lora_" in k]
    missing = [k for k in result.missing_keys if "lora_" in k and f".{adapter_name}." in k]
    if unexpected or missing:
        raise ValueError(f"{folder}: adapter does not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    head = transformer.output_head_weight
    for name, param in transformer.named_parameters():  # adapters follow the base model's device and dtype
        if "lora_" in name:
            param.data = param.data.to(head.device, head.dtype)
    if info.get("mask_row"):
        with safe_open(str(folder / info["mask_row"]), framework="pt") as f:
            if int(f.metadata().get("mask_token_id", c.mask_token_id)) != c.mask_token_id:
                raise ValueError(f"{folder}: the [MASK]-row delta is for another mask_token_id")
            delta = f.get_tensor("delta")
        attach_mask_row(transformer, delta)
    transformer.requires_grad_(False)
    # Record RM post-training in the config (what the reflective sampler checks); unload puts the old value back.
    transformer._rm_post_trained_before_adapter = transformer.config.get("rm_post_trained")
    transformer.register_to_config(rm_post_trained=True)
    if merge:
        merge_rm_adapter(transformer)
    return transformer


def merge_rm_adapter(transformer: LLaDATransformer) -> LLaDATransformer:
    """Fold the LoRA adapter(s) and the [MASK]-row delta into the base weights and remove them; the config
    then records ``rm_post_trained=True`` (saved with the merged model)."""
    if getattr(transformer, "peft_config", None):
        transformer.fuse_lora()
        transformer.unload_lora()
    transformer.register_to_config(rm_post_trained=True)
    transformer.__dict__.pop("_rm_post_trained_before_adapter", None)
    delta = detach_mask_row(transformer)
    if delta is not None:
        if transformer.config.tie_word_embeddings:
            raise ValueError("cannot merge a [MASK]-row delta into a tied head (it would change the [MASK] embedding)")
        head = transformer.output_head_weight
        with torch.no_grad():
            row = head[transformer.config.mask_token_id]
            row.copy_((row.float() + delta.to(head.device).float()).to(head.dtype))
    return transformer


def unload_rm_adapter(transformer: LLaDATransformer) -> LLaDATransformer:
    """Remove the adapter without merging: the base model as it was (its ``rm_post_trained`` flag too)."""
    if getattr(transformer, "peft_config", None):
        transformer.unload_lora()
    detach_mask_row(transformer)
    if "_rm_post_trained_before_adapter" in transformer.__dict__:
        transformer.register_to_config(rm_post_trained=transformer.__dict__.pop("_rm_post_trained_before_adapter"))
    return transformer

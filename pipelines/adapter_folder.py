"""RM adapter folders as pipelines: ``ReflectiveMaskingEditPipeline.from_pretrained(adapter_folder)`` loads the base
model the adapter names, applies the adapter (LoRA + [MASK] row, merged into the weights for inference), records
what it was trained as, and edits with the adapter folder's own sampler and pipeline config.

An adapter folder (what ``rm-edit train mdm`` writes with ``lora_rank`` > 0) holds the adapter weights
(:mod:`rm_edit.adapters`), ``rm_adapter.json`` with ``base_model`` (an absolute path; a relative one is looked up
beside the adapter folder, then in the installed package, so ``rm_edit/models/shapes-base`` names a shipped
model), ``base_weights_sha256``, ``transformer_config`` and ``pipeline``, and ``scheduler/``.
"""

from __future__ import annotations

import json
from pathlib import Path

from diffusers.utils import logging

import rm_edit
from rm_edit.adapters import ADAPTER_INFO, load_rm_adapter, weights_sha256

logger = logging.get_logger(__name__)
HASH_CHECK_MAX_BYTES = 1 << 30  # bases above this are not re-hashed on every load (an 8B model: ~16 GB to read)

__all__ = ["is_adapter_folder", "load_adapter_pipeline", "resolve_base"]


def is_adapter_folder(folder: str | Path) -> bool:
    folder = Path(folder).expanduser()
    return (folder / ADAPTER_INFO).is_file() and not (folder / "model_index.json").is_file()


def resolve_base(folder: Path, reference: str) -> Path:
    """The base folder ``reference`` names (see the module's docstring); a one-line error naming it when absent."""
    ref = Path(reference).expanduser()
    package_root = Path(rm_edit.__file__).resolve().parent.parent  # "rm_edit/models/..." resolves inside it
    candidates = [ref] if ref.is_absolute() else [folder / ref, package_root / ref]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"{folder}: its base model {reference} was not found "
                            f"(looked in {', '.join(str(c) for c in candidates)})")


def _check_base(base: Path, info: dict) -> None:
    expected = info.get("base_weights_sha256")
    if not expected or sum(p.stat().st_size for p in base.rglob("*.safetensors")) > HASH_CHECK_MAX_BYTES:
        return
    found = weights_sha256(base)
    if found != expected:
        logger.warning(f"the base model {base} is not the one this adapter was trained on (weights sha256 "
                       f"{found[:12]}, trained on {expected[:12]}): its edits may be wrong")


def _scheduler(folder: Path):
    from rm_edit.schedulers import LuminaRegenerateScheduler, ReflectiveMaskingScheduler

    name = json.loads((folder / "scheduler_config.json").read_text()).get("_class_name")
    classes = {c.__name__: c for c in (ReflectiveMaskingScheduler, LuminaRegenerateScheduler)}
    if name not in classes:
        raise ValueError(f"{folder}: unknown scheduler {name!r}; expected one of {sorted(classes)}")
    return classes[name].from_pretrained(folder)


def load_adapter_pipeline(cls, folder: str | Path, **kwargs):
    """``cls`` (the pipeline class) of the adapter folder's base with the adapter merged in; ``kwargs`` go to
    the base's loader (e.g. ``torch_dtype``)."""
    folder = Path(folder).expanduser()
    info = json.loads((folder / ADAPTER_INFO).read_text())
    if not info.get("base_model"):
        raise ValueError(f"{folder}: {ADAPTER_INFO} names no base_model; load its base, then apply it with "
                         "rm_edit.adapters.load_rm_adapter(pipe.transformer, folder)")
    base = resolve_base(folder, info["base_model"])
    if (base / "model_index.json").is_file() or is_adapter_folder(base):
        pipe = cls.from_pretrained(base, **kwargs)
    else:  # a Lumina-DiMOO checkpoint folder as released
        from .lumina_checkpoint import lumina_components

        pipe = cls(**lumina_components(base, torch_dtype=kwargs.get("torch_dtype", kwargs.get("dtype"))))
    _check_base(base, info)
    load_rm_adapter(pipe.transformer, folder, merge=True)
    pipe.transformer.register_to_config(**info.get("transformer_config", {}))
    scheduler = _scheduler(folder / "scheduler") if (folder / "scheduler" / "scheduler_config.json").is_file() \
        else pipe.scheduler
    config = {k: v for k, v in pipe.config.items() if not k.startswith("_") and not isinstance(v, (list, tuple))}
    config = {**config, **info.get("pipeline", {})}
    config.pop("vq_cell_local", None)  # the VQ keeps its own mode
    return cls(vqvae=pipe.vqvae, transformer=pipe.transformer, tokenizer=pipe.tokenizer, scheduler=scheduler, **config)

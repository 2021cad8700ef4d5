"""Resumable training state in safetensors only (weights, optimizer moments, RNG, buffers): nothing unpickled."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, entries in state["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for name, value in meta["scalars"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_training_state(folder: Path, model, optimizer, lr_schedule, generator: torch.Generator,
                        buffer: torch.Tensor, step: int, weights: dict[str, torch.Tensor] | None = None,
                        extra: dict[str, torch.Tensor] | None = None) -> None:
    """Write the state atomically: into a temp folder, then swap it in, so a crash never leaves half a checkpoint.

    weights: the tensors to keep (e.g. only what LoRA trains: the frozen base is the init folder's); None: the
    whole model. extra: more named tensors of the run's state (e.g. the on-policy states buffer)."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    if weights is None:
        model.save_pretrained(tmp / "model", safe_serialization=True)
    else:
        (tmp / "model").mkdir(exist_ok=True)
        save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp / "model" / "diffusion_pytorch_model.safetensors"))
    tensors, meta = _flatten_optimizer(optimizer)
    tensors["rng.generator"] = generator.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["buffer"] = buffer.contiguous()
    tensors.update({f"extra.{k}": v.contiguous() for k, v in (extra or {}).items()})
    save_file(tensors, str(tmp / "training_state.safetensors"))
    meta.update(step=step, lr_schedule=lr_schedule.state_dict())
    (tmp / "training_state.json").write_text(json.dumps(meta))
    if folder.exists():
        old = folder.with_name(folder.name + ".old")
        os.replace(folder, old)
        os.replace(tmp, folder)
        for f in sorted(old.rglob("*"), reverse=True):
            f.unlink() if f.is_file() else f.rmdir()
        old.rmdir()
    else:
        os.replace(tmp, folder)


def load_training_state(folder: Path, model, optimizer, lr_schedule, generator: torch.Generator,
                        buffer: torch.Tensor, extra: dict[str, torch.Tensor] | None = None) -> int:
    """Restore what :func:`save_training_state` wrote (``extra``'s tensors are filled in place); returns the step
    to continue from."""
    folder = Path(folder)
    weights = folder / "model" / "diffusion_pytorch_model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"checkpoint {folder} has no model weights ({weights.name})")
    saved = load_file(str(weights))
    unknown = set(saved) - set(model.state_dict())
    if unknown:
        raise ValueError(f"checkpoint {folder} does not fit the model: {sorted(unknown)[:3]} ...")
    model.load_state_dict(saved, strict=False)
    tensors = load_file(str(folder / "training_state.safetensors"))
    meta = json.loads((folder / "training_state.json").read_text())
    optimizer.load_state_dict(_unflatten_optimizer(tensors, meta))
    lr_schedule.load_state_dict(meta["lr_schedule"])
    generator.set_state(tensors["rng.generator"])
    torch.set_rng_state(tensors["rng.torch"])
    buffer.copy_(tensors["buffer"])
    for name, value in (extra or {}).items():
        if f"extra.{name}" not in tensors:
            raise ValueError(f"checkpoint {folder} has no {name!r} (saved by a run with other settings?)")
        value.copy_(tensors[f"extra.{name}"])
    return int(meta["step"])

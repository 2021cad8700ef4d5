"""Offline weight resolution: metrics never download, they report why they cannot run."""

from __future__ import annotations

import os
from pathlib import Path


class MetricUnavailable(RuntimeError):
    """A metric's weights (or inputs) are missing; ``reason`` is a user-facing hint."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def resolve_weights(path: str | os.PathLike[str] | None, env_var: str, what: str, flag: str) -> Path:
    """Return an existing local weights file from ``path`` or ``$env_var``.

    Raises ``MetricUnavailable`` rather than ever falling back to a download.
    """
    chosen = path if path is not None else os.environ.get(env_var) or None
    if chosen is None:
        raise MetricUnavailable(f"no {what} weights: pass {flag} or set {env_var}")
    p = Path(chosen).expanduser()
    if not p.is_file():
        raise MetricUnavailable(f"{what} weights file not found: {p}")
    return p


def torch_hub_checkpoint(filename: str) -> Path:
    """Path torchvision would cache ``filename`` at (honours $TORCH_HOME)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / filename

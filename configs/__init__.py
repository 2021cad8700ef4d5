"""Training and launch configs, shipped as package data (``rm_edit.configs``): read them with :func:`path`."""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path


def path(name: str) -> Path:
    """The file ``name`` (e.g. ``"mdm_grid_rm.json"``) of the installed configs."""
    resource = files(__name__) / name
    if not resource.is_file():
        raise FileNotFoundError(f"no config {name!r} in rm_edit.configs")
    with as_file(resource) as p:  # a real file in a normal or editable install
        return Path(p)

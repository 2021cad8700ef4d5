"""Edit datasets as the Hugging Face ecosystem ships them, in and out (``datasets``).

In: :func:`open_edit_dataset` takes a local ``save_to_disk`` folder, a folder of parquet files, or a hub
name (only when online), and :func:`resolve_columns` maps its columns to an edit example with a preset
(chosen by the columns present, or by name) or ``--columns source=...,instruction=...``:

==================  =========================================================================================
preset              columns (source, instruction, target, mask, id, edit type, captions)
==================  =========================================================================================
``magicbrush``      source_img, instruction, target_img, mask_img, img_id + turn_index (id ``<img>_<turn>``);
                    target_local_caption / source_global_caption when present (ImagenHub's release)
``instructpix2pix`` original_image, edit_prompt, edited_image; captions original_prompt / edited_prompt
``ultraedit``       source_image, edit_prompt, edited_image (or target_image), mask_image when present, idx;
                    captions source_caption / target_caption
==================  =========================================================================================

Masks are read as the manifest's: grey level > 127 marks the edit region (MagicBrush: "the white region").
Rows are read one at a time (``streaming=True`` or a memory-mapped Arrow table), so a large dataset is
never loaded whole into memory.

Out: :func:`export_results` writes an ``rm-edit batch`` / ``rm-edit eval`` output folder as a dataset
(source, instruction, edit, region mask, metrics) with ``save_to_disk`` or as parquet.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..metrics.weights import offline_mode  # --offline or HF_HUB_OFFLINE / HF_DATASETS_OFFLINE
from .records import EditRecord

ROLES = ("source", "instruction", "target", "mask", "id", "edit_type", "source_caption", "target_caption", "turn")
REQUIRED_ROLES = ("source", "instruction")

PRESETS: dict[str, dict[str, str]] = {
    "magicbrush": {"source": "source_img", "instruction": "instruction", "target": "target_img",
                   "mask": "mask_img", "id": "img_id", "turn": "turn_index",
                   # ImagenHub's MagicBrush adds captions; the local one is the text of MagicBrush's CLIP-T
                   "source_caption": "source_global_caption", "target_caption": "target_local_caption"},
    "instructpix2pix": {"source": "original_image", "instruction": "edit_prompt", "target": "edited_image",
                        "source_caption": "original_prompt", "target_caption": "edited_prompt"},
    "ultraedit": {"source": "source_image", "instruction": "edit_prompt", "target": "edited_image",
                  "mask": "mask_image", "id": "idx", "source_caption": "source_caption",
                  "target_caption": "target_caption"},
}
_OPTIONAL_IN_PRESET = {"mask", "id", "turn", "source_caption", "target_caption", "edit_type"}


@dataclass(frozen=True)
class ColumnMap:
    """Dataset column for each role (None: the dataset has no such column)."""

    source: str
    instruction: str
    target: str | None = None
    mask: str | None = None
    id: str | None = None
    edit_type: str | None = None
    source_caption: str | None = None
    target_caption: str | None = None
    turn: str | None = None


def parse_columns(text: str) -> dict[str, str]:
    """``"source=before,instruction=prompt,target=after"`` -> a role -> column dict (one-line errors)."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        role, sep, column = part.partition("=")
        role, column = role.strip(), column.strip()
        if not sep or not column:
            raise ValueError(f"--columns: expected role=column, got {part!r}")
        if role not in ROLES:
            raise ValueError(f"--columns: unknown role {role!r} (roles: {', '.join(ROLES)})")
        out[role] = column
    return out


def resolve_columns(names: list[str], preset: str | None = None, columns: str | Mapping[str, str] | None = None) -> ColumnMap:
    """The column map for a dataset with columns ``names``: the named preset, else the first preset whose
    required columns are all present, overridden role by role by ``columns``."""
    have = set(names)
    base: dict[str, str] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown column preset {preset!r} (presets: {', '.join(PRESETS)})")
        base = dict(PRESETS[preset])
    else:
        for cols in PRESETS.values():
            if cols["source"] in have and cols["instruction"] in have:
                base = dict(cols)
                break
    if base.get("target") == "edited_image" and "edited_image" not in have and "target_image" in have:
        base["target"] = "target_image"  # UltraEdit's region-based release names it target_image
    base = {r: c for r, c in base.items() if r not in _OPTIONAL_IN_PRESET or c in have}
    if base.get("target") not in have:
        base.pop("target", None)
    override = parse_columns(columns) if isinstance(columns, str) else dict(columns or {})
    base.update(override)
    for role in REQUIRED_ROLES:
        if role not in base:
            raise ValueError(f"cannot tell which column is the {role} (columns: {', '.join(names)}); "
                             f"pass --columns {role}=NAME,... or a preset ({', '.join(PRESETS)})")
    missing = [f"{r}={c}" for r, c in base.items() if c not in have]
    if missing:
        raise ValueError(f"dataset has no column(s) {', '.join(missing)} (columns: {', '.join(names)})")
    return ColumnMap(**base)


def _is_save_to_disk(path: Path) -> bool:
    return (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def looks_like_dataset(path: str | os.PathLike[str]) -> bool:
    """A local ``save_to_disk`` folder or a folder holding parquet files."""
    p = Path(path)
    return p.is_dir() and (_is_save_to_disk(p) or any(p.rglob("*.parquet")))


def open_edit_dataset(spec: str | os.PathLike[str], split: str | None = None, *, streaming: bool = False,
                      offline: bool = False):
    """A ``datasets`` dataset from a ``save_to_disk`` folder, a parquet folder, or (online) a hub name.

    ``streaming=True`` gives an ``IterableDataset`` that reads row by row. Image columns are left
    undecoded (bytes) so a process decodes only the rows it uses."""
    import datasets

    path = Path(spec).expanduser()
    if path.is_dir() and _is_save_to_disk(path):
        ds = datasets.load_from_disk(str(path))  # memory-mapped Arrow: rows are read as used
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[_pick_split(list(ds), split, path)]
        ds = ds.to_iterable_dataset() if streaming else ds
    elif path.is_dir():
        files = sorted(str(p) for p in path.rglob("*.parquet"))
        if not files:
            raise ValueError(f"{path}: neither a save_to_disk folder nor a folder of parquet files")
        ds = datasets.load_dataset("parquet", data_files={"train": files}, split="train", streaming=streaming)
    elif path.exists():
        raise ValueError(f"{path}: a dataset is a folder (save_to_disk or parquet files)")
    else:
        if offline_mode(offline):
            raise ValueError(f"dataset {spec}: not a local folder, and offline (--offline / HF_HUB_OFFLINE) "
                             "forbids fetching it from the hub")
        ds = datasets.load_dataset(str(spec), split=split or "train", streaming=streaming)
    return _undecoded(ds)


def _pick_split(splits: list[str], split: str | None, path: Path) -> str:
    if split is not None:
        if split not in splits:
            raise ValueError(f"{path}: no split {split!r} (splits: {', '.join(splits)})")
        return split
    return "test" if "test" in splits else ("train" if "train" in splits else splits[0])


def _undecoded(ds):
    import datasets

    features = getattr(ds, "features", None) or {}
    for name, feature in features.items():
        if isinstance(feature, datasets.Image) and feature.decode:
            ds = ds.cast_column(name, datasets.Image(decode=False))
    return ds


def column_names(ds) -> list[str]:
    names = getattr(ds, "column_names", None)
    if names is None and getattr(ds, "features", None) is not None:
        names = list(ds.features)
    if names is None:  # an iterable dataset of unknown schema: peek at the first row
        names = list(next(iter(ds)).keys())
    return list(names)


# ---- rows -> edit examples ---------------------------------------------------------------------------------
def to_image(value: Any, what: str) -> Image.Image:
    """An RGB image from a ``datasets`` Image cell (decoded, ``{"bytes", "path"}``) or a PIL image."""
    if isinstance(value, Image.Image):
        return value.convert("RGB")
    if isinstance(value, Mapping):
        if value.get("bytes"):
            with Image.open(io.BytesIO(value["bytes"])) as im:
                return im.convert("RGB")
        if value.get("path") and Path(value["path"]).is_file():
            with Image.open(value["path"]) as im:
                return im.convert("RGB")
    raise ValueError(f"{what}: not an image ({type(value).__name__})")


def to_mask(value: Any, size: tuple[int, int], what: str) -> np.ndarray:
    """A bool ``HxW`` edit-region mask (grey > 127), resized (nearest) to ``size`` = (width, height)."""
    if isinstance(value, Mapping):
        raw = value.get("bytes")
        im = Image.open(io.BytesIO(raw)) if raw else Image.open(value["path"])
    elif isinstance(value, Image.Image):
        im = value
    else:
        raise ValueError(f"{what}: not an image ({type(value).__name__})")
    grey = im.convert("L")
    if grey.size != tuple(size):
        grey = grey.resize(tuple(size), Image.Resampling.NEAREST)
    return np.asarray(grey) > 127


def row_id(row: Mapping[str, Any], cols: ColumnMap, index: int) -> str:
    """The example's id: the id column (``<id>_<turn>`` with a turn column), else the row index."""
    if cols.id is None or row.get(cols.id) is None:
        return f"{index:08d}"
    base = str(row[cols.id])
    return f"{base}_{row[cols.turn]}" if cols.turn and row.get(cols.turn) is not None else base


def to_example(row: Mapping[str, Any], cols: ColumnMap, index: int) -> EditRecord:
    """One dataset row as an edit example; a bad cell raises ValueError naming the row and column."""
    sid = row_id(row, cols, index)
    instruction = row.get(cols.instruction)
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError(f"row {sid}: empty or missing {cols.instruction!r}")
    source = to_image(row.get(cols.source), f"row {sid} column {cols.source!r}")
    target = None
    if cols.target and row.get(cols.target) is not None:
        target = to_image(row[cols.target], f"row {sid} column {cols.target!r}")
        if target.size != source.size:
            raise ValueError(f"row {sid}: target is {target.size[0]}x{target.size[1]} but source is "
                             f"{source.size[0]}x{source.size[1]}")
    mask = None
    if cols.mask and row.get(cols.mask) is not None:
        mask = to_mask(row[cols.mask], source.size, f"row {sid} column {cols.mask!r}")
    captions = None
    t = row.get(cols.target_caption) if cols.target_caption else None
    if isinstance(t, str):  # (source caption or None, target caption)
        s = row.get(cols.source_caption) if cols.source_caption else None
        captions = (s if isinstance(s, str) else None, t)
    edit_type = row.get(cols.edit_type) if cols.edit_type else None
    return EditRecord(sid, source, instruction, target, mask, None if edit_type is None else str(edit_type), captions,
                      f"{sid}.png")


def iter_examples(ds, cols: ColumnMap, keep=None) -> Iterator[tuple[int, EditRecord | ValueError]]:
    """``(row index, example or the ValueError that row raised)`` in order; ``keep(index)`` False skips a
    row without decoding its images (e.g. another process's rows)."""
    for index, row in enumerate(ds):
        if keep is not None and not keep(index):
            continue
        try:
            yield index, to_example(row, cols, index)
        except ValueError as exc:
            yield index, exc

"""JSONL manifest format for image-editing data, plus safe image/mask loading.

One JSON object per line::

    {"id": str, "source": relpath, "instruction": str,
     "target": relpath | null, "mask": relpath | null, "edit_type": str | null,
     "metadata": object (optional: extra facts about the example, kept as they are)}

Paths are relative to the manifest's folder so a dataset directory can be moved
or archived as a unit. Masks are PNGs where white marks the edit region.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from rm_edit.files import DEFAULT_MAX_PIXELS, one_line, write_text

from .records import EditRecord

_REQUIRED_FIELDS = ("id", "source", "instruction")
_OPTIONAL_FIELDS = ("target", "mask", "edit_type")


@dataclass(frozen=True)
class ManifestError:
    """A manifest line that could not be turned into an `EditRecord`."""

    line_no: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line_no}: {self.reason}"


class _TooLarge(Exception):
    """Internal signal so the size check is not mistaken for a decode error."""


def _parse_line(line: str, base: Path) -> EditRecord:
    """Parse one manifest line; raises ValueError with a one-line reason."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({one_line(exc.msg)} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")

    for name in _REQUIRED_FIELDS:
        if name not in obj or obj[name] is None:
            # {"image": ...} for "source" is the likely slip: name what the line holds that no field is.
            others = [repr(k) for k in obj if k not in (*_REQUIRED_FIELDS, *_OPTIONAL_FIELDS, "metadata")]
            fields = ", ".join((*_REQUIRED_FIELDS, *_OPTIONAL_FIELDS, "metadata"))
            raise ValueError(f"missing field '{name}'" + (
                f" (the line holds {', '.join(others)}, which {'is' if len(others) == 1 else 'are'} none of a line's "
                f"fields: {fields})" if others else ""))
    for name in (*_REQUIRED_FIELDS, *_OPTIONAL_FIELDS):
        value = obj.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ValueError(f"field '{name}' must be a string, got {type(value).__name__}")
        if not value.strip():
            # "empty instruction" reads better than "empty field 'instruction'".
            raise ValueError(f"empty {name}")

    def absolute(rel: str) -> Path:
        # normpath folds "../" without following symlinks (unlike Path.resolve).
        return Path(os.path.normpath(base / rel))

    metadata = obj.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError(f"field 'metadata' must be a JSON object, got {type(metadata).__name__}")
    target, mask = obj.get("target"), obj.get("mask")
    return EditRecord(
        id=obj["id"],
        source=absolute(obj["source"]),
        instruction=obj["instruction"],
        target=None if target is None else absolute(target),
        mask=None if mask is None else absolute(mask),
        edit_type=obj.get("edit_type"),
        metadata=metadata,
    )


def read_manifest(
    path: str | os.PathLike[str], *, strict: bool = False
) -> tuple[list[EditRecord], list[ManifestError]]:
    """Load a manifest, collecting bad lines instead of failing on them.

    Blank lines are ignored. With ``strict=True`` the first bad line raises
    ``ValueError("<name> line <n>: <reason>")``.
    """
    path = Path(path)
    base = path.resolve().parent
    records: list[EditRecord] = []
    errors: list[ManifestError] = []
    first_line_of: dict[str, int] = {}

    with path.open("r", encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = _parse_line(line, base)
                if record.id in first_line_of:
                    raise ValueError(
                        f"duplicate id '{record.id}' (first seen on line {first_line_of[record.id]})"
                    )
            except ValueError as exc:
                if strict:
                    raise ValueError(f"{path.name} line {line_no}: {exc}") from None
                errors.append(ManifestError(line_no, str(exc)))
                continue
            first_line_of[record.id] = line_no
            records.append(record)
    return records, errors


def _relative(path: Path | None, base: Path) -> str | None:
    if path is None:
        return None
    # relpath (unlike Path.relative_to) also handles files outside the folder.
    return Path(os.path.relpath(Path(path).resolve(), base)).as_posix()


def write_manifest(path: str | os.PathLike[str], records: Iterable[EditRecord]) -> Path:
    """Write records as JSONL with paths relative to the manifest's folder.

    The file is written to a temporary sibling and moved into place, so readers
    never see a half-written manifest.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.resolve().parent
    lines = []
    for rec in records:
        obj: dict[str, Any] = {
            "id": rec.id,
            "source": _relative(rec.source, base),
            "instruction": rec.instruction,
            "target": _relative(rec.target, base),
            "mask": _relative(rec.mask, base),
            "edit_type": rec.edit_type,
        }
        if rec.metadata is not None:
            obj["metadata"] = rec.metadata
        lines.append(json.dumps(obj, ensure_ascii=False) + "\n")

    write_text(path, "".join(lines))
    return path


def _open_checked(path: Path, max_pixels: int) -> Image.Image:
    """Open and fully decode an image, turning every failure into a ValueError."""
    if not path.is_file():
        raise ValueError(f"image not found: {path}")
    try:
        with warnings.catch_warnings():
            # We enforce our own pixel limit; PIL's warning would be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size  # header only; nothing decoded yet
                if width * height > max_pixels:
                    raise _TooLarge(f"{width}x{height} ({width * height} pixels > limit {max_pixels})")
                img.load()
                return img.copy()
    except _TooLarge as exc:
        raise ValueError(f"image too large: {path} is {exc}") from None
    except Image.DecompressionBombError as exc:
        raise ValueError(f"image too large: {path} ({one_line(exc)})") from None
    except Exception as exc:  # PIL plugins raise OSError, SyntaxError, ValueError, EOFError, ...
        raise ValueError(f"corrupt or truncated image: {path} ({one_line(exc)})") from None


def open_image(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Load an image in its own mode (grey, RGBA, ...); missing, corrupt or oversized files raise ValueError."""
    return _open_checked(Path(path), max_pixels)


def load_image(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Load an image as RGB; missing, corrupt or oversized files raise ValueError."""
    return _open_checked(Path(path), max_pixels).convert("RGB")


def load_mask(
    path: str | os.PathLike[str],
    size: tuple[int, int],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Load a mask PNG as a bool (H, W) array; white (>127) marks the edit region.

    ``size`` is (width, height) like ``PIL.Image.size``; masks of another size are
    resized with nearest-neighbour so they stay binary.
    """
    img = _open_checked(Path(path), max_pixels).convert("L")
    if img.size != tuple(size):
        img = img.resize(tuple(size), Image.Resampling.NEAREST)
    return np.asarray(img) > 127


def _to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float CHW tensor in [0, 1]."""
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


class EditManifestDataset(Dataset):
    """Torch dataset over a manifest.

    Items are dicts with ``source`` (float CHW in [0, 1]), ``target`` (same, or
    None when the manifest has no target), ``mask`` (bool HW; all True when the
    manifest has no mask, i.e. the whole image may change), ``instruction``,
    ``id`` and ``edit_type``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        strict: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.path = Path(path)
        self.records, self.errors = read_manifest(self.path, strict=strict)
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        source = load_image(rec.source, max_pixels=self.max_pixels)
        target_tensor: torch.Tensor | None = None
        if rec.target is not None:
            target = load_image(rec.target, max_pixels=self.max_pixels)
            if target.size != source.size:
                raise ValueError(
                    f"record '{rec.id}': target {rec.target} is {target.size[0]}x{target.size[1]} "
                    f"but source is {source.size[0]}x{source.size[1]}"
                )
            target_tensor = _to_tensor(target)
        if rec.mask is not None:
            mask = load_mask(rec.mask, source.size, max_pixels=self.max_pixels)
        else:
            mask = np.ones((source.size[1], source.size[0]), dtype=bool)
        return {
            "id": rec.id,
            "instruction": rec.instruction,
            "edit_type": rec.edit_type,
            "source": _to_tensor(source),
            "target": target_tensor,
            "mask": torch.from_numpy(mask.copy()),
        }

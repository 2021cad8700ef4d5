"""Results as a Hugging Face ``datasets`` dataset, for sharing: ``rm-edit batch`` and ``rm-edit eval`` outputs.

Columns: ``id``, ``instruction``, ``edit_type``, ``source``, ``edit``, ``region`` (the region the model
re-generated, white; None when unknown), ``target`` (None when the data has none) - images as PNG - and one
float column per metric of the eval rows (``edit_success`` first when present; None where a metric is n/a).
Written with ``save_to_disk`` (``DEST/``) or as parquet (``DEST/data.parquet``); rows are streamed through
``Dataset.from_generator`` so no output is held whole in memory.
"""

from __future__ import annotations

import io
import json
import math
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from PIL import Image

IMAGE_COLUMNS = ("source", "edit", "region", "target")
_TEXT = {"id", "instruction", "edit_type", "image", "status", "reasons", "token_gt", "resized_from"}


def _png(image: Image.Image | Path | None) -> dict | None:
    if image is None:
        return None
    if isinstance(image, Path):
        if not image.is_file():
            return None
        with Image.open(image) as im:
            image = im.copy()
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


def metric_columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The numeric columns of eval rows, in first-seen order, ``edit_success`` first."""
    keys: list[str] = []
    for r in rows:
        for k, v in r.items():
            if k not in _TEXT and k not in keys and (v is None or isinstance(v, (int, float))) and not isinstance(v, bool):
                keys.append(k)
    return sorted(keys, key=lambda k: k != "edit_success")


def _number(v: Any) -> float | None:
    if v is None or v == "inf" or v == "-inf":
        return math.inf if v == "inf" else (-math.inf if v == "-inf" else None)
    return float(v)


def export_dataset(dest: str | Path, records: Callable[[], Iterator[dict]], metrics: list[str],
                   fmt: str = "disk") -> Path:
    """Write ``records()`` (dicts with the columns above; images as PIL, Path or None) to ``dest``."""
    import datasets

    if fmt not in ("disk", "parquet"):
        raise ValueError(f"export format must be 'disk' or 'parquet', got {fmt!r}")
    features = datasets.Features({
        "id": datasets.Value("string"), "instruction": datasets.Value("string"),
        "edit_type": datasets.Value("string"),
        **{c: datasets.Image() for c in IMAGE_COLUMNS},
        **{m: datasets.Value("float64") for m in metrics},
    })

    def rows() -> Iterator[dict]:
        for rec in records():
            row = {"id": rec["id"], "instruction": rec["instruction"], "edit_type": rec.get("edit_type")}
            row.update({c: _png(rec.get(c)) for c in IMAGE_COLUMNS})
            row.update({m: _number(rec.get(m)) for m in metrics})
            yield row

    dest = Path(dest)
    with tempfile.TemporaryDirectory(prefix="rm-edit-export-") as cache:
        ds = datasets.Dataset.from_generator(rows, features=features, cache_dir=cache)
        if fmt == "disk":
            ds.save_to_disk(str(dest))
        else:
            dest.mkdir(parents=True, exist_ok=True)
            ds.to_parquet(str(dest / "data.parquet"))
    return dest


def export_eval(benchmark, out_dir: str | Path, dest: str | Path, predictions_dir: str | Path | None = None,
                fmt: str = "disk") -> Path:
    """An ``rm-edit eval`` output folder (its ``per_sample.json``) with the benchmark's sources and targets.
    Edits are ``OUT/images/...`` (model runs) or ``predictions_dir/...`` (scored predictions)."""
    out_dir = Path(out_dir)
    rows = [r for r in json.loads((out_dir / "per_sample.json").read_text(encoding="utf-8"))
            if r.get("status", "ok") == "ok" and r.get("image")]
    by_id = {r["id"]: r for r in rows}
    images = Path(predictions_dir) if predictions_dir is not None else out_dir / "images"

    def records() -> Iterator[dict]:
        for sample in benchmark.iter_refs([ref for ref in benchmark.refs if ref.id in by_id]):
            row = by_id[sample.id]
            yield {**row, "source": sample.source, "target": sample.target, "edit": images / row["image"],
                   "region": out_dir / "regions" / row["image"], "instruction": sample.instruction,
                   "edit_type": sample.edit_type}

    return export_dataset(dest, records, metric_columns(rows), fmt)


def export_batch(records, out_dir: str | Path, dest: str | Path, fmt: str = "disk") -> Path:
    """An ``rm-edit batch`` output folder (``<id>.png`` and ``<id>.mask.png``) with its manifest ``records``."""
    from .manifest import load_image

    out_dir = Path(out_dir)
    done = [r for r in records if (out_dir / f"{r.id}.png").is_file()]

    def rows() -> Iterator[dict]:
        for r in done:
            yield {"id": r.id, "instruction": r.instruction, "edit_type": r.edit_type, "source": load_image(r.source),
                   "target": load_image(r.target) if r.target is not None else None,
                   "edit": out_dir / f"{r.id}.png", "region": out_dir / f"{r.id}.mask.png"}

    return export_dataset(dest, rows, [], fmt)

"""Benchmark loaders: every benchmark becomes a list of lazily loaded samples, each an
:class:`rm_edit.data.records.EditRecord` (images loaded):
``mask`` is a bool ``HxW`` array (True = edit region), ``captions`` is ``(source caption, target
caption)``, and ``image_path`` is the sample's relative path - edits are written (and predictions of
other tools are looked up) under it, with any image suffix.

Supported (:func:`load_benchmark` picks by name, or by what a path contains):

``shapes-test``
    The shapes world's test split (exact targets and masks); ``n`` samples (default 256).
    Image paths ``test_000000.png``, ...
``sudoku-test``
    The Sudoku world's test split (:mod:`rm_edit.evaluation.sudoku_eval`), scored by the Sudoku metrics.
PIE-Bench (a folder with ``mapping_file.json`` and ``annotation_images/``; or the JSON file itself)
    ``mapping_file.json`` maps a key to ``image_path`` (relative to ``annotation_images/``),
    ``original_prompt``, ``editing_prompt``, ``editing_instruction``, ``editing_type_id`` and ``mask``
    (RLE over the image's row-major pixels, decoded with :func:`rm_edit.metrics.decode_pie_bench_rle`).
    instruction = ``editing_instruction``; captions = the two prompts with PIE-Bench's ``[]`` removed;
    no target. Image paths are PIE-Bench's ``image_path`` (e.g. ``0_random_140/000000000000.jpg``).
MagicBrush-style folders, either layout:
    * the MagicBrush release: ``edit_sessions.json`` (``{img_id: [{"input", "mask", "output",
      "instruction"}, ...]}``) next to ``images/<img_id>/<file>`` (the folder may also be the parent of
      ``test/``). Every turn is one sample (id ``<img_id>_<turn>``, single-turn setting: the turn's
      given input); image path ``<img_id>/<output file>``. ``local_descriptions.json`` (or
      ``local_captions.json``: ``{img_id: {output file: caption}}``) next to it gives each turn's target
      caption, the text of MagicBrush's CLIP-T.
    * one sub-folder per sample: ``<root>/<sample_id>/`` holding ``source.png`` (or ``input.*``),
      ``instruction.txt``, ``target.png`` (or ``output.*``, optional), ``mask.png`` (optional; white =
      edit) and optionally ``captions.json`` (``{"source": ..., "target": ...}``). Image path
      ``<sample_id>.png``.
The project's JSONL manifest (a ``.jsonl`` file, or a folder holding ``manifest.jsonl``)
    See :mod:`rm_edit.data.manifest`. Image path ``<id>.png`` - what ``rm-edit batch`` writes, so its
    output folder can be scored directly.

A Hugging Face ``datasets`` dataset (a ``save_to_disk`` folder, a folder of parquet files, or ``hf:<hub name>``)
    Columns by preset (MagicBrush, InstructPix2Pix, UltraEdit) or ``--columns``; see
    :mod:`rm_edit.data.hf_datasets`. Image path ``<id>.png``.

A ``kind:`` prefix (``pie-bench:``, ``magicbrush:``, ``manifest:``, ``hf:``) forces a loader. Bad samples (missing
or corrupt files, bad fields, unsafe paths) are skipped and recorded in ``Benchmark.errors`` (and logged),
never fatal.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from ..data.manifest import load_image, load_mask, read_manifest
from ..data.records import EditRecord
from ..metrics import decode_pie_bench_rle
from .benchmark_set import (Benchmark, SampleRef, check_target, first_existing, safe_file_id, safe_relative_path,
                            strip_brackets)

logger = logging.getLogger("rm_edit.evaluation")

DEFAULT_SHAPES_N = 256


# ---- predictions of other tools ------------------------------------------------------------------------
def fit_prediction(kind: str, prediction: Image.Image, source: Image.Image) -> tuple[Image.Image, str | None]:
    """The prediction as the benchmark's own script scores it, and a note of what was done (None: as is).

    PIE-Bench (``evaluation/evaluate.py`` of PnPInversion / DirectInversion): editors there save
    ``[source | edit]`` side by side, so a prediction whose width is not its height is cropped to its
    bottom-right corner - box ``(W - 512, H - 512, W, H)``, 512 being the size of every PIE-Bench image
    (here the source's size, the same box for PIE-Bench's own images) - before EVERY metric. MagicBrush
    (``evaluation/image_eval.py``) resizes the prediction to the ground truth's size (Pillow's default,
    bicubic). Any remaining size difference is resized to the source's size, bicubic, as MagicBrush does.
    """
    note = None
    w, h = prediction.size
    sw, sh = source.size
    if kind == "pie-bench" and w != h and w >= sw and h >= sh and (w, h) != (sw, sh):
        prediction = prediction.crop((w - sw, h - sh, w, h))
        note = f"{w}x{h} (PIE-Bench: bottom-right {sw}x{sh} crop)"
    if prediction.size != source.size:
        note = f"{w}x{h}" if note is None else f"{note}, then resized"
        prediction = prediction.resize(source.size, Image.Resampling.BICUBIC)
    return prediction, note


# ---- shapes world --------------------------------------------------------------------------------------
def shapes_benchmark(n: int | None = None, split: str = "test") -> Benchmark:
    from ..data.shapes import ShapesWorld

    n = DEFAULT_SHAPES_N if n is None else n
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    world = ShapesWorld(split=split)

    def loader(i: int) -> Callable[[], EditRecord]:
        def load() -> EditRecord:
            ex = world[i]
            return EditRecord(ex.id, Image.fromarray(ex.source), ex.instruction, Image.fromarray(ex.target),
                              ex.mask.copy(), ex.edit_type, image_path=f"{ex.id}.png")
        return load

    refs = [SampleRef(f"{split}_{i:06d}", f"{split}_{i:06d}.png", loader(i)) for i in range(n)]
    return Benchmark(f"shapes-{split}", "shapes", refs)


# ---- PIE-Bench -----------------------------------------------------------------------------------------
def pie_bench(path: str | os.PathLike[str]) -> Benchmark:
    path = Path(path)
    mapping_file = path if path.is_file() else path / "mapping_file.json"
    if not mapping_file.is_file():
        raise FileNotFoundError(f"PIE-Bench: no mapping_file.json in {path}")
    root = mapping_file.parent
    images = root / "annotation_images"
    try:
        mapping = json.loads(mapping_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"PIE-Bench: {mapping_file} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(mapping, dict):
        raise ValueError(f"PIE-Bench: {mapping_file} must map keys to entries")
    bench = Benchmark("pie-bench", "pie-bench", [], root=root)
    for key, entry in mapping.items():
        try:
            if not isinstance(entry, dict):
                raise ValueError("entry is not a JSON object")
            for name in ("image_path", "original_prompt", "editing_prompt", "editing_instruction", "mask"):
                if entry.get(name) is None:
                    raise ValueError(f"missing field '{name}'")
            instruction = entry["editing_instruction"]
            if not isinstance(instruction, str) or not instruction.strip():
                raise ValueError("empty editing_instruction")
            rel = safe_relative_path(entry["image_path"])
            rle = entry["mask"]
            if not isinstance(rle, list) or len(rle) % 2 or not all(isinstance(v, int) for v in rle):
                raise ValueError("mask must be a flat list of [start, length] integer pairs")
        except ValueError as exc:
            bench.skip(str(key), str(exc))
            continue

        def load(key=str(key), entry=entry, rel=rel, rle=rle, instruction=instruction) -> EditRecord:
            source = load_image(images / rel)
            mask = decode_pie_bench_rle(rle, source.height, source.width)
            captions = (strip_brackets(entry["original_prompt"]), strip_brackets(entry["editing_prompt"]))
            edit_type = entry.get("editing_type_id")
            return EditRecord(key, source, instruction, None, mask, None if edit_type is None else str(edit_type),
                              captions, rel)

        bench.refs.append(SampleRef(str(key), rel, load))
    return bench


# ---- MagicBrush-style folders --------------------------------------------------------------------------
def magicbrush(path: str | os.PathLike[str]) -> Benchmark:
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"MagicBrush folder not found: {root}")
    sessions = root / "edit_sessions.json"
    if not sessions.is_file() and (root / "test" / "edit_sessions.json").is_file():
        root, sessions = root / "test", root / "test" / "edit_sessions.json"
    if sessions.is_file():
        return _magicbrush_sessions(root, sessions)
    return _sample_folders(root)


def _magicbrush_sessions(root: Path, sessions_file: Path) -> Benchmark:
    try:
        sessions = json.loads(sessions_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"MagicBrush: {sessions_file} is not valid JSON ({exc.msg})") from None
    if not isinstance(sessions, dict):
        raise ValueError(f"MagicBrush: {sessions_file} must map image ids to lists of turns")
    bench = Benchmark("magicbrush", "magicbrush", [], root=root)
    local = _local_captions(root)
    for img_id, turns in sessions.items():
        if not isinstance(turns, list):
            bench.skip(str(img_id), "session is not a list of turns")
            continue
        for t, turn in enumerate(turns, start=1):
            sid = f"{img_id}_{t}"
            try:
                if not isinstance(turn, dict):
                    raise ValueError("turn is not a JSON object")
                for name in ("input", "output", "instruction"):
                    if not isinstance(turn.get(name), str) or not turn[name].strip():
                        raise ValueError(f"missing or empty field '{name}'")
                folder = f"images/{safe_file_id(str(img_id))}"
                files = {k: safe_relative_path(f"{folder}/{turn[k]}") for k in ("input", "output", "mask")
                         if isinstance(turn.get(k), str)}
                rel = safe_relative_path(f"{img_id}/{turn['output']}")
            except ValueError as exc:
                bench.skip(sid, str(exc))
                continue

            caption = (local.get(str(img_id)) or {}).get(turn["output"])
            captions = (None, caption) if isinstance(caption, str) else None  # CLIP-T: the target's local caption

            def load(sid=sid, files=files, rel=rel, instruction=turn["instruction"], captions=captions) -> EditRecord:
                source = load_image(root / files["input"])
                target = load_image(root / files["output"])
                check_target(source, target)
                mask = load_mask(root / files["mask"], source.size) if "mask" in files else None
                return EditRecord(sid, source, instruction, target, mask, None, captions, rel)

            bench.refs.append(SampleRef(sid, rel, load))
    return bench


LOCAL_CAPTION_FILES = ("local_descriptions.json", "local_captions.json")


def _local_captions(root: Path) -> dict:
    """MagicBrush's local descriptions ``{img_id: {output file: caption}}`` (its CLIP-T text), if shipped."""
    for name in LOCAL_CAPTION_FILES:
        path = root / name
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError(f"MagicBrush: {path} must map image ids to {{output file: caption}}")
            return data
    return {}


def _sample_folders(root: Path) -> Benchmark:
    bench = Benchmark("magicbrush", "magicbrush", [], root=root)
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        sid = folder.name

        def load(sid=sid, folder=folder) -> EditRecord:
            src = first_existing(folder, ("source", "input"))
            if src is None:
                raise ValueError(f"no source.png / input.png in {folder}")
            text = folder / "instruction.txt"
            if not text.is_file():
                raise ValueError(f"no instruction.txt in {folder}")
            instruction = text.read_text(encoding="utf-8").strip()
            if not instruction:
                raise ValueError("empty instruction")
            source = load_image(src)
            tgt = first_existing(folder, ("target", "output"))
            target = load_image(tgt) if tgt is not None else None
            check_target(source, target)
            mask_file = first_existing(folder, ("mask",))
            mask = load_mask(mask_file, source.size) if mask_file is not None else None
            captions = None
            if (folder / "captions.json").is_file():
                caps = json.loads((folder / "captions.json").read_text(encoding="utf-8"))
                if not isinstance(caps, dict) or not all(isinstance(caps.get(k), str) for k in ("source", "target")):
                    raise ValueError("captions.json must hold string 'source' and 'target'")
                captions = (caps["source"], caps["target"])
            return EditRecord(sid, source, instruction, target, mask, None, captions, f"{sid}.png")

        bench.refs.append(SampleRef(sid, f"{sid}.png", load))
    if not bench.refs:
        raise ValueError(f"{root}: no edit_sessions.json and no per-sample folders (see rm_edit.evaluation.benchmarks)")
    return bench


# ---- JSONL manifest ------------------------------------------------------------------------------------
def manifest_benchmark(path: str | os.PathLike[str]) -> Benchmark:
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    records, bad = read_manifest(path)
    bench = Benchmark(path.parent.name or path.stem, "manifest", [], root=path.parent)
    for err in bad:
        bench.skip(None, f"{path.name} line {err.line_no}: {err.reason}")
    for rec in records:
        try:
            rel = f"{safe_file_id(rec.id)}.png"
        except ValueError as exc:
            bench.skip(rec.id, str(exc))
            continue

        def load(rec=rec, rel=rel) -> EditRecord:
            source = load_image(rec.source)
            target = load_image(rec.target) if rec.target is not None else None
            check_target(source, target)
            mask = load_mask(rec.mask, source.size) if rec.mask is not None else None
            return EditRecord(rec.id, source, rec.instruction, target, mask, rec.edit_type, None, rel)

        bench.refs.append(SampleRef(rec.id, rel, load))
    return bench


# ---- Hugging Face datasets -----------------------------------------------------------------------------
def hf_benchmark(spec: str | os.PathLike[str], columns: str | None = None, preset: str | None = None,
                 split: str | None = None, offline: bool = False) -> Benchmark:
    """A ``datasets`` dataset (save_to_disk folder, parquet folder, or hub name when online) as a benchmark;
    columns by preset or ``columns`` (see :mod:`rm_edit.data.hf_datasets`). Rows are read when used; ids
    come from the id column (``<img_id>_<turn>`` for MagicBrush), else the row number."""
    from ..data.hf_datasets import column_names, open_edit_dataset, resolve_columns, row_id, to_example

    ds = open_edit_dataset(spec, split, offline=offline)
    cols = resolve_columns(column_names(ds), preset, columns)
    kind = "magicbrush" if cols.source == "source_img" else "manifest"
    name = Path(str(spec)).name or str(spec)
    bench = Benchmark(name, kind, [], root=None)
    id_columns = [c for c in (cols.id, cols.turn) if c]
    id_rows = ds.select_columns(id_columns) if id_columns else None
    seen: set[str] = set()
    for index in range(len(ds)):
        try:
            sid = safe_file_id(row_id(id_rows[index] if id_rows is not None else {}, cols, index))
            if sid in seen:
                raise ValueError(f"duplicate id {sid!r}")
        except ValueError as exc:
            bench.skip(f"row {index}", str(exc))
            continue
        seen.add(sid)

        def load(index=index) -> EditRecord:
            return to_example(ds[index], cols, index)

        bench.refs.append(SampleRef(sid, f"{sid}.png", load))
    return bench


# ---- entry point ---------------------------------------------------------------------------------------
def detect_kind(path: Path) -> str:
    if path.is_file():
        if path.name == "mapping_file.json":
            return "pie-bench"
        if path.suffix == ".jsonl":
            return "manifest"
        if path.name == "edit_sessions.json":
            return "magicbrush"
        raise ValueError(f"{path}: not a benchmark file (mapping_file.json, edit_sessions.json or *.jsonl)")
    if not path.is_dir():
        raise FileNotFoundError(f"benchmark not found: {path} (names: shapes-test, sudoku-test)")
    if (path / "mapping_file.json").is_file():
        return "pie-bench"
    if (path / "manifest.jsonl").is_file():
        return "manifest"
    from ..data.hf_datasets import looks_like_dataset

    if looks_like_dataset(path):
        return "hf"
    return "magicbrush"


def load_benchmark(name_or_path: str | os.PathLike[str], n: int | None = None, *, columns: str | None = None,
                   preset: str | None = None, split: str | None = None, offline: bool = False) -> Benchmark:
    """``shapes-test`` (or ``shapes-val``), ``sudoku-test`` (or ``sudoku-val``), or a path to a PIE-Bench, MagicBrush, manifest or Hugging Face
    dataset benchmark (optionally prefixed ``pie-bench:``, ``magicbrush:``, ``manifest:``, ``hf:``; a hub
    name needs ``hf:`` and a connection); the first ``n`` samples. ``columns`` / ``preset`` / ``split``:
    for datasets (:mod:`rm_edit.data.hf_datasets`)."""
    text = str(name_or_path)
    if text in ("shapes-test", "shapes-val", "shapes"):
        return shapes_benchmark(n, "val" if text == "shapes-val" else "test")
    from .sudoku_eval import NAMES, sudoku_benchmark

    if text in NAMES:
        return sudoku_benchmark(n, NAMES[text])
    kind = None
    for k in ("pie-bench", "magicbrush", "manifest", "hf"):
        if text.startswith(k + ":"):
            kind, text = k, text[len(k) + 1 :]
    path = Path(text).expanduser()
    if kind == "hf" or (kind is None and (columns or preset) and path.is_dir()):
        return hf_benchmark(text, columns, preset, split, offline).head(n)
    kind = kind or detect_kind(path)
    if kind == "hf":
        return hf_benchmark(path, columns, preset, split, offline).head(n)
    if kind == "magicbrush" and path.is_file():
        path = path.parent
    loader = {"pie-bench": pie_bench, "magicbrush": magicbrush, "manifest": manifest_benchmark}[kind]
    return loader(path).head(n)

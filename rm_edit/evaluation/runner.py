"""Run a model over a benchmark (or score another tool's images), per-sample metrics and a summary.

Output folder (``out_dir``)::

    run.json             what was run (a resumed run must match it)
    samples.jsonl        append-only per-sample rows: the source of truth (last row of an id wins)
    images/<path>.png    the edits (run_model); <path> is the benchmark's image path, suffix .png
    regions/<path>.png   the region the model chose to regenerate (white), run_model only
    per_sample.csv/.json the rows in benchmark order
    summary.md/.json     the summary table (benchmark's usual units) and every metric's mean
    errors.jsonl         samples that were skipped (bad benchmark entries, failed edits)
    report.html          the per-sample report (rm_edit.evaluation.report)

Resuming: a sample is skipped when its row exists and (run_model) its image too; a killed run loses at
most the batch in flight. The pipeline is passed in by the caller; this module never imports it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import tempfile
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..metrics import EditMetrics, MetricUnavailable, aggregate, downsample_mask, kept_outside_fraction, token_localization
from ..metrics import edit_success_rates
from ..metrics.structure import STRUCTURE_WEIGHTS_ENV, StructureDistance
from .benchmarks import IMAGE_SUFFIXES, Benchmark, BenchmarkSample, SampleRef, fit_prediction

INFO_KEYS = ("id", "image", "instruction", "edit_type", "status", "reasons", "token_gt", "resized_from")
RESERVED_OPTIONS = ("image", "prompt", "generator", "output_type", "return_trajectory", "return_dict", "mask_image")

# Summary columns: (metric key, label). Arrows: which way is better.
_LOC_COLUMNS = [
    ("loc_precision", "Loc P ↑"), ("loc_recall", "Loc R ↑"), ("loc_iou", "Loc IoU ↑"), ("loc_leakage", "Leak ↓"),
]
_TOKEN_COLUMNS = [
    ("tok_precision", "Tok P ↑"), ("tok_recall", "Tok R ↑"), ("tok_edit_accuracy", "Tok edit acc ↑"),
    ("replayed", "Replayed ↓"), ("forward_passes", "Fwd passes ↓"),
]
COLUMNS: dict[str, list[tuple[str, str]]] = {
    # PIE-Bench's table: structure x1e3, background PSNR / LPIPSx1e3 / MSEx1e4 / SSIMx1e2, CLIP whole / edited.
    "pie-bench": [
        ("structure_x1e3", "Structure x1e3 ↓"), ("pie_psnr", "PSNR ↑"), ("pie_lpips_x1e3", "LPIPS x1e3 ↓"),
        ("pie_mse_x1e4", "MSE x1e4 ↓"), ("pie_ssim_x1e2", "SSIM x1e2 ↑"), ("clip_score", "CLIP whole ↑"),
        ("clip_score_edit_region", "CLIP edited ↑"), *_LOC_COLUMNS, *_TOKEN_COLUMNS,
    ],
    # MagicBrush's: L1, L2 to the target, CLIP-I, DINO, CLIP-T.
    "magicbrush": [
        ("target_l1", "L1 ↓"), ("target_l2", "L2 ↓"), ("clip_i", "CLIP-I ↑"), ("dino", "DINO ↑"),
        ("clip_t", "CLIP-T ↑"), *_LOC_COLUMNS, *_TOKEN_COLUMNS,
    ],
    # Exact ground truth (shapes world, manifests with targets and masks); pixel edit success first
    # (rm_edit.metrics.edit_success: its mean is the success rate, per edit type under "By edit type").
    "shapes": [
        ("edit_success", "Edit success ↑"), *_LOC_COLUMNS, ("bg_psnr", "BG PSNR ↑"), ("bg_ssim", "BG SSIM ↑"), ("bg_lpips", "BG LPIPS ↓"),
        ("target_psnr", "Target PSNR ↑"), ("target_l1", "Target L1 ↓"), ("tok_precision", "Tok P ↑"),
        ("tok_recall", "Tok R ↑"), ("tok_edit_accuracy", "Tok edit acc ↑"), ("replayed", "Replayed ↓"),
        ("forward_passes", "Fwd passes ↓"),
    ],
}
COLUMNS["manifest"] = COLUMNS["shapes"]


def columns_for(kind: str) -> list[tuple[str, str]]:
    return COLUMNS.get(kind, COLUMNS["shapes"])


def sample_seed(seed: int, sample_id: str) -> int:
    """Per-sample seed from the id, as ``rm-edit batch``: independent of order and batch size."""
    return seed + zlib.crc32(sample_id.encode("utf-8"))


def output_relpath(image_path: str) -> str:
    """Where an edit of ``image_path`` is written: the same relative path, suffix .png (lossless)."""
    return Path(image_path).with_suffix(".png").as_posix()


def find_prediction(predictions_dir: Path, image_path: str) -> Path | None:
    """The prediction for ``image_path``: the same relative path with any image suffix; also looks in
    ``predictions_dir/images`` (an eval output folder)."""
    rel = Path(image_path)
    for base in (predictions_dir, predictions_dir / "images"):
        for candidate in (rel, *(rel.with_suffix(s) for s in IMAGE_SUFFIXES), *(rel.with_suffix(s.upper()) for s in IMAGE_SUFFIXES)):
            p = base / candidate
            if p.is_file():
                return p
    return None


# ---- structure distance (PIE-Bench): rm_edit.metrics.structure ------------------------------------------
def build_metrics(clip_weights=None, clip_i_weights=None, dino_weights=None, structure_weights=None,
                  device: str = "cpu", download: bool = False,
                  offline: bool = False) -> tuple[EditMetrics, StructureDistance | None, dict[str, str]]:
    """The metric suite from local weights (and with ``download`` the libraries' caches, filled when online;
    ``offline``: caches only); returns it, the structure scorer (or None) and reasons."""
    metrics = EditMetrics.from_local(clip_weights=clip_weights, clip_i_weights=clip_i_weights,
                                     dino_weights=dino_weights, device=device, download=download, offline=offline)
    reasons: dict[str, str] = {}
    try:
        structure = StructureDistance(structure_weights, device=device, download=download, offline=offline)
    except MetricUnavailable as exc:
        structure, reasons["structure_x1e3"] = None, exc.reason
    return metrics, structure, reasons


# ---- files ---------------------------------------------------------------------------------------------
def save_png(path: Path, image: Image.Image) -> None:
    """Atomic write (temp file + rename): a half-written image never looks finished."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            image.save(fh, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _plain(v: Any) -> Any:
    """Standard JSON: nan -> null, +-inf -> "inf"/"-inf" (browsers and jq cannot read NaN/Infinity)."""
    if isinstance(v, float):
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def dump_json(path: Path, obj: Any) -> None:
    _write_text(path, json.dumps(_plain(obj), indent=2, ensure_ascii=False) + "\n")


class SampleLog:
    """``samples.jsonl``: one JSON row per line, appended and flushed per sample; a torn last line (killed
    mid-write) is ignored on reading."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[str, dict] = {}
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            if text and not text.endswith("\n"):  # torn last line: drop it so appends start clean
                text = text[: text.rfind("\n") + 1]
                _write_text(path, text)
            for line in text.splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and "id" in row:
                    self.rows[row["id"]] = row

    def append(self, row: dict) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.rows[row["id"]] = row


_FREE_CONFIG_KEYS = ("n", "label")  # a resumed run may extend n or rename itself


def _check_run_config(out_dir: Path, config: dict) -> None:
    """A resumed run must use the settings its rows were made with (n and the label may change)."""
    path = out_dir / "run.json"
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        new = _plain(config)
        diff = sorted(k for k in set(old) | set(new) if k not in _FREE_CONFIG_KEYS and old.get(k) != new.get(k))
        if diff:
            raise ValueError(f"{out_dir} holds a run with other settings ({', '.join(diff)}); "
                             "use another output folder or delete it")
    dump_json(path, config)


class _Errors:
    def __init__(self, path: Path, benchmark: Benchmark) -> None:
        self.path, self.benchmark = path, benchmark
        self.entries: list[dict] = []

    def add(self, sample_id: str | None, reason: str) -> None:
        self.benchmark.skip(sample_id, reason)

    def write(self) -> None:
        self.entries = list(self.benchmark.errors)
        text = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in self.entries)
        _write_text(self.path, text)


# ---- per-sample metrics ------------------------------------------------------------------------------
def _crop_mask_to_grid(mask: np.ndarray, crop, grid_hw: tuple[int, int]) -> torch.Tensor:
    """A pixel mask at the input's size -> the token grid of the VQ crop (a token is in if any pixel is)."""
    m = Image.fromarray(mask.astype(np.uint8) * 255).resize(crop.resized_size, Image.Resampling.NEAREST).crop(crop.box)
    return downsample_mask(np.asarray(m) > 127, grid_hw)


def token_metrics(remasked: torch.Tensor, source_codes: torch.Tensor, edited_codes: torch.Tensor,
                  target_codes: torch.Tensor | None = None, mask_grid: torch.Tensor | None = None) -> tuple[dict, str | None]:
    """Token-level localization of the re-masked set against the ground-truth change: the codes where
    source and target differ when a target exists (as ``token_eval``), else the mask pooled to the grid."""
    if target_codes is not None:
        gt, kind = (source_codes != target_codes), "codes"
    elif mask_grid is not None:
        gt, kind = mask_grid.bool(), "mask"
    else:
        return {}, None
    loc = token_localization(remasked.bool(), gt)
    out = {f"tok_{k}": v for k, v in loc.items()}
    out["tok_kept_outside"] = kept_outside_fraction(source_codes, edited_codes, gt)
    if target_codes is not None:
        out["tok_edit_accuracy"] = float((edited_codes[gt] == target_codes[gt]).float().mean()) if gt.any() else 1.0
        out["tok_accuracy"] = float((edited_codes == target_codes).float().mean())
    return out, kind


def score_sample(sample: BenchmarkSample, edit: Image.Image, metrics: EditMetrics,
                 structure: StructureDistance | None = None, structure_reason: str | None = None) -> dict:
    """One sample's pixel metrics (plus structure distance) as a flat row with ``reasons``."""
    caps = sample.captions or (None, None)
    rgb = lambda im: None if im is None else np.array(im.convert("RGB"))  # noqa: E731 (writable copies)
    values = metrics.compute(rgb(sample.source), rgb(edit), target=rgb(sample.target), mask=sample.mask,
                             instruction=sample.instruction, source_caption=caps[0], target_caption=caps[1])
    reasons = values.pop("reasons")
    if structure is not None:
        try:
            values["structure_x1e3"] = 1e3 * structure.distance(sample.source, edit)
        except MetricUnavailable as exc:
            values["structure_x1e3"], reasons["structure_x1e3"] = None, exc.reason
    else:
        values["structure_x1e3"] = None
        reasons["structure_x1e3"] = structure_reason or "no DINO ViT-B/8 weights: pass --structure-weights or set " + STRUCTURE_WEIGHTS_ENV
    values["reasons"] = reasons
    return values


def metric_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """The numeric part of a row (what ``aggregate`` averages)."""
    return {k: v for k, v in row.items() if k not in INFO_KEYS and not isinstance(v, (str, bool, dict, list))}


# ---- summaries ----------------------------------------------------------------------------------------
def summarize(benchmark: Benchmark, rows: list[dict], config: dict) -> dict:
    ok = [r for r in rows if r.get("status", "ok") == "ok"]
    stats = aggregate(metric_values(r) for r in ok)
    unavailable: dict[str, str] = {}
    if config.get("mode") == "predictions":
        for k in ("tok_precision", "tok_recall", "tok_iou", "tok_leakage", "tok_kept_outside", "tok_edit_accuracy",
                  "tok_accuracy", "replayed", "forward_passes"):
            unavailable[k] = "needs the model's own output (run with --model)"
    for r in ok:
        for k, why in (r.get("reasons") or {}).items():
            if stats.get(k, {}).get("count", 0) == 0:
                unavailable.setdefault(k, why)
    by_type: dict[str, dict] = {}
    for r in ok:
        if r.get("edit_type") is not None:
            by_type.setdefault(str(r["edit_type"]), []).append(metric_values(r))  # type: ignore[arg-type]
    return {
        "benchmark": benchmark.name, "kind": benchmark.kind, "n_benchmark": len(benchmark),
        "n_scored": len(ok), "n_missing_predictions": sum(r.get("status") == "missing" for r in rows),
        "n_skipped": len(benchmark.errors), "config": config,
        "columns": [[k, label] for k, label in columns_for(benchmark.kind)],
        "means": {k: s["mean"] for k, s in stats.items()}, "metrics": stats, "unavailable": unavailable,
        "by_edit_type": {t: {k: s["mean"] for k, s in aggregate(v).items()} for t, v in sorted(by_type.items())},
        "edit_success": edit_success_rates(ok),
    }


def format_value(stat: Mapping[str, Any] | None) -> str:
    if not stat or stat.get("mean") is None:
        if stat and stat.get("n_inf"):
            return f"inf (all {stat['n_inf']})"
        return "n/a"
    mean = stat["mean"]
    text = f"{mean:.4g}" if abs(mean) < 1000 else f"{mean:.1f}"
    if stat.get("n_inf"):
        text += f" ({stat['n_inf']} inf)"
    return text


def markdown_table(named: Sequence[tuple[str, Mapping[str, Any]]], columns: Sequence[Sequence[str]]) -> str:
    """Rows ``(name, summary)`` -> a Markdown table of the column means (n/a where unavailable)."""
    head = "| | " + " | ".join(label for _, label in columns) + " |"
    sep = "|---|" + "---:|" * len(columns)
    lines = [head, sep]
    for name, summary in named:
        stats = summary.get("metrics", {})
        lines.append(f"| {name} | " + " | ".join(format_value(stats.get(k)) for k, _ in columns) + " |")
    return "\n".join(lines)


def unavailable_notes(summaries: Iterable[Mapping[str, Any]], columns: Sequence[Sequence[str]]) -> list[str]:
    keys = {k for k, _ in columns}
    seen: dict[str, str] = {}
    for s in summaries:
        for k, why in s.get("unavailable", {}).items():
            if k in keys:
                seen.setdefault(k, why)
    return [f"{k}: n/a - {why}" for k, why in sorted(seen.items())]


def summary_markdown(summary: Mapping[str, Any], title: str) -> str:
    columns = summary["columns"]
    parts = [f"# {title}", "",
             f"{summary['n_scored']} of {summary['n_benchmark']} samples scored"
             + (f", {summary['n_missing_predictions']} predictions missing" if summary["n_missing_predictions"] else "")
             + (f", {summary['n_skipped']} skipped (errors.jsonl)" if summary["n_skipped"] else "") + ".", "",
             markdown_table([(summary["config"].get("label") or "run", summary)], columns), ""]
    notes = unavailable_notes([summary], columns)
    if notes:
        parts += ["Unavailable:", *[f"- {n}" for n in notes], ""]
    from .success_table import success_by_type_markdown

    success = success_by_type_markdown([(summary["config"].get("label") or "run", summary)])
    if success:
        parts += ["## Edit success by edit type", "", success, ""]
    if summary["by_edit_type"]:
        keys = [(k, label) for k, label in columns if any(v.get(k) is not None for v in summary["by_edit_type"].values())]
        parts += ["## By edit type", "", markdown_table(
            [(t, {"metrics": {k: {"mean": v} for k, v in means.items()}}) for t, means in summary["by_edit_type"].items()],
            keys), ""]
    parts += ["All metric means: summary.json. Per sample: per_sample.csv / per_sample.json.", ""]
    return "\n".join(parts)


def _ordered_rows(benchmark: Benchmark, log: SampleLog) -> list[dict]:
    return [log.rows[i] for i in benchmark.ids if i in log.rows]


def _write_tables(out_dir: Path, rows: list[dict]) -> None:
    dump_json(out_dir / "per_sample.json", rows)
    keys: list[str] = []
    for r in rows:
        for k in r:
            if k != "reasons" and k not in keys:
                keys.append(k)
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys})
    _write_text(out_dir / "per_sample.csv", buf.getvalue())


def finalize(benchmark: Benchmark, out_dir: Path, log: SampleLog, config: dict, predictions_dir: Path,
             title: str, report: bool, regions_dir: Path | None = None, progress: bool = False) -> dict:
    rows = _ordered_rows(benchmark, log)
    _write_tables(out_dir, rows)
    summary = summarize(benchmark, rows, config)
    summary["files"] = {"samples": "samples.jsonl", "per_sample_csv": "per_sample.csv", "summary_md": "summary.md"}
    md = summary_markdown(summary, title)
    _write_text(out_dir / "summary.md", md)
    if report:
        from .report import write_report

        path = write_report(out_dir / "report.html", benchmark, rows, predictions_dir, title=title,
                            summary_rows=[(config.get("label") or "run", summary)], columns=summary["columns"],
                            notes=unavailable_notes([summary], summary["columns"]), regions_dir=regions_dir,
                            progress=progress)
        summary["files"]["report"] = path.name
    dump_json(out_dir / "summary.json", summary)
    return summary


# ---- running a model -----------------------------------------------------------------------------------
def _edit_chunk(pipe, samples: list[BenchmarkSample], options: dict, seed: int, use_masks: bool) -> list[dict]:
    """One pipeline call for same-grid samples; per sample: edit, chosen region and token metrics."""
    from ..vq import crop_for_vq, decode_codes, encode_to_codes, preprocess_image

    start = time.perf_counter()
    sources = [s.source.convert("RGB") for s in samples]
    regions = [s.mask if s.mask is not None else np.ones((s.source.height, s.source.width), bool) for s in samples]
    out = pipe(sources, [s.instruction for s in samples],
               generator=[torch.Generator().manual_seed(sample_seed(seed, s.id)) for s in samples],
               output_type="latent", return_trajectory=True, mask_image=regions if use_masks else None, **options)
    from .token_eval import count_replays

    replays = count_replays(out.trajectory, pipe.layout.mask_code)
    cm, cells = pipe.config.crop_multiple, pipe.config.max_crop_cells
    crops = [crop_for_vq(im.width, im.height, cm, cells) for im in sources]
    device = pipe.vqvae.device
    if options.get("strategy", "reflective") == "reflective":  # the sampler starts from the source's codes
        source_codes = out.trajectory[0]["codes"].cpu()
    else:
        source_codes = encode_to_codes(
            pipe.vqvae, torch.cat([preprocess_image(im, cm, cells)[0] for im in sources]).to(device)).cpu()
    with_target = [i for i, s in enumerate(samples) if s.target is not None]
    target_codes: dict[int, torch.Tensor] = {}
    if with_target:
        t = encode_to_codes(pipe.vqvae, torch.cat([preprocess_image(samples[i].target, cm, cells)[0] for i in with_target]).to(device)).cpu()
        target_codes = dict(zip(with_target, t))
    seconds = (time.perf_counter() - start) / len(samples)
    results = []
    for i, s in enumerate(samples):
        # Decode one image at a time: the VQ decoder's rounding depends on the batch size, results must not.
        pixels = decode_codes(pipe.vqvae, out.images[i : i + 1].to(device)).cpu()
        edit = pipe._postprocess(pixels, [crops[i]], [sources[i]], out.edit_region_tokens[i : i + 1],
                                 bool(options.get("paste_back", False)), "pil")[0]
        grid = tuple(out.edit_region_tokens[i].shape)
        mask_grid = _crop_mask_to_grid(s.mask, crops[i], grid) if s.mask is not None else None
        tok, kind = token_metrics(out.edit_region_tokens[i], source_codes[i], out.images[i].cpu(),
                                  target_codes.get(i), mask_grid)
        results.append(dict(edit=edit, region=out.edit_masks[i], tokens=tok, token_gt=kind,
                            forward_passes=out.num_forward_passes, replayed=replays[i] if replays else 0,
                            region_tokens=int(out.edit_region_tokens[i].sum()), edit_seconds=seconds))
    return results


def _check_options(options: Mapping[str, Any]) -> dict:
    bad = [k for k in options if k in RESERVED_OPTIONS]
    if bad:
        raise ValueError(f"call options {bad} are set by the runner")
    return {k: v for k, v in options.items() if v is not None}


def run_model(pipe, benchmark: Benchmark, out_dir: str | os.PathLike[str], call_options: Mapping[str, Any] | None = None,
              *, metrics: EditMetrics | None = None, structure: StructureDistance | None = None,
              structure_reason: str | None = None, batch_size: int = 8, seed: int = 0,
              use_benchmark_masks: bool = False, progress: bool = True, report: bool = True,
              label: str | None = None, model: str | None = None) -> dict:
    """Edit every sample with ``pipe`` (same-grid samples batched, one generator per sample, seeded from
    its id), write the edits and per-sample metrics, and return the summary (also in summary.json).

    ``call_options``: pipeline keywords (strategy, num_turns, use_history, history_decay, paste_back, ...).
    ``use_benchmark_masks``: let only the benchmark's mask change (default: the model localizes itself).
    """
    from ..vq import crop_for_vq

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    options = _check_options(dict(call_options or {}))
    config = {"mode": "model", "benchmark": benchmark.name, "n": len(benchmark), "call_options": options,
              "seed": seed, "use_benchmark_masks": use_benchmark_masks, "model": model, "label": label}
    _check_run_config(out_dir, config)
    images_dir, regions_dir = out_dir / "images", out_dir / "regions"
    log = SampleLog(out_dir / "samples.jsonl")
    errors = _Errors(out_dir / "errors.jsonl", benchmark)
    if metrics is None:
        metrics, structure, reasons = build_metrics(device=str(pipe.vqvae.device))
        structure_reason = structure_reason or reasons.get("structure_x1e3")

    def finished(ref: SampleRef) -> bool:
        row = log.rows.get(ref.id)
        return row is not None and row.get("status") == "ok" and (images_dir / output_relpath(ref.image_path)).is_file()

    pending = [r for r in benchmark.refs if not finished(r)]
    if len(pending) < len(benchmark.refs):
        tqdm.write(f"resuming: {len(benchmark.refs) - len(pending)} of {len(benchmark.refs)} samples already done",
                   file=sys.stderr)
    cm, cells = pipe.config.crop_multiple, pipe.config.max_crop_cells

    def run_chunk(chunk: list[BenchmarkSample]) -> None:
        try:
            results = _edit_chunk(pipe, chunk, options, seed, use_benchmark_masks)
            pairs = list(zip(chunk, results))
        except Exception as exc:  # one bad sample must not sink its batch: retry one by one
            if len(chunk) == 1:
                errors.add(chunk[0].id, f"edit failed: {type(exc).__name__}: {exc}")
                return
            for s in chunk:
                run_chunk([s])
            return
        for s, res in pairs:
            rel = output_relpath(s.image_path)
            save_png(images_dir / rel, res["edit"])
            save_png(regions_dir / rel, Image.fromarray(res["region"].astype(np.uint8) * 255, "L"))
            values = score_sample(s, res["edit"], metrics, structure, structure_reason)
            reasons = values.pop("reasons")
            if res["token_gt"] is None:
                reasons.update({k: "no target or mask" for k in ("tok_precision", "tok_recall")})
            row = {"id": s.id, "image": rel, "instruction": s.instruction, "edit_type": s.edit_type, "status": "ok",
                   **values, **res["tokens"], "token_gt": res["token_gt"], "forward_passes": res["forward_passes"],
                   "replayed": res["replayed"], "region_tokens": res["region_tokens"],
                   "edit_seconds": res["edit_seconds"], "reasons": reasons}
            log.append(row)

    buckets: dict[tuple[int, int], list[BenchmarkSample]] = {}
    with tqdm(total=len(pending), desc=f"editing {benchmark.name}", unit="img", disable=not progress) as bar:
        for sample in benchmark.iter_refs(pending):
            grid = crop_for_vq(sample.source.width, sample.source.height, cm, cells).grid
            bucket = buckets.setdefault(grid, [])
            bucket.append(sample)
            if len(bucket) >= batch_size:
                run_chunk(bucket)
                bar.update(len(bucket))
                buckets[grid] = []
        for bucket in buckets.values():
            if bucket:
                run_chunk(bucket)
                bar.update(len(bucket))
        bar.update(bar.total - bar.n)
    errors.write()
    title = f"{benchmark.name}: {label or model or 'model'}"
    return finalize(benchmark, out_dir, log, config, images_dir, title, report, regions_dir, progress)


def score(benchmark: Benchmark, predictions_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
          metrics: EditMetrics | None = None, *, structure: StructureDistance | None = None,
          structure_reason: str | None = None, progress: bool = True, report: bool = True,
          label: str | None = None) -> dict:
    """Score edits made by any tool: ``predictions_dir/<image path>`` (any image suffix; also
    ``predictions_dir/images/...``). Predictions of another size are fitted as the benchmark's own script
    does (``benchmarks.fit_prediction``: PIE-Bench crops a side-by-side ``[source | edit]`` to its bottom-right
    corner; otherwise bicubic resize to the source's size) and the row's ``resized_from`` says so; missing ones are counted and retried by the next run."""
    predictions_dir = Path(predictions_dir)
    if not predictions_dir.is_dir():
        raise FileNotFoundError(f"predictions folder not found: {predictions_dir}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {"mode": "predictions", "benchmark": benchmark.name, "n": len(benchmark),
              "predictions": str(predictions_dir.resolve()), "label": label}
    _check_run_config(out_dir, config)
    log = SampleLog(out_dir / "samples.jsonl")
    errors = _Errors(out_dir / "errors.jsonl", benchmark)
    if metrics is None:
        metrics, structure, reasons = build_metrics()
        structure_reason = structure_reason or reasons.get("structure_x1e3")
    pending = [r for r in benchmark.refs if log.rows.get(r.id, {}).get("status") != "ok"]
    with tqdm(total=len(pending), desc=f"scoring {benchmark.name}", unit="img", disable=not progress) as bar:
        for ref in pending:
            pred = find_prediction(predictions_dir, ref.image_path)
            if pred is None:
                log.append({"id": ref.id, "image": None, "status": "missing"})
                bar.update()
                continue
            sample = benchmark.load(ref)
            if sample is None:
                bar.update()
                continue
            try:
                from ..data.manifest import load_image

                edit = load_image(pred)
            except ValueError as exc:
                errors.add(ref.id, f"prediction: {exc}")
                bar.update()
                continue
            edit, resized = fit_prediction(benchmark.kind, edit, sample.source)  # e.g. PIE-Bench's side-by-side crop
            values = score_sample(sample, edit, metrics, structure, structure_reason)
            reasons = values.pop("reasons")
            row = {"id": sample.id, "image": pred.relative_to(predictions_dir).as_posix(),
                   "instruction": sample.instruction, "edit_type": sample.edit_type, "status": "ok", **values,
                   "resized_from": resized, "reasons": reasons}
            log.append(row)
            bar.update()
    errors.write()
    title = f"{benchmark.name}: {label or predictions_dir.name}"
    return finalize(benchmark, out_dir, log, config, predictions_dir, title, report, None, progress)


# ---- test-time scaling ---------------------------------------------------------------------------------
SWEEP_METRICS = {
    "quality (PSNR, dB)": [("target_psnr", "target PSNR"), ("bg_psnr", "background PSNR (masked)"),
                           ("pie_psnr", "PIE-Bench background PSNR")],
    "edit accuracy": [("tok_edit_accuracy", "edit-region token acc."), ("tok_accuracy", "token acc."),
                      ("tok_kept_outside", "kept outside")],
    "localization": [("tok_precision", "token precision"), ("tok_recall", "token recall"), ("loc_iou", "pixel IoU"),
                     ("loc_leakage", "pixel leakage")],
    "CLIP": [("clip_score", "CLIP score"), ("clip_score_edit_region", "CLIP edited")],
    "cost": [("forward_passes", "forward passes"), ("replayed", "replayed tokens")],
}


def turns_sweep(pipe, benchmark: Benchmark, out_dir: str | os.PathLike[str], call_options: Mapping[str, Any] | None,
                turns: Sequence[int], *, progress: bool = True, report: bool = True, **run_kwargs: Any) -> dict:
    """Test-time scaling: ``run_model`` with ``num_turns = t`` for each t (into ``out_dir/turns_<t>``), then
    ``turns_sweep.json`` / ``.md``, ``turns_sweep.png`` (quality, localization and cost against turns) and
    ``report.html`` (the table, the plot and the per-sample rows of the largest t)."""
    options = dict(call_options or {})
    if options.get("strategy", "reflective") != "reflective":
        raise ValueError("a turns sweep needs strategy 'reflective' (regenerate has no turns)")
    turns = sorted({int(t) for t in turns})
    if not turns or turns[0] < 1:
        raise ValueError(f"turns must be positive whole numbers, got {turns}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summaries: dict[int, dict] = {}
    for t in turns:
        summaries[t] = run_model(pipe, benchmark, out_dir / f"turns_{t}", {**options, "num_turns": t},
                                 progress=progress, report=False, label=f"{t} turns", **run_kwargs)
    columns = columns_for(benchmark.kind)
    from .report import plot_turns_sweep, write_report

    plot = plot_turns_sweep({t: s["means"] for t, s in summaries.items()}, out_dir / "turns_sweep.png", SWEEP_METRICS)
    named = [(f"{t} turns", s) for t, s in summaries.items()]
    notes = unavailable_notes(summaries.values(), columns)
    _write_text(out_dir / "turns_sweep.md", "\n".join([f"# Test-time scaling on {benchmark.name}", "",
                markdown_table(named, columns), "", *[f"- {n}" for n in notes], "", "![turns sweep](turns_sweep.png)", ""]))
    result = {"benchmark": benchmark.name, "turns": turns, "call_options": options,
              "summaries": {str(t): s for t, s in summaries.items()}, "plot": plot.name}
    dump_json(out_dir / "turns_sweep.json", result)
    if report:
        last = out_dir / f"turns_{turns[-1]}"
        rows = _ordered_rows(benchmark, SampleLog(last / "samples.jsonl"))
        write_report(out_dir / "report.html", benchmark, rows, last / "images", title=f"Test-time scaling on {benchmark.name}",
                     summary_rows=named, columns=columns, notes=notes, plots=[plot], regions_dir=last / "regions",
                     rows_caption=f"Per sample, {turns[-1]} turns", progress=progress)
    return result

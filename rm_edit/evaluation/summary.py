"""Summaries of an evaluation run: the columns per benchmark kind, means and counts over the rows, the
markdown table, and the per-sample tables (``per_sample.csv`` / ``.json``)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..files import dump_json, plain_json, write_text
from ..metrics import aggregate, edit_success_rates
from .benchmark_set import Benchmark
from .run_files import SampleLog
from .sudoku_eval import SUDOKU_COLUMNS, add_sudoku_summary, sudoku_markdown

INFO_KEYS = ("id", "image", "instruction", "edit_type", "status", "reasons", "token_gt", "resized_from")
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
# The Sudoku world (rm_edit.metrics.sudoku, read off the edited image); per k bucket and task below the table.
COLUMNS["sudoku"] = SUDOKU_COLUMNS


def columns_for(kind: str) -> list[tuple[str, str]]:
    return COLUMNS.get(kind, COLUMNS["shapes"])


# The metric backbone (weights to find or fetch) behind each column that needs one.
_BACKBONE_OF = {"bg_lpips": "lpips", "pie_lpips_x1e3": "lpips", "clip_score": "clip", "clip_score_edit_region": "clip",
                "clip_t": "clip", "clip_i": "clip_i", "dino": "dino", "structure_x1e3": "structure"}


def metrics_reported(kind: str) -> set[str]:
    """The weighted metrics (``lpips``, ``clip``, ``clip_i``, ``dino``, ``structure``) a benchmark kind's table
    reports: only their weights are looked for."""
    return {_BACKBONE_OF[k] for k, _ in columns_for(kind) if k in _BACKBONE_OF}


def metric_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """The numeric part of a row (what ``aggregate`` averages)."""
    return {k: v for k, v in row.items() if k not in INFO_KEYS and not isinstance(v, (str, bool, dict, list))}


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
    summary = {
        "benchmark": benchmark.name, "kind": benchmark.kind, "n_benchmark": len(benchmark),
        "n_scored": len(ok), "n_missing_predictions": sum(r.get("status") == "missing" for r in rows),
        "n_skipped": len(benchmark.errors), "config": config,
        "columns": [[k, label] for k, label in columns_for(benchmark.kind)],
        "means": {k: s["mean"] for k, s in stats.items()}, "metrics": stats, "unavailable": unavailable,
        "by_edit_type": {t: {k: s["mean"] for k, s in aggregate(v).items()} for t, v in sorted(by_type.items())},
        "edit_success": edit_success_rates(ok),
    }
    if benchmark.kind == "sudoku":
        add_sudoku_summary(summary, ok)
    return summary


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
    parts += sudoku_markdown(summary, markdown_table)
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
    write_text(out_dir / "per_sample.csv", buf.getvalue())

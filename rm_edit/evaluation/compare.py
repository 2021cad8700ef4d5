"""The seed's comparison on the shapes world's test split: baselines vs Reflective Masking (+ HER).

Rows (pipeline folders under ``models_dir``): "Lumina-style" base (regenerate), vanilla SFT (regenerate), RM,
RM + HER, RM + HER with decay 0.7, each without paste-back (the model's own output, said in the row's name),
and the best reflective row (highest target PSNR) again with paste-back (the pipeline's default). Columns: localization (token
precision / recall, pixel IoU / leakage), background preservation (masked PSNR, SSIM, LPIPS when its
weights are local - random weights are never used, it is reported unavailable instead), edit quality
(target PSNR / L1, edit-region token accuracy), replayed tokens, forward passes.

Writes ``compare.md``, ``compare.json``, ``index.html`` (the table, linking each row's report) and one
``run_model`` folder per row (with its ``report.html``). A missing model folder skips its rows (noted).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..files import dump_json, write_text
from ..metrics import EditMetrics
from .benchmarks import shapes_benchmark
from .runner import run_model
from .success_table import success_by_type_markdown
from .summary import markdown_table, unavailable_notes

# (row name, model folder, pipeline call options): the model's own output, so no paste-back.
_RAW = dict(paste_back=False)
ROWS: list[tuple[str, str, dict[str, Any]]] = [
    ('"Lumina-style" base (regenerate, no paste-back)', "shapes-base",
     dict(strategy="regenerate", num_inference_steps=16, **_RAW)),
    ("vanilla SFT (regenerate, no paste-back)", "shapes-sft", dict(strategy="regenerate", num_inference_steps=16, **_RAW)),
    ("RM (reflective, no paste-back)", "shapes-rm", dict(strategy="reflective", **_RAW)),
    ("RM + HER (reflective, no paste-back)", "shapes-rm-her",
     dict(strategy="reflective", use_history=True, history_decay=1.0, **_RAW)),
    ("RM + HER, decay 0.7 (reflective, no paste-back)", "shapes-rm-her",
     dict(strategy="reflective", use_history=True, history_decay=0.7, **_RAW)),
]

COMPARE_COLUMNS: list[tuple[str, str]] = [
    ("edit_success", "Edit success ↑"), ("tok_precision", "Tok P ↑"), ("tok_recall", "Tok R ↑"), ("loc_iou", "Pixel IoU ↑"), ("loc_leakage", "Pixel leak ↓"),
    ("bg_psnr", "BG PSNR ↑"), ("bg_ssim", "BG SSIM ↑"), ("bg_lpips", "BG LPIPS ↓"),
    ("target_psnr", "Target PSNR ↑"), ("target_l1", "Target L1 ↓"), ("tok_edit_accuracy", "Tok edit acc ↑"),
    ("replayed", "Replayed ↓"), ("forward_passes", "Fwd passes ↓"),
]
BEST_BY = "target_psnr"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _default_loader(folder: Path):
    from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline

    pipe = ReflectiveMaskingEditPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def compare_shapes(models_dir: str | os.PathLike[str], n: int, out_dir: str | os.PathLike[str], *,
                   metrics: EditMetrics | None = None, rows: Sequence[tuple[str, str, dict]] = ROWS,
                   paste_back_row: bool = True, batch_size: int = 16, seed: int = 0, progress: bool = True,
                   device: str | None = None, load_pipeline: Callable[[Path], Any] | None = None) -> dict:
    """Run every row on the first ``n`` shapes test samples; returns ``{"rows": [...], "markdown": ...}``."""
    models_dir, out_dir = Path(models_dir), Path(out_dir)
    if not models_dir.is_dir():
        raise FileNotFoundError(f"models folder not found: {models_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    load = load_pipeline or _default_loader
    benchmark = shapes_benchmark(n, "test")
    if metrics is None:
        metrics = EditMetrics.from_local(device=device or "cpu")  # LPIPS only with local torchvision weights
    cache: dict[str, Any] = {}

    def pipeline(folder: str):
        if folder not in cache:
            cache.clear()  # one model in memory at a time
            pipe = load(models_dir / folder)
            cache[folder] = pipe.to(device) if device else pipe
        return cache[folder]

    results: list[dict] = []
    missing: list[str] = []

    def run_row(name: str, folder: str, options: dict) -> None:
        if not (models_dir / folder / "model_index.json").is_file():
            missing.append(f"{name}: no pipeline folder {models_dir / folder}")
            return
        row_dir = out_dir / _slug(name)
        summary = run_model(pipeline(folder), benchmark, row_dir, options, metrics=metrics,
                            structure_reason="not part of the shapes comparison", batch_size=batch_size, seed=seed,
                            progress=progress, report=True, label=name, model=folder)
        results.append({"name": name, "model": folder, "options": options, "dir": row_dir.name,
                        "summary": summary})

    for name, folder, options in rows:
        run_row(name, folder, dict(options))
    reflective = [r for r in results if r["options"].get("strategy") == "reflective"]
    scored = [r for r in reflective if r["summary"]["means"].get(BEST_BY) is not None]
    if paste_back_row and scored:
        best = max(scored, key=lambda r: r["summary"]["means"][BEST_BY])
        name = best["name"].replace(", no paste-back)", ", paste-back)")
        run_row(name, best["model"], {**best["options"], "paste_back": True})

    named = [(r["name"], r["summary"]) for r in results]
    notes = unavailable_notes([r["summary"] for r in results], COMPARE_COLUMNS) + [f"skipped {m}" for m in missing]
    table = markdown_table(named, COMPARE_COLUMNS)
    md = "\n".join([
        f"# Shapes test split, first {n} samples", "",
        "Token metrics: the re-masked set (regenerate: the tokens that changed) vs the codes where source and "
        "target differ. Pixel localization: |edit - source| > 0.1 vs the exact mask. Background: masked "
        f"(background-area) PSNR / SSIM / LPIPS. Paste-back row: the best reflective row by {BEST_BY}.", "",
        table, "", success_by_type_markdown(named), "", *[f"- {x}" for x in notes], "",
        *[f"- [{r['name']}]({r['dir']}/report.html)" for r in results], "",
    ])
    write_text(out_dir / "compare.md", md)
    dump_json(out_dir / "compare.json", {"n": n, "columns": COMPARE_COLUMNS, "best_by": BEST_BY, "skipped": missing,
                                          "rows": [{k: v for k, v in r.items()} for r in results]})
    from .report import write_report

    write_report(out_dir / "index.html", None, [], None, title=f"Shapes test split: comparison (n={n})",
                 summary_rows=named, columns=COMPARE_COLUMNS, notes=notes,
                 links=[(f"{r['name']}: per-sample report", f"{r['dir']}/report.html") for r in results])
    return {"rows": results, "markdown": md, "skipped": missing}

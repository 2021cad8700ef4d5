"""Run a model over a benchmark (or score another tool's images), per-sample metrics and a summary.

Output folder (``out_dir``)::

    run.json             what was run (a resumed run must match it)
    samples.jsonl        append-only per-sample rows: the source of truth (last row of an id wins)
    images/<path>.png    the edits (run_model); <path> is the benchmark's image path, suffix .png
    regions/<path>.png   the region the edit changed (white), run_model only
    turns/<path>.png     Sudoku (sudoku-grid models): the board after each turn, re-masked cells framed in red
    per_sample.csv/.json the rows in benchmark order
    summary.md/.json     the summary table (benchmark's usual units) and every metric's mean
    errors.jsonl         samples that were skipped (bad benchmark entries, failed edits)
    report.html          the per-sample report (rm_edit.evaluation.report)

Resuming: a sample is skipped when its row exists and (run_model) its image too; a killed run loses at
most the batch in flight. The pipeline is passed in by the caller; this module never imports it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..batch_edits import edit_in_batches
from ..files import dump_json, save_image, write_text
from ..metrics import EditMetrics, MetricUnavailable
from ..metrics.localization import token_metrics
from ..metrics.structure import STRUCTURE_WEIGHTS_ENV, StructureDistance
from ..data.records import EditRecord
from .benchmark_set import Benchmark, SampleRef
from .benchmarks import fit_prediction
from .run_files import ErrorList, SampleLog, check_run_config, find_prediction, output_relpath
from .summary import (_ordered_rows, _write_tables, columns_for, markdown_table, summarize, summary_markdown,
                      unavailable_notes)
from .sudoku_eval import bucket_summary_rows, step_boards, sudoku_values, turn_frames, turn_strip
from .token_eval import count_replays

RESERVED_OPTIONS = ("image", "prompt", "generator", "output_type", "return_trajectory", "return_dict", "mask_image")


# ---- structure distance (PIE-Bench): rm_edit.metrics.structure ------------------------------------------
def build_metrics(clip_weights=None, clip_i_weights=None, dino_weights=None, structure_weights=None,
                  device: str = "cpu", download: bool = False, offline: bool = False,
                  only: Collection[str] | None = None) -> tuple[EditMetrics, StructureDistance | None, dict[str, str]]:
    """The metric suite from local weights (and with ``download`` the libraries' caches, filled when online;
    ``offline``: caches only); returns it, the structure scorer (or None) and reasons. ``only``: just these
    backbones (see :func:`rm_edit.evaluation.summary.metrics_reported`)."""
    metrics = EditMetrics.from_local(clip_weights=clip_weights, clip_i_weights=clip_i_weights, dino_weights=dino_weights,
                                     device=device, download=download, offline=offline,
                                     only=None if only is None else set(only) - {"structure"})
    reasons: dict[str, str] = {}
    if only is not None and "structure" not in only:
        return metrics, None, {"structure_x1e3": "not reported for this benchmark"}
    try:
        structure = StructureDistance(structure_weights, device=device, download=download, offline=offline)
    except MetricUnavailable as exc:
        structure, reasons["structure_x1e3"] = None, exc.reason
    return metrics, structure, reasons


# ---- per-sample metrics ------------------------------------------------------------------------------
def score_sample(sample: EditRecord, edit: Image.Image, metrics: EditMetrics,
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


def finalize(benchmark: Benchmark, out_dir: Path, log: SampleLog, config: dict, predictions_dir: Path,
             title: str, report: bool, regions_dir: Path | None = None, progress: bool = False,
             turns_dir: Path | None = None) -> dict:
    rows = _ordered_rows(benchmark, log)
    _write_tables(out_dir, rows)
    summary = summarize(benchmark, rows, config)
    summary["files"] = {"samples": "samples.jsonl", "per_sample_csv": "per_sample.csv", "summary_md": "summary.md"}
    md = summary_markdown(summary, title)
    write_text(out_dir / "summary.md", md)
    if report:
        from .report import write_report

        path = write_report(out_dir / "report.html", benchmark, rows, predictions_dir, title=title,
                            summary_rows=[(config.get("label") or "run", summary), *bucket_summary_rows(summary)],
                            columns=summary["columns"],
                            notes=unavailable_notes([summary], summary["columns"]), regions_dir=regions_dir,
                            turns_dir=turns_dir if turns_dir is not None and turns_dir.is_dir() else None,
                            progress=progress)
        summary["files"]["report"] = path.name
    dump_json(out_dir / "summary.json", summary)
    return summary


# ---- running a model -----------------------------------------------------------------------------------
def _chunk_results(pipe, samples: list[EditRecord], sources: list, out, seconds: float) -> list[dict]:
    """Per sample of one pipeline call: edit, chosen region and token metrics."""
    replays = count_replays(out.trajectory, pipe.layout.mask_code)
    with_target = [i for i, s in enumerate(samples) if s.target is not None]
    targets = pipe.encode([samples[i].target for i in with_target]) if with_target else []
    target_codes: dict[int, torch.Tensor] = dict(zip(with_target, targets))
    results = []
    for i, s in enumerate(samples):
        h, w = out.edit_region_tokens[i].shape
        crop = pipe.image_processor.crop(sources[i].width, sources[i].height)
        # The one mask-to-grid rule: a token is in when any of its pixels is (as the pipeline reads a user mask).
        mask_grid = pipe.image_processor.region_tokens(s.mask, [crop], h, w)[0].view(h, w) if s.mask is not None else None
        tok, kind = token_metrics(out.edit_region_tokens[i], out.source_codes[i], out.codes[i].cpu(),
                                  target_codes.get(i), mask_grid)
        results.append(dict(edit=out.images[i], region=out.edit_masks[i], tokens=tok, token_gt=kind,
                            forward_passes=out.forward_passes_per_image[i], replayed=replays[i] if replays else 0,
                            region_tokens=int(out.edit_region_tokens[i].sum()), edit_seconds=seconds,
                            steps=step_boards(out.trajectory, i, pipe.layout),
                            turns=turn_frames(out.trajectory, i, pipe.layout)))
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

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    options = _check_options(dict(call_options or {}))
    config = {"mode": "model", "benchmark": benchmark.name, "n": len(benchmark), "call_options": options,
              "seed": seed, "use_benchmark_masks": use_benchmark_masks, "model": model, "label": label}
    check_run_config(out_dir, config)
    # A benchmark is scored as it words its items: words the model does not know warn, not refuse.
    options = {"allow_unknown_words": True, **options}
    images_dir, regions_dir = out_dir / "images", out_dir / "regions"
    log = SampleLog(out_dir / "samples.jsonl")
    errors = ErrorList(out_dir / "errors.jsonl", benchmark)
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

    def write(chunk: list[EditRecord], sources: list, out) -> None:
        seconds = (time.perf_counter() - clock[0]) / len(chunk)
        for s, res in zip(chunk, _chunk_results(pipe, chunk, sources, out, seconds)):
            rel = output_relpath(s.image_path)
            save_image(images_dir / rel, res["edit"])
            save_image(regions_dir / rel, Image.fromarray(res["region"].astype(np.uint8) * 255, "L"))
            values = score_sample(s, res["edit"], metrics, structure, structure_reason)
            reasons = values.pop("reasons")
            if benchmark.kind == "sudoku":  # boards read off the images; replays from the sampler's steps
                sudoku, why = sudoku_values(s, res["edit"], res["steps"], "needs Sudoku cell codes (layout sudoku-grid)")
                values.update(sudoku)
                reasons.update(why)
                if res["turns"]:  # the report's boards re-masked turn by turn
                    save_image(out_dir / "turns" / rel, turn_strip(res["turns"], pipe.layout.mask_code))
            if res["token_gt"] is None:
                reasons.update({k: "no target or mask" for k in ("tok_precision", "tok_recall")})
            row = {"id": s.id, "image": rel, "instruction": s.instruction, "edit_type": s.edit_type, "status": "ok",
                   **values, **res["tokens"], "token_gt": res["token_gt"], "forward_passes": res["forward_passes"],
                   "replayed": res["replayed"], "region_tokens": res["region_tokens"],
                   "edit_seconds": res["edit_seconds"], "reasons": reasons}
            log.append(row)
        bar.update(len(chunk))
        clock[0] = time.perf_counter()

    def prepare(sample: EditRecord):
        source = sample.source.convert("RGB")
        if not use_benchmark_masks:
            return source, None
        return source, sample.mask if sample.mask is not None else np.ones((source.height, source.width), bool)

    def failed(sample: EditRecord, reason: str) -> None:
        errors.add(sample.id, f"edit failed: {reason}")
        bar.update(1)

    clock = [time.perf_counter()]
    with tqdm(total=len(pending), desc=f"editing {benchmark.name}", unit="img", disable=not progress) as bar:
        edit_in_batches(pipe, benchmark.iter_refs(pending), prepare, write, batch_size=batch_size, seed=seed,
                        on_error=failed, output_type="pil", return_trajectory=True, **options)
        bar.update(bar.total - bar.n)
    errors.write()
    title = f"{benchmark.name}: {label or model or 'model'}"
    return finalize(benchmark, out_dir, log, config, images_dir, title, report, regions_dir, progress,
                    turns_dir=out_dir / "turns")


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
    check_run_config(out_dir, config)
    log = SampleLog(out_dir / "samples.jsonl")
    errors = ErrorList(out_dir / "errors.jsonl", benchmark)
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
            if benchmark.kind == "sudoku":
                sudoku, why = sudoku_values(sample, edit, None)
                values.update(sudoku)
                reasons.update(why)
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
    from .report import write_report
    from .scaling_plots import plot_turns_sweep

    plot = plot_turns_sweep({t: s["means"] for t, s in summaries.items()}, out_dir / "turns_sweep.png", SWEEP_METRICS)
    named = [(f"{t} turns", s) for t, s in summaries.items()]
    notes = unavailable_notes(summaries.values(), columns)
    pasted = "on" if options.get("paste_back", True) else "off"  # the pipeline's default is on
    write_text(out_dir / "turns_sweep.md", "\n".join([f"# Test-time scaling on {benchmark.name} (paste-back {pasted})", "",
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

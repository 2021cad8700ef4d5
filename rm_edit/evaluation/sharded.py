"""`rm-edit eval` across processes (`accelerate launch -m rm_edit.cli eval ...`).

Each process runs ``run_model`` / ``score`` on its slice of the benchmark's unfinished samples into its own
folder ``OUT/.shards/rank<r>/`` (one writer per file); after a barrier the main process moves the edits into
``OUT/images`` / ``OUT/regions``, appends the rows to ``OUT/samples.jsonl`` in benchmark order, merges the
errors and writes the tables, summary and report once for the whole benchmark. A killed run leaves shard
folders behind; the next run (any number of processes) merges them first, so resuming stays exact.
With one process this is ``run_model`` / ``score`` itself.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..distributed import Shard
from .benchmark_set import Benchmark, SampleRef
from .run_files import ErrorList, SampleLog, check_run_config, output_relpath
from .runner import finalize

SHARDS = ".shards"


def _merge_leftovers(benchmark: Benchmark, out_dir: Path) -> None:
    """Main process: fold every shard folder into ``out_dir`` (rows whose files made it), then delete it."""
    root = out_dir / SHARDS
    if not root.is_dir():
        return
    log = SampleLog(out_dir / "samples.jsonl")
    order = {sid: i for i, sid in enumerate(benchmark.ids)}
    for shard in sorted(p for p in root.iterdir() if p.is_dir()):
        rows = SampleLog(shard / "samples.jsonl").rows if (shard / "samples.jsonl").is_file() else {}
        for sid in sorted(rows, key=lambda s: order.get(s, len(order))):
            row = rows[sid]
            for sub in ("images", "regions"):
                if row.get("status") == "ok" and (shard / sub).is_dir() and row.get("image"):
                    src = shard / sub / row["image"]
                    if src.is_file():
                        dest = out_dir / sub / row["image"]
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        os.replace(src, dest)
            log.append(row)
        errors = shard / "errors.jsonl"
        if errors.is_file():
            for line in errors.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    e = json.loads(line)
                    benchmark.skip(e.get("id"), e.get("reason", ""))
    shutil.rmtree(root)


def _unfinished(benchmark: Benchmark, out_dir: Path, needs_image: bool) -> list[SampleRef]:
    rows = SampleLog(out_dir / "samples.jsonl").rows if (out_dir / "samples.jsonl").is_file() else {}

    def done(ref: SampleRef) -> bool:
        row = rows.get(ref.id)
        if row is None or row.get("status") != "ok":
            return False
        return not needs_image or (out_dir / "images" / output_relpath(ref.image_path)).is_file()

    return [r for r in benchmark.refs if not done(r)]


def run_sharded(run: Callable[..., dict], benchmark: Benchmark, out_dir: str | os.PathLike[str], *args: Any,
                shard: Shard | None = None, predictions_dir: Path | None = None, report: bool = True,
                progress: bool = True, **kwargs: Any) -> dict:
    """``run(benchmark, out_dir, ...)`` (``run_model`` with the pipeline bound, or ``score``) over this
    process's slice; returns the whole benchmark's summary on every process."""
    shard = shard or Shard.from_env()
    out_dir = Path(out_dir)
    if not shard.active:
        return run(benchmark, out_dir, *args, report=report, progress=progress, **kwargs)
    model_mode = predictions_dir is None
    if shard.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        _merge_leftovers(benchmark, out_dir)
    shard.wait()
    pending = _unfinished(benchmark, out_dir, needs_image=model_mode)
    mine = Benchmark(benchmark.name, benchmark.kind, shard.take(pending), [], benchmark.root)
    part_dir = out_dir / SHARDS / f"rank{shard.rank}"
    run(mine, part_dir, *args, report=False, progress=progress and shard.is_main, **kwargs)
    shard.wait()
    summary = None
    if shard.is_main:
        config = json.loads((part_dir / "run.json").read_text(encoding="utf-8"))
        config["n"] = len(benchmark)
        check_run_config(out_dir, config)
        _merge_leftovers(benchmark, out_dir)
        ErrorList(out_dir / "errors.jsonl", benchmark).write()
        images = out_dir / "images" if model_mode else predictions_dir
        label = config.get("label") or config.get("model") or (predictions_dir.name if predictions_dir else "model")
        summary = finalize(benchmark, out_dir, SampleLog(out_dir / "samples.jsonl"), config, images,
                           f"{benchmark.name}: {label}", report, out_dir / "regions" if model_mode else None, progress)
    shard.wait()
    if summary is None:
        summary = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    return summary

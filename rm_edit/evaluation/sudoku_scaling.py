"""Test-time scaling on the Sudoku world: exact board accuracy and replay mistakes against reflective turns for
each RM post-trained model, and exact accuracy against forward passes for every model (regenerate: its steps).

    python -m rm_edit.evaluation.sudoku_scaling --models runs/sudoku/models/sudoku-* --n 256 \\
        --out runs/sudoku/scaling --png assets/sudoku_scaling.png [--turns 1,2,4,8] [--steps 4,8,16,32,64]

Each point is one ``run_model`` run of ``sudoku-test`` into ``OUT/<model>/<strategy>_<turns or steps>/``
(resumable: a finished run with the same call options is read back, not redone; an RM model's options name its
folder's reveal steps and re-mask margin, so after re-tuning an old run is never read back as the new setting's:
the runner refuses its folder, to be deleted); its numbers are that run's own summary
(:func:`scaling_point`). Writes ``OUT/scaling.json``, ``OUT/scaling.md`` (per model and setting: the Sudoku
metrics overall and per bucket, :mod:`.sudoku_tables`) and the PNG (:func:`.scaling_plots.plot_sudoku_scaling`).
The largest setting of each model also gets ``report.html``, its boards shown re-masked turn by turn.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..files import dump_json, write_text
from .sudoku_tables import TABLE_KEYS, scaling_markdown

TURNS = (1, 2, 4, 8, 16)
REGENERATE_STEPS = (4, 8, 16, 32, 64)


def scaling_point(summary: Mapping[str, Any], strategy: str, setting: int) -> dict:
    """One run's point: its summary's Sudoku means over all boards (``summary["sudoku"]["all"]``), mean forward
    passes, exact accuracy per k bucket and per task, and every mean per bucket (``by_bucket``)."""
    sudoku = summary["sudoku"]
    point = {"strategy": strategy, "turns" if strategy == "reflective" else "steps": setting,
             "n": sudoku["all"]["n"], "forward_passes": summary["means"].get("forward_passes"),
             "exact": sudoku["all"]["sudoku_exact"], "replays": sudoku["all"]["sudoku_replays"]}
    point.update({key: sudoku["all"][key] for key, _ in TABLE_KEYS if key not in ("sudoku_exact", "sudoku_replays")})
    point["exact_by_k_bucket"] = {b: m["sudoku_exact"] for b, m in sudoku["by_k_bucket"].items()}
    point["exact_by_task"] = {t: m["sudoku_exact"] for t, m in sudoku["by_task"].items()}
    point["by_bucket"] = dict(sudoku.get("by_bucket", {}))
    return point


def model_settings(pipe, turns: Sequence[int], steps: Sequence[int]) -> list[tuple[str, int, dict]]:
    """(strategy, setting, call options): reflective turns for an RM post-trained model, regenerate steps otherwise.
    An RM model's options name its sampler's reveal steps and re-mask margin (the folder's tuned defaults), so a
    run recorded under another setting is never read back as this one."""
    if getattr(pipe.transformer.config, "rm_post_trained", False):
        c = pipe.scheduler.config
        tuned = {"reveal_steps": c.reveal_steps, "remask_margin": c.remask_margin}
        return [("reflective", t, {"strategy": "reflective", "num_turns": t, **tuned}) for t in sorted(turns)]
    return [("regenerate", s, {"strategy": "regenerate", "num_inference_steps": s}) for s in sorted(steps)]


def _finished(run_dir: Path, n: int, options: Mapping[str, Any]) -> bool:
    """A run of all ``n`` boards made with exactly these call options (resumable: it is read back, not redone)."""
    summary, run = run_dir / "summary.json", run_dir / "run.json"
    return (summary.is_file() and run.is_file() and json.loads(summary.read_text()).get("n_scored") == n
            and json.loads(run.read_text()).get("call_options") == dict(options))


def sudoku_scaling(models: Sequence[str | Path], out_dir: str | Path, n: int = 256, *, turns: Sequence[int] = TURNS,
                   steps: Sequence[int] = REGENERATE_STEPS, png: str | Path | None = None, batch_size: int = 16,
                   seed: int = 0, device: str | None = None, progress: bool = False) -> dict:
    """Run every model at every setting on the first ``n`` test boards; returns {model name: [points]} (also in
    ``out_dir/scaling.json``) and writes the table and the plot (``png``, default ``out_dir/sudoku_scaling.png``)."""
    from ..cli.options import load_pipeline
    from .benchmarks import load_benchmark
    from .runner import build_metrics, run_model
    from .scaling_plots import plot_sudoku_scaling
    from .summary import metrics_reported

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    benchmark = load_benchmark("sudoku-test", n)
    metrics, structure, _ = build_metrics(only=metrics_reported(benchmark.kind))
    points: dict[str, list[dict]] = {}
    for folder in models:
        pipe = load_pipeline(str(folder), device)
        name = Path(folder).name
        settings = model_settings(pipe, turns, steps)
        points[name] = []
        for strategy, setting, options in settings:
            run_dir = out_dir / name / f"{strategy}_{setting}"
            if _finished(run_dir, len(benchmark), options):
                summary = json.loads((run_dir / "summary.json").read_text())
            else:
                summary = run_model(pipe, benchmark, run_dir, options, metrics=metrics, structure=structure,
                                    batch_size=batch_size, seed=seed, progress=progress, model=str(folder),
                                    report=setting == settings[-1][1], label=f"{name} {strategy} {setting}")
            points[name].append(scaling_point(summary, strategy, setting))
    png = Path(png) if png else out_dir / "sudoku_scaling.png"
    drawn = plot_sudoku_scaling(points, png)
    dump_json(out_dir / "scaling.json", {"benchmark": benchmark.name, "n": len(benchmark), "points": points,
                                         "plotted": drawn, "png": str(png)})
    write_text(out_dir / "scaling.md", scaling_markdown(points, str(png)))
    return points


def main(argv: list[str] | None = None) -> int:
    from .cli import _turns as _ints  # comma-separated positive whole numbers, as --turns-sweep reads them

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", required=True, help="Sudoku model folders")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--n", type=int, default=256, help="test boards")
    p.add_argument("--turns", type=_ints, default=list(TURNS), help="reflective turns (RM models)")
    p.add_argument("--steps", type=_ints, default=list(REGENERATE_STEPS), help="regenerate steps (other models)")
    p.add_argument("--png", type=Path, help="the plot (default OUT/sudoku_scaling.png)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device")
    a = p.parse_args(argv)
    sudoku_scaling(a.models, a.out, a.n, turns=a.turns, steps=a.steps, png=a.png, batch_size=a.batch_size,
                   seed=a.seed, device=a.device, progress=True)
    print((a.out / "scaling.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

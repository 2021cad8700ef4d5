"""The regenerate sampler's setting of the Sudoku base and SFT models, chosen on the *validation* split.

A small grid (guidance {0, 1.5} x temperature {0, 1}) at one step count, each setting one ``run_model`` run of
``sudoku-val`` (resumable) scored by the mean of each board's bucket target score
(``rm_edit.metrics.sudoku.target_score_mean``: exact for fix, valid with the fewest changes for the fill tasks).
The best setting (the first of the grid on a tie: the cheaper, deterministic one) becomes the folder's own
default (``recipe.set_regenerate_defaults``), so the test figures of its regenerate rows are tuned honestly.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

from rm_edit.metrics.sudoku import target_score_mean

GUIDANCE = (0.0, 1.5)
TEMPERATURES = (0.0, 1.0)
TUNE_STEPS = 16  # the middle of the scaling sweep's 4-64 regenerate steps (and the folders' default)


def tune_regenerate(folder: str | Path, out_dir: str | Path, n: int, *, steps: int = TUNE_STEPS,
                    grid: Sequence[tuple[float, float]] | None = None, batch_size: int = 16,
                    progress: bool = False) -> dict:
    """{guidance_scale, temperature, score, exact} of the best setting, with ``n``, ``steps`` and every setting's
    figures under ``grid``; the runs under ``out_dir/guidance_<g>_temperature_<t>/``."""
    from rm_edit.cli.options import load_pipeline
    from rm_edit.evaluation.benchmarks import load_benchmark
    from rm_edit.evaluation.runner import build_metrics, run_model
    from rm_edit.evaluation.summary import metrics_reported

    pipe = load_pipeline(str(folder), None)
    benchmark = load_benchmark("sudoku-val", n)
    metrics, structure, _ = build_metrics(only=metrics_reported(benchmark.kind))
    results = []
    for guidance, temperature in grid or list(itertools.product(GUIDANCE, TEMPERATURES)):
        options = {"strategy": "regenerate", "num_inference_steps": steps, "guidance_scale": guidance,
                   "temperature": temperature}
        summary = run_model(pipe, benchmark, Path(out_dir) / f"guidance_{guidance}_temperature_{temperature}",
                            options, metrics=metrics, structure=structure, batch_size=batch_size, progress=progress,
                            report=False, model=str(folder), label=f"{Path(folder).name} tune {guidance} {temperature}")
        sudoku = summary["sudoku"]
        results.append({"guidance_scale": guidance, "temperature": temperature,
                        "score": target_score_mean(sudoku["by_bucket"]), "exact": sudoku["all"]["sudoku_exact"]})
        print(f"[tune] {Path(folder).name}: guidance {guidance}, temperature {temperature}: "
              f"score {results[-1]['score']:.3f}", flush=True)
    best = max(results, key=lambda r: -1.0 if r["score"] is None else r["score"])  # max keeps the first of ties
    return {**best, "n": len(benchmark), "steps": steps, "grid": results}

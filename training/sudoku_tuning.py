"""Each Sudoku model's sampler setting, chosen on the *validation* split: the regenerate models' (base, SFT)
guidance {0, 1.5} x temperature {0, 1} at one step count, the RM models' reveal steps per turn {8, 32, 64} x re-mask
margin {0, -1, -2, -3} at 4 turns (2 reveal steps scored far below on validation). A negative margin re-masks a
digit a little before p(MASK) overtakes it: the hard boards' wrong digits are often held at near-even odds.
Each setting is one ``run_model`` run of ``sudoku-val`` (resumable) scored by the mean of each board's bucket
target score (``rm_edit.metrics.sudoku.target_score_mean``: exact for fix, valid with the fewest changes for
the fill tasks). The best setting (the first of the grid on a tie: the cheaper one) becomes the folder's own
default (``recipe.set_regenerate_defaults`` / ``set_reflective_defaults``), so every test figure is tuned honestly.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

from rm_edit.metrics.sudoku import target_score_mean

GUIDANCE = (0.0, 1.5)
TEMPERATURES = (0.0, 1.0)
TUNE_STEPS = 16  # the middle of the scaling sweep's 4-64 regenerate steps (and the folders' default)
REVEAL_STEPS = (8, 32, 64)  # reveal steps per reflective turn: fewer cells revealed at once, more passes
REMASK_MARGINS = (0.0, -1.0, -2.0, -3.0)  # re-mask where log p(MASK) - log p(digit) > margin
TUNE_TURNS = 4  # the RM folders' default turn budget


def _tune(folder: str | Path, out_dir: Path, n: int, settings: Sequence[tuple[str, dict, dict]], batch_size: int,
          progress: bool) -> list[dict]:
    """One ``sudoku-val`` run per (run name, call options, record) setting; each record with its score and exact."""
    from rm_edit.cli.options import load_pipeline
    from rm_edit.evaluation.benchmarks import load_benchmark
    from rm_edit.evaluation.runner import build_metrics, run_model
    from rm_edit.evaluation.summary import metrics_reported

    pipe = load_pipeline(str(folder), None)
    benchmark = load_benchmark("sudoku-val", n)
    metrics, structure, _ = build_metrics(only=metrics_reported(benchmark.kind))
    results = []
    for run_name, options, record in settings:
        summary = run_model(pipe, benchmark, out_dir / run_name, options, metrics=metrics, structure=structure,
                            batch_size=batch_size, progress=progress, report=False, model=str(folder),
                            label=f"{Path(folder).name} tune {run_name}")
        sudoku = summary["sudoku"]
        results.append({**record, "score": target_score_mean(sudoku["by_bucket"]), "exact": sudoku["all"]["sudoku_exact"],
                        "forward_passes": summary["means"].get("forward_passes")})
        print(f"[tune] {Path(folder).name}: {run_name}: score {results[-1]['score']:.3f}", flush=True)
    return results


def _best(results: list[dict]) -> dict:
    return max(results, key=lambda r: -1.0 if r["score"] is None else r["score"])  # max keeps the first of ties


def tune_regenerate(folder: str | Path, out_dir: str | Path, n: int, *, steps: int = TUNE_STEPS,
                    grid: Sequence[tuple[float, float]] | None = None, batch_size: int = 16,
                    progress: bool = False) -> dict:
    """{guidance_scale, temperature, score, exact} of the best setting, with ``n``, ``steps`` and every setting's
    figures under ``grid``; the runs under ``out_dir/guidance_<g>_temperature_<t>/``."""
    settings = [(f"guidance_{g}_temperature_{t}",
                 {"strategy": "regenerate", "num_inference_steps": steps, "guidance_scale": g, "temperature": t},
                 {"guidance_scale": g, "temperature": t})
                for g, t in grid or list(itertools.product(GUIDANCE, TEMPERATURES))]
    results = _tune(folder, Path(out_dir), n, settings, batch_size, progress)
    return {**_best(results), "n": n, "steps": steps, "grid": results}


def tune_reflective(folder: str | Path, out_dir: str | Path, n: int, *, turns: int = TUNE_TURNS,
                    grid: Sequence[tuple[int, float]] | None = None, batch_size: int = 16,
                    progress: bool = False) -> dict:
    """{reveal_steps, remask_margin, score, exact} of the best (reveal steps per turn, re-mask margin) at ``turns``
    turns, with ``n``, ``turns`` and every setting's figures under ``grid``; the runs under
    ``out_dir/reveal_<r>_margin_<m>/``."""
    settings = [(f"reveal_{r}_margin_{m}",
                 {"strategy": "reflective", "num_turns": turns, "reveal_steps": r, "remask_margin": m},
                 {"reveal_steps": r, "remask_margin": m})
                for r, m in grid or list(itertools.product(REVEAL_STEPS, REMASK_MARGINS))]
    results = _tune(folder, Path(out_dir), n, settings, batch_size, progress)
    return {**_best(results), "n": n, "turns": turns, "grid": results}

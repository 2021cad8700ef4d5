"""Test-time scaling plots: a turns sweep's metrics against turns (``rm-edit eval --turns-sweep``), and the Sudoku
world's exact accuracy and replay mistakes against turns and forward passes (:mod:`.sudoku_scaling`).

Each plot function draws with matplotlib (Agg) and writes a PNG; :func:`plot_sudoku_scaling` also returns the
numbers it drew, read back from the figure's own lines, so a test can check them against the metric's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def agg_pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out_png: str | Path, title: str | None = None, dpi: float | str = 100) -> Path:
    """Title, tight layout, a PNG (its folder made), the figure closed: how every report plot is saved."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=dpi)
    agg_pyplot().close(fig)
    return out_png


def plot_turns_sweep(points: Mapping[int, Mapping[str, Any]], out_png: str | Path,
                     groups: Mapping[str, Sequence[tuple[str, str]]]) -> Path:
    """One panel per group (quality, localization, cost): each metric's mean against the number of turns."""
    plt = agg_pyplot()
    turns = sorted(points)
    panels = []
    for group, metrics in groups.items():
        lines = []
        for key, label in metrics:
            ys = [points[t].get(key) for t in turns]
            if any(y is not None and math.isfinite(y) for y in ys):
                lines.append((label, [math.nan if y is None else y for y in ys]))
        if lines:
            panels.append((group, lines))
    ncols = min(3, max(1, len(panels)))
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (group, lines) in zip(axes.flat, panels):
        for label, ys in lines:
            ax.plot(turns, ys, marker="o", label=label)
        ax.set_xlabel("reflective turns")
        ax.set_title(group)
        ax.set_xticks(turns)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, out_png, "test-time scaling")


# The three panels of the Sudoku scaling plot: (key, title, x of a point, y of a point, which points).
SUDOKU_PANELS = (
    ("exact_vs_turns", "exact board accuracy vs turns", "turns", "exact", "reflective"),
    ("replays_vs_turns", "replay mistakes per board vs turns", "turns", "replays", "reflective"),
    ("exact_vs_passes", "exact board accuracy vs forward passes", "forward_passes", "exact", None),
)


def plot_sudoku_scaling(points: Mapping[str, Sequence[Mapping[str, Any]]], out_png: str | Path,
                        title: str = "Sudoku: test-time scaling") -> dict[str, dict[str, tuple[list, list]]]:
    """``points``: model name -> its runs, each ``{"strategy": "reflective" | "regenerate", "turns" (reflective) or
    "steps" (regenerate), "forward_passes", "exact", "replays"}`` (:func:`.sudoku_scaling.scaling_point`). Draws
    exact accuracy and replays against reflective turns (RM models) and exact accuracy against mean forward
    passes (every model and sampler), writes ``out_png`` and returns, per panel, each line's (xs, ys) as drawn."""
    plt = agg_pyplot()
    fig, axes = plt.subplots(1, len(SUDOKU_PANELS), figsize=(5.0 * len(SUDOKU_PANELS), 3.8), squeeze=False)
    for ax, (_, panel_title, x_key, y_key, strategy) in zip(axes[0], SUDOKU_PANELS):
        for model, runs in points.items():
            for strat in ("reflective", "regenerate"):
                chosen = [r for r in runs if r["strategy"] == strat and (strategy is None or strat == strategy)
                          and r.get(x_key) is not None and r.get(y_key) is not None]
                if not chosen:
                    continue
                chosen.sort(key=lambda r: r[x_key])
                label = model if strategy is not None else f"{model} ({strat})"
                ax.plot([r[x_key] for r in chosen], [r[y_key] for r in chosen], marker="o", label=label,
                        linestyle="-" if strat == "reflective" else "--")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("forward passes (mean per board)" if x_key == "forward_passes" else "reflective turns")
        ax.set_title(panel_title, fontsize=10)
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=7)
    drawn = {key: {line.get_label(): ([float(x) for x in line.get_xdata()], [float(y) for y in line.get_ydata()])
                   for line in ax.get_lines()} for ax, (key, *_rest) in zip(axes[0], SUDOKU_PANELS)}
    save_figure(fig, out_png, title)
    return drawn

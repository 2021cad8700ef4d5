"""Markdown tables of the Sudoku test-time scaling points (:func:`.sudoku_scaling.scaling_point`): one row per
model and sampler setting (reflective turns, or regenerate steps).

* :func:`scaling_markdown`: the metrics over all boards with each bucket's target score, then one table per
  bucket (the ablation: exact, valid, valid with the fewest changes, replays, forward passes);
* :func:`headline_table`: each bucket's target score (``rm_edit.metrics.sudoku.BUCKET_SCORE``) per row;
* :func:`bucket_table`: one bucket's table, for the models named (the README's hard buckets: RM / +HER / +decay).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..metrics.sudoku import BUCKET_SCORE, BUCKETS

Points = Mapping[str, Sequence[Mapping[str, Any]]]
TABLE_KEYS = (("sudoku_exact", "exact"), ("sudoku_valid", "valid"), ("sudoku_valid_fewest_changes", "valid, fewest"),
              ("sudoku_conflicts", "conflicts"), ("sudoku_replays", "replays"))
BUCKET_KEYS = (("sudoku_exact", "exact"), ("sudoku_valid", "valid"), ("sudoku_valid_fewest_changes", "valid, fewest"),
               ("sudoku_replays", "replays"), ("forward_passes", "fwd passes"))
SCORE_LABEL = dict(TABLE_KEYS)


def fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def sampler_label(point: Mapping[str, Any]) -> str:
    return f"{point['turns']} turns" if point["strategy"] == "reflective" else f"regenerate {point['steps']}"


def buckets_of(points: Points) -> list[str]:
    """The buckets any point has, in :data:`BUCKETS` order (unknown names last)."""
    seen = {b for runs in points.values() for r in runs for b in r.get("by_bucket", {})}
    return sorted(seen, key=lambda b: (BUCKETS.index(b) if b in BUCKETS else len(BUCKETS), b))


def bucket_n(points: Points, bucket: str) -> int:
    """Boards in ``bucket`` (every point of a sweep scores the same boards: the first point that has it)."""
    return next((r["by_bucket"][bucket]["n"] for runs in points.values() for r in runs if bucket in r.get("by_bucket", {})), 0)


def _score(point: Mapping[str, Any], bucket: str, key: str) -> Any:
    return point.get("by_bucket", {}).get(bucket, {}).get(key)


def _target(bucket: str) -> str:
    return f"{bucket}: {SCORE_LABEL[BUCKET_SCORE.get(bucket, 'sudoku_exact')]}"


def _table(head: list[str], rows: list[list[str]], text_columns: int = 2) -> list[str]:
    return (["| " + " | ".join(head) + " |", "|" + "---|" * text_columns + "---:|" * (len(head) - text_columns)]
            + ["| " + " | ".join(cells) + " |" for cells in rows])


def overall_table(points: Points) -> list[str]:
    buckets = buckets_of(points)
    head = (["model", "sampler", "n"] + [label for _, label in TABLE_KEYS] + ["fwd passes"]
            + [_target(b) for b in buckets])
    rows = []
    for model, runs in points.items():
        for r in runs:
            overall = {"sudoku_exact": r.get("exact"), "sudoku_replays": r.get("replays")}
            rows.append([model, sampler_label(r), str(r["n"])]
                        + [fmt(overall[k] if k in overall else r.get(k)) for k, _ in TABLE_KEYS]
                        + [fmt(r.get("forward_passes"))]
                        + [fmt(_score(r, b, BUCKET_SCORE.get(b, "sudoku_exact"))) for b in buckets])
    return _table(head, rows)


def bucket_table(points: Points, bucket: str, models: Sequence[str] | None = None) -> list[str]:
    """``bucket``'s rows (of ``models``, default all): exact, valid, valid-fewest, replays, forward passes."""
    rows = [[model, sampler_label(r)] + [fmt(_score(r, bucket, k)) for k, _ in BUCKET_KEYS]
            for model, runs in points.items() if models is None or model in models for r in runs]
    return _table(["model", "sampler"] + [label for _, label in BUCKET_KEYS], rows)


def headline_table(points: Points) -> list[str]:
    """Each bucket's target score (n boards in the header), replays and forward passes over all boards."""
    buckets = buckets_of(points)
    head = (["model", "sampler"] + [f"{_target(b)} (n={bucket_n(points, b)})" for b in buckets]
            + ["replays", "fwd passes"])
    rows = [[model, sampler_label(r)] + [fmt(_score(r, b, BUCKET_SCORE.get(b, "sudoku_exact"))) for b in buckets]
            + [fmt(r.get("replays")), fmt(r.get("forward_passes"))] for model, runs in points.items() for r in runs]
    return _table(head, rows)


def scaling_markdown(points: Points, png_name: str | None = None) -> str:
    """The overall table, then one ablation table per bucket; the plot under them when named."""
    lines = ["# Sudoku: test-time scaling (sudoku-test)", "", *overall_table(points)]
    for bucket in buckets_of(points):
        lines += ["", f"## {bucket} (n={bucket_n(points, bucket)}; target score: "
                      f"{SCORE_LABEL[BUCKET_SCORE.get(bucket, 'sudoku_exact')]})", "", *bucket_table(points, bucket)]
    if png_name:
        lines += ["", f"![Sudoku test-time scaling]({png_name})"]
    return "\n".join(lines) + "\n"

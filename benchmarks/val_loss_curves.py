"""Held-out loss against training examples for several training runs, as one PNG (and the figures, printed).

Each run is ``LABEL=DIR[,DIR...]``: the ``val_log.jsonl`` of each folder (a trainer's ``--out``), in order, the
later folders' steps counted after the earlier ones' (the cycles of a base trained as warm restarts). No model is
run; the batch size is read from each folder's ``train_config.json``.

    python benchmarks/val_loss_curves.py --png assets/sudoku_width_pilot.png \\
        --run "d 128 x 5 (shipped)=runs/sudoku/base,runs/sudoku/base_cycle2,runs/sudoku/base_cycle3" \\
        --run "d 192 x 6 (pilot)=runs/sudoku/pilot_wide/base"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rm_edit.evaluation.scaling_plots import agg_pyplot, save_figure


def read_curve(folders: list[Path]) -> list[tuple[int, float]]:
    """[(examples seen, held-out loss)] over ``folders``' val logs, each folder's steps after the previous one's."""
    points, offset = [], 0
    for folder in folders:
        log = folder / "val_log.jsonl"
        if not log.is_file():
            raise SystemExit(f"{folder}: no val_log.jsonl (a trainer run with val_codes writes one)")
        config = json.loads((folder / "train_config.json").read_text())
        batch, steps = int(config["batch_size"]), int(config["steps"])
        for line in log.read_text().splitlines():
            row = json.loads(line)
            points.append((offset + row["step"] * batch, float(row["val_loss"])))
        offset += steps * batch
    return points


def parse_run(spec: str) -> tuple[str, list[Path]]:
    label, sep, dirs = spec.partition("=")
    if not sep or not label or not dirs:
        raise SystemExit(f"--run {spec!r}: expected LABEL=DIR[,DIR...]")
    return label, [Path(d) for d in dirs.split(",")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="LABEL=DIR[,DIR...]")
    parser.add_argument("--png", type=Path, required=True)
    args = parser.parse_args(argv)
    import matplotlib.ticker

    plt = agg_pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for label, folders in map(parse_run, args.run):
        points = read_curve(folders)
        print(label)
        for examples, loss in points:
            print(f"  {examples:>9,d} examples  held-out loss {loss:.4f}")
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=label)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:,.0f}"))
    ax.set_xlabel("training examples")
    ax.set_ylabel("held-out loss")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    save_figure(fig, args.png, dpi="figure")
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()

"""Null edits against real ones as the re-mask margin grows: does a stricter re-mask rule leave the null edits'
region empty without undoing real edits? (The README's null-edits paragraph; validation split by default.)

    python benchmarks/null_edit_margins.py [--model DIR] [--margins 0,0.5,1,3] [--null 500] [--edits 1000]
    python benchmarks/null_edit_margins.py --model rm_edit/models/shapes-rm-her --margins 0 --history-alpha 0.5

For each margin m (re-mask where log p([MASK]) - log p(code) > m): the share of ``--null`` null edits whose
region comes back empty, and the pixel edit success of ``--edits`` edits of all ten types, overall and per type.
Both sets start at ``--start`` of ``--split``. ``--history-alpha`` / ``--history-decay`` / ``--no-history``: History
Reference at inference otherwise than the model was trained (its config's settings by default).
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch

import rm_edit
from rm_edit.data.shapes import EDIT_TYPES
from rm_edit.pipelines import ReflectiveMaskingEditPipeline
from rm_edit.training.grid_report import evaluate_pipeline


def margin_row(pipe, margin: float, n_null: int, n_edits: int, start: int, split: str, **call_kwargs) -> dict:
    """{"margin", "null_empty", "edit_success", "by_type"} at one re-mask margin (``call_kwargs``: the pipeline's)."""
    kw = {"progress": False, "remask_margin": margin, **call_kwargs}
    null = evaluate_pipeline(pipe, n_null, start, split, edit_types=("null",), **kw)
    edits = evaluate_pipeline(pipe, n_edits, start, split, edit_types=EDIT_TYPES, **kw)
    by_type = defaultdict(list)
    for row in edits["rows"]:
        by_type[row["edit_type"]].append(row["success"])
    return {"margin": margin, "null_empty": sum(r["region_cells"] == 0 for r in null["rows"]) / n_null,
            "edit_success": edits["edit_success"], "by_type": {t: sum(v) / len(v) for t, v in by_type.items()}}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a reflective model folder (default: the shipped default, shapes-rm)")
    p.add_argument("--margins", default="0,0.5,1,3", help="comma list of re-mask margins")
    p.add_argument("--null", type=int, default=500, help="null edits")
    p.add_argument("--edits", type=int, default=1000, help="edits of all ten types")
    p.add_argument("--start", type=int, default=40_000)
    p.add_argument("--split", default="val")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--history-alpha", type=float, help="History Reference's weight (default: as trained)")
    p.add_argument("--history-decay", type=float, help="History Reference's decay (default: as trained)")
    p.add_argument("--no-history", action="store_true", help="History Reference off")
    a = p.parse_args(argv)
    history = {k: v for k, v in (("history_alpha", a.history_alpha), ("history_decay", a.history_decay),
                                 ("use_history", False if a.no_history else None)) if v is not None}
    torch.set_num_threads(a.threads)
    pipe = ReflectiveMaskingEditPipeline.from_pretrained(a.model) if a.model else rm_edit.load_default_pipeline()
    pipe.set_progress_bar_config(disable=True)
    types = ("plural", "partial-reference", "replace-kind-colour", "relative-move")
    print(f"{a.model or 'shapes-rm'}, {a.split} {a.start:,}+: {a.null} null edits, {a.edits} edits of all ten types"
          + (f"; {history}" if history else ""))
    print("| margin | null edits empty | all types | " + " | ".join(types) + " |")
    print("|---:|---:|---:|" + "---:|" * len(types))
    for margin in (float(m) for m in a.margins.split(",")):
        r = margin_row(pipe, margin, a.null, a.edits, a.start, a.split, **history)
        cells = " | ".join(f"{r['by_type'].get(t, float('nan')):.3f}" for t in types)
        print(f"| {margin:g} | {r['null_empty']:.3f} | {r['edit_success']:.3f} | {cells} |", flush=True)


if __name__ == "__main__":
    main()

"""The Sudoku models' cards and the README's Sudoku results, written from the recipe's own results.

* ``<folder>/README.md`` in each Sudoku folder: a Hugging Face card (the shapes cards' metadata, tag ``sudoku``)
  with the folder's held-out figures at its own sampler setting (:func:`own_point`);
* ``SUDOKU_MODEL_CARD.md`` beside the folders: the command that made them, stage wall times, the regenerate
  setting tuned on validation, each bucket's target score per model and setting, the ablation per bucket
  (RM / RM+HER / RM+HER+decay, then SFT and base regenerate: exact, valid, valid-fewest, replays, forward
  passes at every turn count and step count of the sweep) and the scaling plot;
* ``readme_section.md``: the same results, shorter, for the README (the hard buckets' ablation of the RM models).

Every figure is read from the scaling points (``scaling.json``, :mod:`rm_edit.evaluation.sudoku_scaling`), the
tuning record and ``stage_times.json``: nothing here is typed by hand.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rm_edit.evaluation.sudoku_tables import (SCORE_LABEL, bucket_n, bucket_table, buckets_of, fmt,
                                              headline_table, sampler_label)
from rm_edit.metrics.sudoku import BUCKET_SCORE, HARD_BUCKETS

from .grid_report import card_header, load_snippet

# The ablation's order: the RM variants first, then the regenerate baselines.
ABLATION = {"sudoku-rm": "RM", "sudoku-rm-her": "RM+HER", "sudoku-rm-her-decay": "RM+HER, decay 0.7",
            "sudoku-sft": "vanilla SFT (regenerate)", "sudoku-base": "base (regenerate)"}
ABOUT = {
    "sudoku-base": "the base MDM of the Sudoku world (Lumina-DiMOO's masked objective on fix, fill and fill-and-fix "
                   "boards; regenerate sampler, its guidance and temperature tuned on validation boards)",
    "sudoku-sft": "the vanilla SFT baseline (the base post-trained on the masked objective with the same boards, "
                  "steps and batch as the RM models; regenerate sampler, tuned on validation boards)",
    "sudoku-rm": "Reflective Masking post-training of the base without History Reference",
    "sudoku-rm-her": "Reflective Masking post-training of the base with History Reference",
    "sudoku-rm-her-decay": "Reflective Masking post-training of the base with History Reference, decay 0.7",
}
LIMITS = ("**Limits:** it knows only the Sudoku world of `rm_edit.data.sudoku`: 72x72 boards of 9x9 cells of 8 px, "
          "given clues in black and written digits in another ink, and its three instructions (\"fix the mistakes\", "
          "\"fill in the empty cells\", both). Other images or words are outside what it has seen (the pipeline warns).")


def _ordered(points: Mapping[str, Sequence[Mapping]]) -> dict[str, Sequence[Mapping]]:
    return {**{m: points[m] for m in ABLATION if m in points}, **{m: v for m, v in points.items() if m not in ABLATION}}


def own_point(folder: Path, runs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The point at the folder's own sampler setting (its scheduler's ``num_turns`` or ``num_inference_steps``);
    when the sweep has not that setting, the largest below it (else the smallest)."""
    if not runs:
        return None
    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    key, own = ("turns", config.get("num_turns")) if runs[0]["strategy"] == "reflective" else (
        "steps", config.get("num_inference_steps"))
    below = [r for r in runs if own is None or r[key] <= own]
    return max(below, key=lambda r: r[key]) if below else min(runs, key=lambda r: r[key])


def folder_figures(point: Mapping[str, Any], n: int) -> str:
    """One folder's held-out figures: over all boards, then each bucket's target score."""
    scores = {b: BUCKET_SCORE.get(b, "sudoku_exact") for b in point.get("by_bucket", {})}
    buckets = ", ".join(f"{b} {SCORE_LABEL[key]} {fmt(point['by_bucket'][b].get(key))} (n={point['by_bucket'][b]['n']})"
                        for b, key in scores.items())
    return (f"Held-out figures ({n} boards of the test split, through the pipeline on images, {sampler_label(point)}: "
            f"the folder's own sampler): exact {fmt(point.get('exact'))}, valid {fmt(point.get('sudoku_valid'))}, "
            f"valid with the fewest changes {fmt(point.get('sudoku_valid_fewest_changes'))}, conflict cells "
            f"{fmt(point.get('sudoku_conflicts'))}, replay mistakes {fmt(point.get('replays'))} per board, "
            f"{fmt(point.get('forward_passes'))} forward passes per board. Per bucket: {buckets}.\n")


def times_table(times: Mapping[str, float]) -> list[str]:
    rows = [f"| `{stage}` | {seconds:,.0f} | {seconds / 3600:.2f} |" for stage, seconds in times.items()]
    total = sum(times.values())
    return ["| stage | wall s | hours |", "|---|---:|---:|", *rows, f"| all | {total:,.0f} | {total / 3600:.2f} |"]


def training_table(models: Path) -> list[str]:
    """What each folder trained on, from its own ``training.json``: where it started (the run folder and the
    first 12 hex digits of its weights' sha256: the post-trainings' must all be the shipped base's), steps x
    batch, and its examples alone and with its init's."""
    lines = ["| model | started from | steps x batch | examples | with its init's |", "|---|---|---:|---:|---:|"]
    for name in ABOUT:
        path = models / name / "training.json"
        if not path.is_file():
            continue
        record = json.loads(path.read_text())
        init = record.get("init_from")
        start = "random weights" if init is None else f"`{Path(init['path']).parent.name}` ({init['weights_sha256'][:12]})"
        total = record.get("examples_with_init")
        lines.append(f"| {name} | {start} | {record['steps']:,} x {record['config']['batch_size']} | "
                     f"{record['examples']:,} | {'' if total is None else f'{total:,}'} |")
    return lines


def tuned_table(tuned: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = ["| model | guidance | temperature | val score | val exact | chosen |", "|---|---:|---:|---:|---:|---|"]
    for model, t in tuned.items():
        for r in t["grid"]:
            chosen = "**yes**" if (r["guidance_scale"], r["temperature"]) == (t["guidance_scale"], t["temperature"]) else ""
            lines.append(f"| {model} | {r['guidance_scale']} | {r['temperature']} | {fmt(r['score'])} | "
                         f"{fmt(r['exact'])} | {chosen} |")
    return lines


def tuned_rm_table(tuned: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = ["| model | reveal steps per turn | re-mask margin | val score | val exact | fwd passes | chosen |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for model, t in tuned.items():
        for r in t["grid"]:
            setting = (r["reveal_steps"], r.get("remask_margin", 0.0))
            chosen = "**yes**" if setting == (t["reveal_steps"], t.get("remask_margin", 0.0)) else ""
            lines.append(f"| {model} | {r['reveal_steps']} | {setting[1]} | {fmt(r['score'])} | {fmt(r['exact'])} | "
                         f"{fmt(r.get('forward_passes'))} | {chosen} |")
    return lines


def ablation_sections(points: Mapping[str, Sequence[Mapping]], buckets: Sequence[str], models=None,
                      level: str = "###") -> list[str]:
    lines = []
    for bucket in buckets:
        lines += ["", f"{level} {bucket} (n={bucket_n(points, bucket)}; target score: "
                      f"{SCORE_LABEL[BUCKET_SCORE.get(bucket, 'sudoku_exact')]})", "",
                  *bucket_table(points, bucket, models)]
    return lines


def write_sudoku_cards(models: Path, points: Mapping[str, Sequence[Mapping]], times: Mapping[str, float],
                       command: str, tuned: Mapping[str, Mapping[str, Any]], png: str,
                       vq_metrics: Mapping[str, Any] | None = None,
                       tuned_rm: Mapping[str, Mapping[str, Any]] | None = None,
                       base_losses: Sequence[float] = (), larger: Sequence[Mapping[str, Any]] = ()) -> None:
    """Every folder's ``README.md`` and ``models/SUDOKU_MODEL_CARD.md`` (``png``: the plot's path as the card
    links it; ``base_losses``: the base's held-out loss at the end of each of its cycles; ``larger``: the
    ``scaling.json`` of runs on more test boards, each shown as its own table after the main one)."""
    points = _ordered(points)
    n = next((r["n"] for runs in points.values() for r in runs), 0)
    for name, about in ABOUT.items():
        folder = models / name
        if not folder.is_dir():
            continue
        point = own_point(folder, points.get(name, ()))
        own = folder_figures(point, n) if point else ""
        tuning, tuning_rm = tuned.get(name), (tuned_rm or {}).get(name)
        tuning_line = (f"Regenerate setting chosen on {tuning['n']} validation boards at {tuning['steps']} steps: "
                       f"guidance {tuning['guidance_scale']}, temperature {tuning['temperature']}.\n\n" if tuning else "")
        if tuning_rm:
            tuning_line = (f"Reveal steps per turn and re-mask margin chosen on {tuning_rm['n']} validation boards at "
                           f"{tuning_rm['turns']} turns: {tuning_rm['reveal_steps']} and "
                           f"{tuning_rm.get('remask_margin', 0.0)}.\n\n")
        (folder / "README.md").write_text(
            f"{card_header('sudoku')}\n# rm-edit {name}\n\n{about[0].upper() + about[1:]}, trained by the rm-edit "
            f"project on 2 CPU cores on its synthetic *Sudoku world* (boards edited as images). Load it with\n\n"
            f"{load_snippet(name)}\nor `rm-edit edit board.png \"fix the mistakes\" --model {name}`.\n\n{own}\n"
            f"{tuning_line}{LIMITS}\n\nSee `SUDOKU_MODEL_CARD.md` beside this folder for the recipe, every figure "
            "and how to reproduce them.\n")
    legend = ", ".join(f"`{m}`: {label}" for m, label in ABLATION.items() if m in points)
    card = ["# The Sudoku models", "", f"Five models from one base at equal post-training cost ({legend}).", "",
            f"Reproduce: `{command}` (stages resume; run them one by one, each under two hours on 2 cores).", "",
            "## Stage wall times", "", *times_table(times), "",
            "## What each model trained on", "", *training_table(models), ""]
    if base_losses:
        card += [f"The base trained {len(base_losses)} cosine cycle(s), each from the last one's weights; its "
                 "held-out loss (the masked objective on validation boards) at the end of each: "
                 f"{', '.join(f'{loss:.4f}' for loss in base_losses)}.", ""]
    if tuned:
        card += ["## Regenerate, tuned on the validation split", "",
                 "Guidance x temperature on validation boards, scored by each board's bucket target score; the "
                 "chosen setting is the folder's own default, used by every regenerate row below.", "",
                 *tuned_table(tuned), ""]
    if tuned_rm:
        card += ["## Reflective sampler, tuned on the validation split", "",
                 "Reveal steps per turn (fewer cells revealed in one pass, more passes) on validation boards at 4 "
                 "turns, scored the same way; the chosen one is the folder's own default, used by every RM row below.",
                 "", *tuned_rm_table(tuned_rm), ""]
    card += [f"## Held-out figures (sudoku-test, {n} boards): each bucket's target score", "",
             "Fix buckets are scored by exact board accuracy, the ambiguous fill buckets by valid with the fewest "
             "changes (valid, and no more changed givens or source digits than the solution). Replays: replay "
             "mistakes per board (a cell re-takes a wrong digit it held); fwd passes: per board.", "",
             *headline_table(points), ""]
    for sample in larger:  # a small bucket's figure moves with a few boards: the same settings on more of them
        card += [f"## The same on {sample['n']} test boards (the first {n} are the table's above)", "",
                 *headline_table(_ordered(sample["points"])), ""]
    card += ["## Ablation per bucket: RM / RM+HER / RM+HER+decay, SFT and base regenerate",
             *ablation_sections(points, buckets_of(points)), "",
             "## Test-time scaling", "", f"![Sudoku test-time scaling]({png})", ""]
    if vq_metrics:
        card += [f"Image tokenizer: codes exact {fmt(vq_metrics.get('codes_exact'))}, decoded cells read back "
                 f"{fmt(vq_metrics.get('decoded_cells_read_back'))}, decoded boards read back "
                 f"{fmt(vq_metrics.get('decoded_boards_read_back'))} on {vq_metrics.get('boards')} held-out boards.", ""]
    (models / "SUDOKU_MODEL_CARD.md").write_text("\n".join(card))


def readme_section(points: Mapping[str, Sequence[Mapping]], command: str, png: str) -> str:
    """The README's Sudoku results: each bucket's target score per model and setting, and where HER matters
    (the hard buckets, the RM variants)."""
    points = _ordered(points)
    n = next((r["n"] for runs in points.values() for r in runs), 0)
    rm_models = [m for m in ("sudoku-rm", "sudoku-rm-her", "sudoku-rm-her-decay") if m in points]
    hard = [b for b in HARD_BUCKETS if b in buckets_of(points)]
    lines = [f"**Sudoku results** (sudoku-test, {n} boards, through the pipeline on images; made by `{command}`): "
             "each bucket's target score (fix: exact; fill: valid with the fewest changes), replay mistakes and "
             "forward passes per board.", "", *headline_table(points), "",
             "**Where HER matters**: the hard buckets, RM / RM+HER / RM+HER+decay at every turn count.",
             *ablation_sections({m: points[m] for m in rm_models}, hard, level="####"), "",
             f"![Sudoku test-time scaling]({png})", ""]
    return "\n".join(lines)

"""The seed's comparison, made fair: every model post-trained from one base at equal cost, baselines tuned on
the validation split, figures on held-out test edits of the whole shapes language, and the two curves.

    python -m rm_edit.training.fair_comparison --work runs/final --n 500 --out runs/final/comparison

* ``tune``: the regenerate sampler's guidance scale and temperature chosen on validation edits (16 steps), for
  the base and for vanilla SFT separately; the best setting is the one reported.
* ``compare``: base and SFT with the regenerate sampler at 16 and 64 steps (their tuned setting), the base's own
  sampler inside the true edit region (inpainting: oracle localization), RM / RM+HER / RM-LoRA with their
  reflective sampler; one row each, paste-back on (the pipeline's default) for all.
* ``curves``: (a) pixel edit success against post-training steps (each run's snapshots, validation edits);
  (b) edit success and unchanged pixels kept against forward passes per edit (test edits).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
from pathlib import Path

import torch

from rm_edit.data.shapes import EDIT_TYPES
from rm_edit.evaluation.scaling_plots import agg_pyplot, save_figure

from .grid_report import evaluate_pipeline

POST_TRAINED = {"sft": "SFT", "rm": "RM", "rm_her": "RM+HER", "rm_lora": "RM-LoRA (+HER)"}
GUIDANCE = (0.0, 2.0, 4.0)
TEMPERATURES = (0.0, 1.0)
VAL_START, TEST_START = 40_000, 50_000  # fresh indices: the training caches use 0 .. 149,999 of the train split only


def _load(folder: Path):
    from rm_edit.pipelines import ReflectiveMaskingEditPipeline

    return ReflectiveMaskingEditPipeline.from_pretrained(str(folder), torch_dtype=torch.float32)


def _evaluate(out: Path, folder: Path, n: int, start: int, split: str, progress: bool, **kwargs) -> dict:
    """``evaluate_pipeline`` of ``folder``, kept under ``out/evaluated/``: a comparison that stops resumes, and
    one run's rows can be scored while the others still train. Keyed by the folder's weights (path and mtime)."""
    weights = sorted(folder.glob("transformer/*.safetensors")) or sorted(folder.glob("*.safetensors"))
    key = json.dumps([str(folder.resolve()), [w.stat().st_mtime_ns for w in weights], n, start, split,
                      sorted(kwargs.items())])
    path = out / "evaluated" / f"{hashlib.sha1(key.encode()).hexdigest()[:20]}.json"
    if path.exists():
        return json.loads(path.read_text())
    r = evaluate_pipeline(_load(folder), n, start, split, edit_types=EDIT_TYPES, progress=progress, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(r))
    return r


def _figures(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "rows"}


def tune_regenerate(folder: Path, n: int, progress: bool = True) -> dict:
    """{guidance_scale, temperature, edit_success on validation} of the best 16-step regenerate setting."""
    pipe, best = _load(folder), None
    for guidance, temperature in itertools.product(GUIDANCE, TEMPERATURES):
        r = evaluate_pipeline(pipe, n, VAL_START, "val", edit_types=EDIT_TYPES, progress=progress, strategy="regenerate",
                              num_inference_steps=16, guidance_scale=guidance, temperature=temperature)
        print(f"[tune] {folder.name}: guidance {guidance}, temperature {temperature}: {r['edit_success']:.3f}", flush=True)
        if best is None or r["edit_success"] > best["edit_success"]:
            best = {"guidance_scale": guidance, "temperature": temperature, "edit_success": r["edit_success"]}
    return best


def compare(work: Path, out: Path, n: int, tuned: dict, progress: bool = True) -> dict:
    """Every row of the table on test edits ``TEST_START ..``; writes ``out/<row>.json``."""
    rows: dict[str, tuple[Path, dict]] = {}
    for name, steps in (("base", 16), ("base", 64), ("sft", 16), ("sft", 64)):
        if name not in tuned:
            print(f"[compare] {name}: not tuned yet, skipped", flush=True)
            continue
        setting = {k: tuned[name][k] for k in ("guidance_scale", "temperature")}
        rows[f"{name} regenerate {steps}"] = (work / name / "final", dict(strategy="regenerate", num_inference_steps=steps, **setting))
    rows["base inpainting 16 (oracle region)"] = (work / "base" / "final", dict(
        strategy="regenerate", num_inference_steps=16, oracle_region=True,
        **{k: tuned["base"][k] for k in ("guidance_scale", "temperature")}))
    for run, label in list(POST_TRAINED.items())[1:]:
        rows[label] = (work / run / "final", {})
    results = {}
    out.mkdir(parents=True, exist_ok=True)
    for label, (folder, kwargs) in rows.items():
        if not folder.exists():
            print(f"[compare] {label}: {folder} missing, skipped", flush=True)
            continue
        r = _evaluate(out, folder, n, TEST_START, "test", progress, **kwargs)
        (out / f"{label.replace(' ', '_').replace('/', '')}.json").write_text(json.dumps(r, indent=2))
        results[label] = _figures(r)
        print(f"[compare] {label}: {json.dumps(results[label])}", flush=True)
    return results


def step_curve(work: Path, out: Path, n: int, progress: bool = True) -> dict:
    """{run: [(post-training steps, validation edit success), ...]} from each run's snapshots and final."""
    curves = {}
    for run in POST_TRAINED:
        snapshots = sorted((work / run / "snapshots").glob("step_*"))
        if not snapshots:
            continue
        points = []
        for folder in snapshots:
            r = _evaluate(out, folder, n, VAL_START, "val", progress)
            points.append((int(folder.name.split("_")[1]), r["edit_success"]))
            print(f"[curve] {run} {folder.name}: {r['edit_success']:.3f}", flush=True)
        curves[run] = points
    return curves


def passes_curve(work: Path, out: Path, n: int, tuned: dict, progress: bool = True) -> dict:
    """{sampler: [(forward passes per edit, edit success, unchanged pixels kept), ...]} on test edits."""
    def point(folder, **kwargs):
        r = _evaluate(out, folder, n, TEST_START, "test", progress, **kwargs)
        kept = 1.0 - sum(row["changed_pixels"] for row in r["rows"] if row["edit_type"] == "null") / max(
            1, sum(row["edit_type"] == "null" for row in r["rows"]))
        return (r["forward_passes"], r["edit_success"], r["kept_outside"], kept)

    curves = {}
    for name in (n for n in ("base", "sft") if n in tuned):
        setting = {k: tuned[name][k] for k in ("guidance_scale", "temperature")}
        curves[f"{name} regenerate"] = [point(work / name / "final", strategy="regenerate", num_inference_steps=s, **setting)
                                        for s in (4, 8, 16, 32, 64)]
    setting = {k: tuned["base"][k] for k in ("guidance_scale", "temperature")}
    curves["base inpainting (oracle region)"] = [point(work / "base" / "final", strategy="regenerate", oracle_region=True,
                                                       num_inference_steps=s, **setting) for s in (4, 16)]
    curves["RM+HER"] = [point(work / "rm_her" / "final", num_turns=t) for t in (1, 2, 3, 4)]
    return curves


def plot_curves(steps: dict, passes: dict, out_steps: Path, out_passes: Path) -> None:
    plt = agg_pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for run, points in steps.items():
        ax.plot(*zip(*points), marker="o", label=POST_TRAINED[run])
    ax.set(xlabel="post-training steps (batch 64) from the same base", ylabel="pixel edit success (val edits)",
           ylim=(0, 1.02), title="Post-training at equal cost")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, out_steps, dpi="figure")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    for label, points in passes.items():
        xs = [p[0] for p in points]
        axes[0].plot(xs, [p[1] for p in points], marker="o", label=label)
        axes[1].plot(xs, [p[2] for p in points], marker="o", label=label)
    axes[0].set(xlabel="transformer forward passes per edit", ylabel="pixel edit success (test)", ylim=(0, 1.02))
    axes[1].set(xlabel="transformer forward passes per edit", ylabel="unchanged tokens kept (test)")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 2, 4, 8, 16, 32, 64], ["1", "2", "4", "8", "16", "32", "64"])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    save_figure(fig, out_passes, "Edit success and preservation against inference cost", dpi="figure")


def plot_base_validation(val_log: Path, out: Path) -> None:
    """The base's held-out masked-objective loss against its training steps (``val_log.jsonl``)."""
    plt = agg_pyplot()
    points = [json.loads(line) for line in val_log.read_text().splitlines() if line.strip()]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot([p["step"] for p in points], [p["val_loss"] for p in points], marker="o", markersize=3)
    ax.set(xlabel="base training steps (batch 64)", ylabel="held-out loss (masked codes)", yscale="log",
           title="Base MDM: held-out loss of the masked objective")
    ax.grid(alpha=0.3, which="both")
    save_figure(fig, out, dpi="figure")


def table(results: dict) -> str:
    head = ("| model (one base, equal post-training cost) | edit success | exact codes | kept outside | null: empty region | "
            "null: pixels changed | forward passes |\n|---|---:|---:|---:|---:|---:|---:|\n")
    body = "".join(f"| {k} | {r['edit_success']:.3f} | {r['exact_codes']:.3f} | {r['kept_outside']:.4f} | "
                   f"{r.get('null_empty_region', float('nan')):.3f} | {r.get('null_changed_pixels', float('nan')):.4f} | "
                   f"{r['forward_passes']:.1f} |\n" for k, r in results.items())
    types = [t for t in EDIT_TYPES if any(t in r["by_edit_type"] for r in results.values())]
    head2 = "\n| model | " + " | ".join(types) + " |\n|---|" + "---:|" * len(types) + "\n"
    body2 = "".join(f"| {k} | " + " | ".join(f"{r['by_edit_type'][t]['edit_success']:.3f}" if t in r["by_edit_type"] else "-"
                                             for t in types) + " |\n" for k, r in results.items())
    return head + body + head2 + body2


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="the recipe's work folder (base/, sft/, rm/, rm_her/, rm_lora/)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--parts", default="tune,compare,curves", help="comma-separated: tune, compare, curves")
    p.add_argument("--n", type=int, default=500, help="test edits per row")
    p.add_argument("--n-val", type=int, default=96, help="validation edits per tuning setting / curve point")
    p.add_argument("--n-curve", type=int, default=200, help="test edits per point of the forward-pass curve")
    p.add_argument("--assets", type=Path, default=Path("assets"))
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    parts = a.parts.split(",")
    a.out.mkdir(parents=True, exist_ok=True)
    tuned_path = a.out / "tuned.json"
    if "tune" in parts:
        shared = a.work / "tuned_regenerate.json"  # the recipe's package stage tuned the same sampler on the same edits
        tuned = (json.loads(shared.read_text()) if shared.exists()
                 else {name: tune_regenerate(a.work / name / "final", a.n_val) for name in ("base", "sft")})
        tuned_path.write_text(json.dumps(tuned, indent=2))
    tuned = json.loads(tuned_path.read_text())
    if "compare" in parts:
        results = compare(a.work, a.out / "rows", a.n, tuned)
        (a.out / "results.json").write_text(json.dumps(results, indent=2))
        (a.out / "table.md").write_text(table(results))
        print(table(results))
    if "curves" in parts:
        steps = step_curve(a.work, a.out, a.n_val)
        passes = passes_curve(a.work, a.out, a.n_curve, tuned)
        (a.out / "curves.json").write_text(json.dumps({"steps": steps, "passes": passes}, indent=2))
        a.assets.mkdir(parents=True, exist_ok=True)
        plot_curves(steps, passes, a.assets / "curve_post_training_steps.png", a.assets / "curve_forward_passes.png")
        val_log = a.work / "base" / "val_log.jsonl"
        if val_log.exists():  # absent when post-training started from a shipped base: its curve stays as shipped
            plot_base_validation(val_log, a.assets / "curve_base_validation.png")
        else:
            print(f"[curves] {val_log} missing: the base's validation curve is not redrawn", flush=True)


if __name__ == "__main__":
    main()

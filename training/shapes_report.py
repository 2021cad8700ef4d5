"""Held-out figures of the shapes models (token level) and the RM loss curves, for the model card."""

from __future__ import annotations

import json
from pathlib import Path

from rm_edit.data.shapes import ShapesWorld
from rm_edit.evaluation.token_eval import evaluate_tokens

# (row name, shipped model folder, pipeline call options)
ROWS = [
    ("base (regenerate)", "shapes-base", dict(strategy="regenerate", num_inference_steps=16)),
    ("vanilla SFT (regenerate)", "shapes-sft", dict(strategy="regenerate", num_inference_steps=16)),
    ("RM (reflective)", "shapes-rm", dict(strategy="reflective")),
    ("RM + HER (reflective)", "shapes-rm-her", dict(strategy="reflective", use_history=True, history_decay=1.0)),
    ("RM + HER, decay 0.7 (reflective)", "shapes-rm-her", dict(strategy="reflective", use_history=True, history_decay=0.7)),
]


def evaluate_shipped_models(models: Path, n: int = 256, progress: bool = True, rows=ROWS) -> dict:
    from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline

    world = ShapesWorld(split="test")
    examples = [world[i] for i in range(n)]
    results = {}
    for name, folder, options in rows:
        pipe = ReflectiveMaskingEditPipeline.from_pretrained(models / folder)
        pipe.set_progress_bar_config(disable=True)
        summary = evaluate_tokens(pipe, examples, progress=progress, **options)
        summary.pop("rows")
        results[name] = {"model": folder, "options": options, **summary}
        if progress:
            print(name, json.dumps({k: round(v, 4) for k, v in summary.items() if isinstance(v, float)}))
    return results


def plot_loss_curves(logs: dict[str, Path], out: Path) -> Path:
    """One panel per run: the reveal / mask / keep losses against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = {k: p for k, p in logs.items() if p.exists()}
    fig, axes = plt.subplots(1, max(1, len(present)), figsize=(5 * max(1, len(present)), 3.6), squeeze=False)
    for ax, (name, path) in zip(axes[0], present.items()):
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        for loss in ("reveal", "mask", "keep"):
            pts = [(r["step"], r[loss]) for r in records if loss in r]
            if pts:
                ax.plot(*zip(*pts), label=f"{loss} loss")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"Reflective Masking post-training: {name}")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out

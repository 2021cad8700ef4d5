"""Held-out figures of the shipped shapes models, the README's edit picture and the model cards.

Every figure comes from one pass of the shipped pipeline over fresh test-split edits (indices no training
touched; the training and validation splits have their own seeds), scored by the project's one scorer per
figure: pixel edit success (``rm_edit.metrics.edit_success``) and the token scores
(``rm_edit.evaluation.token_eval.image_token_scores``).

    python -m rm_edit.training.grid_report --models rm_edit/models --n 500 --out runs/heldout.json
    python -m rm_edit.training.grid_report --models rm_edit/models --grid assets/shapes_edits.png --start 5000
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from rm_edit.configs import path as config_path
from rm_edit.batch_edits import edit_in_batches
from rm_edit.data.shapes import CLASSIC_EDIT_TYPES, EDIT_TYPES, ShapesWorld, ShapesWorldConfig
from rm_edit.evaluation.token_eval import image_token_scores, micro_precision_recall
from rm_edit.files import item_seed
from rm_edit.metrics import edit_success
from rm_edit.pipelines.default_model import DEFAULT_MODEL

MODEL_ORDER = ("shapes-base", "shapes-sft", "shapes-rm", "shapes-rm-her", "shapes-rm-lora")


def _load(folder: Path):
    from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline

    return ReflectiveMaskingEditPipeline.from_pretrained(str(folder), torch_dtype=torch.float32)


@torch.no_grad()
def evaluate_pipeline(pipe, n: int, start: int = 0, split: str = "test", batch_size: int = 16, progress: bool = True,
                      edit_types: tuple[str, ...] = CLASSIC_EDIT_TYPES, oracle_region: bool = False, **call_kwargs) -> dict:
    """Edit examples ``start .. start + n - 1`` of ``split`` (a world of ``edit_types``); per-edit rows and their
    summary. ``oracle_region``: each edit may change only the true edit region (``mask_image``), the
    localization baseline (MaskGIT-style inpainting with the regenerate sampler)."""
    world = ShapesWorld(ShapesWorldConfig(edit_types=tuple(edit_types)), split=split)
    rows = []
    bar = tqdm(total=n, desc="held-out edits", disable=not progress)

    def score(chunk, _images, out) -> None:
        for i, ex in enumerate(chunk):
            target = torch.from_numpy(ShapesWorld.codes(ex.target_scene))
            tok = image_token_scores(out.edit_region_tokens[i].cpu(), out.source_codes[i].cpu(), target, out.codes[i].cpu())
            pix = edit_success(ex.source, out.images[i], ex.target)
            rows.append({"id": ex.id, "edit_type": ex.edit_type, "success": bool(pix.success),
                         "exact_codes": bool(torch.equal(out.codes[i].cpu(), target)),
                         "source_codes_exact": bool(torch.equal(out.source_codes[i].cpu(),
                                                                torch.from_numpy(ShapesWorld.codes(ex.source_scene)))),
                         "forward_passes": out.forward_passes_per_image[i],
                         "region_cells": int(out.edit_region_tokens[i].sum()),  # codes the edit changed
                         "remasked_cells": (None if out.remasked_tokens is None  # re-masked at least once (RM)
                                            else int(out.remasked_tokens[i].sum())),
                         "changed_pixels": changed_pixel_fraction(ex.source, out.images[i]),
                         **{k: tok[k] for k in ("tp", "fp", "fn", "kept_outside")}})
        bar.update(len(chunk))

    # The one batch loop: each edit seeded from its id (rm_edit.batch_edits), as batch and eval do.
    # The world's own instructions are scored as it words them (a null edit may name a taken place: refused for a
    # user, edited here), as rm-edit eval does.
    edit_in_batches(pipe, (world[i] for i in range(start, start + n)),
                    lambda e: (Image.fromarray(e.source), e.mask if oracle_region else None),
                    score, batch_size=batch_size, output_type="np", **{"allow_unknown_words": True, **call_kwargs})
    bar.close()
    return summarize(rows) | {"rows": rows}


def changed_pixel_fraction(source: np.ndarray, output: np.ndarray) -> float:
    """The fraction of pixels whose largest channel difference exceeds 0.15 (0-1 scale; the pixel test's own
    threshold for "moved"): what a null edit must keep near 0."""
    out = np.asarray(output, dtype=np.float64)
    out = out / 255.0 if out.max() > 1.0 else out
    return float((np.abs(out - np.asarray(source) / 255.0).max(-1) > 0.15).mean())


def summarize(rows: list[dict]) -> dict:
    """Rates overall and per edit type; token precision / recall pooled over images (micro)."""

    def stats(rs: list[dict]) -> dict:
        precision, recall = micro_precision_recall(rs)  # the token scorer's own pooling
        return {"n": len(rs), "edit_success": float(np.mean([r["success"] for r in rs])),
                "exact_codes": float(np.mean([r["exact_codes"] for r in rs])),
                "token_precision": precision, "token_recall": recall,
                "kept_outside": float(np.mean([r["kept_outside"] for r in rs])),
                "forward_passes": float(np.mean([r["forward_passes"] for r in rs]))}

    types = [t for t in EDIT_TYPES if any(r["edit_type"] == t for r in rows)]
    summary = stats(rows) | {"by_edit_type": {t: stats([r for r in rows if r["edit_type"] == t]) for t in types}}
    nulls = [r for r in rows if r["edit_type"] == "null"]
    if nulls:  # the null-edit promise: an empty region and (almost) no pixel changed
        summary["null_empty_region"] = float(np.mean([r["region_cells"] == 0 for r in nulls]))
        summary["null_changed_pixels"] = float(np.mean([r["changed_pixels"] for r in nulls]))
        summary["null_kept"] = float(np.mean([r["changed_pixels"] <= 0.001 for r in nulls]))
        if all(r.get("remasked_cells") is not None for r in nulls):  # the reflective sampler: nothing re-masked at all
            summary["null_nothing_remasked"] = float(np.mean([r["remasked_cells"] == 0 for r in nulls]))
    return summary


def evaluate_models(models: Path, out: Path, n: int, progress: bool = True) -> dict:
    """Every shipped folder with its own default sampler (what `rm-edit edit` runs)."""
    results = {}
    for name in MODEL_ORDER:
        if (models / name).exists():
            result = evaluate_pipeline(_load(models / name), n, progress=progress)
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{name}.json").write_text(json.dumps(result, indent=2))
            results[name] = {k: v for k, v in result.items() if k != "rows"}
    return results


@torch.no_grad()
def render_edit_grid(model: Path, out: Path, start: int, n: int = 8, split: str = "test", scale: int = 3,
                     edit_types: tuple[str, ...] = CLASSIC_EDIT_TYPES) -> Path:
    """A PNG of ``n`` fresh edits, one per row: source | edit | region | target (captioned)."""
    pipe = _load(model)
    world = ShapesWorld(ShapesWorldConfig(edit_types=tuple(edit_types)), split=split)
    examples = [world[i] for i in range(start, start + n)]
    result = pipe([Image.fromarray(e.source) for e in examples], [e.instruction for e in examples],
                  generator=[torch.Generator().manual_seed(item_seed(0, e.id)) for e in examples],  # batch_edits' rule
                  allow_unknown_words=True)  # the world's own instructions, as evaluate_pipeline scores them
    size, caption, gap = 64 * scale, 14, 4
    sheet = Image.new("RGB", (4 * size + 5 * gap, n * (size + caption + gap) + gap), "white")
    draw = ImageDraw.Draw(sheet)
    for r, ex in enumerate(examples):
        y = gap + r * (size + caption + gap)
        region = Image.fromarray((np.asarray(result.edit_masks[r]) * 255).astype(np.uint8)).convert("RGB")
        ok = edit_success(ex.source, np.asarray(result.images[r]), ex.target).success
        draw.text((gap, y), f"{ex.id}: {ex.instruction}   [{'success' if ok else 'FAILED'}]", fill="black")
        for c, im in enumerate((Image.fromarray(ex.source), result.images[r], region, Image.fromarray(ex.target))):
            sheet.paste(im.resize((size, size), Image.Resampling.NEAREST), (gap + c * (size + gap), y + caption))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def figures_table(results: dict) -> str:
    """Markdown: one row per model (overall), then per edit type edit success."""
    head = "| model | edit success | exact codes | token precision | token recall | kept outside | forward passes |\n|---|---:|---:|---:|---:|---:|---:|\n"
    body = "".join(f"| {name} | {r['edit_success']:.3f} | {r['exact_codes']:.3f} | {r['token_precision']:.3f} | "
                   f"{r['token_recall']:.3f} | {r['kept_outside']:.4f} | {r['forward_passes']:.1f} |\n"
                   for name, r in results.items())
    types = list(next(iter(results.values()))["by_edit_type"])
    head2 = "\n| model | " + " | ".join(types) + " |\n|---|" + "---:|" * len(types) + "\n"
    body2 = "".join(f"| {name} | " + " | ".join(f"{r['by_edit_type'][t]['edit_success']:.3f}" for t in types) + " |\n"
                    for name, r in results.items())
    return head + body + head2 + body2


def _model_folder(model: str, models: Path) -> Path:
    """``--model``: a folder, or the name of one under ``--models`` (``shapes-rm``)."""
    for folder in (Path(model), models / model):
        if (folder / "model_index.json").is_file():
            return folder
    raise SystemExit(f"grid_report: --model {model}: no pipeline folder there or under {models} "
                     f"(shipped: {', '.join(m for m in MODEL_ORDER if (models / m).exists())})")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=Path, default=Path(__file__).resolve().parent.parent / "rm_edit" / "models")
    p.add_argument("--model", help="evaluate only this folder")
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--split", default="test")
    p.add_argument("--out", type=Path, help="write the figures (JSON) here")
    p.add_argument("--grid", type=Path, help="render the edit picture of --model (default shapes-rm-her) here instead")
    p.add_argument("--language", action="store_true",
                   help="edits of the whole language (all ten edit types), for the figures and the grid alike")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    edit_types = EDIT_TYPES if a.language else CLASSIC_EDIT_TYPES
    if a.grid:
        print(render_edit_grid(_model_folder(a.model, a.models) if a.model else a.models / "shapes-rm-her", a.grid, a.start, split=a.split,
                               edit_types=edit_types))
        return
    folders = [_model_folder(a.model, a.models)] if a.model else [a.models / m for m in MODEL_ORDER if (a.models / m).exists()]
    results = {}
    for folder in folders:
        r = evaluate_pipeline(_load(folder), a.n, a.start, a.split, edit_types=edit_types)
        results[folder.name] = {k: v for k, v in r.items() if k != "rows"}
        print(folder.name, json.dumps(results[folder.name]), flush=True)
    print(figures_table(results))
    if a.out:
        a.out.write_text(json.dumps(results, indent=2))



CARD_TAGS = ("rm-edit", "reflective-masking", "masked-diffusion", "llada", "image-editing", "synthetic")


def card_header(*extra_tags: str) -> str:
    """A Hugging Face card's YAML metadata (the project's tags, then ``extra_tags``)."""
    tags = "".join(f"- {t}\n" for t in (*CARD_TAGS, *extra_tags))
    return f"---\nlicense: apache-2.0\nlibrary_name: diffusers\npipeline_tag: image-to-image\ntags:\n{tags}---\n"


CARD_HEADER = card_header()


def load_snippet(name: str) -> str:
    """The card's how-to-load code block for the folder ``name``."""
    return (f"```python\nfrom rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline\n"
            f"pipe = ReflectiveMaskingEditPipeline.from_pretrained(\"{name}\")\n```\n")

_ABOUT = {
    "shapes-base": "the base MDM (Lumina-DiMOO's masked objective on edits and captions; regenerate sampler, its "
                   "guidance and temperature tuned on validation edits)",
    "shapes-sft": "the vanilla SFT baseline (the base post-trained on the masked objective with the same edits, steps "
                  "and batch as the RM models; regenerate sampler, tuned on validation edits)",
    "shapes-rm": "Reflective Masking post-training of the base without History Reference",
    "shapes-rm-her": "Reflective Masking post-training of the base with History Reference",
    "shapes-rm-lora": "Reflective Masking post-training of the base as LoRA adapters plus the [MASK] row (the recipe "
                      "documented for Lumina-DiMOO), with History Reference; an adapter folder applied to shapes-base on load",
}


def write_model_cards(models: Path, results: dict, times: dict, vq_metrics: dict, command: str,
                      comparison: str = "") -> None:
    """A Hugging Face card (``README.md`` with YAML metadata) in every shipped folder and ``MODEL_CARD.md``
    (with ``comparison``, the fair comparison's table, when given)."""
    table = figures_table(results)
    for name in MODEL_ORDER:
        folder = models / name
        if not folder.exists():
            continue
        r = results.get(name)
        own = (f"Held-out figures ({r['n']} fresh test edits, the folder's own sampler, paste-back on, the default of the pipeline and the CLI): pixel edit success "
               f"{r['edit_success']:.3f}, exact codes {r['exact_codes']:.3f}, token precision {r['token_precision']:.3f}, "
               f"recall {r['token_recall']:.3f}, unchanged tokens kept {r['kept_outside']:.4f}, "
               f"{r['forward_passes']:.1f} forward passes per edit.\n" if r else "")
        (folder / "README.md").write_text(
            f"{CARD_HEADER}\n# rm-edit {name}\n\n{_ABOUT[name][0].upper() + _ABOUT[name][1:]}"
            f"{' (the default model)' if name == DEFAULT_MODEL else ''}, trained by the rm-edit project on 2 CPU "
            f"cores on its synthetic *shapes world*. Load it with\n\n{load_snippet(name)}\n"
            f"{own}\n**Limits:** it knows only the shapes world: 64x64 images on an 8x8 grid of 8-px cells, five flat "
            "backgrounds, six colours, four kinds, two sizes, nine anchors, and the instruction templates of "
            "`rm_edit.data.shapes`. Photos, other sizes or other words are outside what it has seen (the pipeline warns).\n\n"
            "See `MODEL_CARD.md` beside this folder for the recipe, every figure and how to reproduce them.\n")
    card = (f"# The shipped shapes models\n\nReproduce: `{command}` (stages resume; run in stages of at most two hours).\n\n"
            f"Held-out test edits (fresh indices of the test split; each folder's own sampler; paste-back on, the default):\n\n{table}\n"
            + (f"## One base, equal post-training cost (`rm_edit.training.fair_comparison`)\n\n{comparison}\n" if comparison else "")
            + f"Image tokenizer: PSNR {vq_metrics['psnr_mean']} dB mean (min {vq_metrics['psnr_min']}) on "
            f"{vq_metrics['images']} held-out images, codes exact {vq_metrics['codes_exact']:.3f}"
            + (f"; decoding the exact target codes of {vq_metrics['oracle_edits']} validation edits (the ceiling of a "
               f"perfect token model) passes the pixel test on {vq_metrics['oracle_edit_success']:.3f}"
               if "oracle_edit_success" in vq_metrics else "") + ".\n\n"
            f"Stage wall times (s): {json.dumps(times)}\n\n" + config_path("model_card_notes.md").read_text())
    (models / "MODEL_CARD.md").write_text(card)


if __name__ == "__main__":
    main()

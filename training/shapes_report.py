"""Held-out figures of the shapes models (token level) and the RM loss curves, for the model card."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from rm_edit.data.shapes import ShapesWorld, named_shape
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


def sweep_reflective_sampler(model: Path, n: int = 128, margins=(0.0, 0.5, 1.0, 1.5, 2.5), turns=(1, 2, 3),
                             use_history: bool = False, progress: bool = True) -> list[dict]:
    """Token figures of one RM folder on the *validation* split for each (turns, re-mask margin): how the
    shipped sampler is chosen without looking at the test split."""
    from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline

    world = ShapesWorld(split="val")
    examples = [world[i] for i in range(n)]
    pipe = ReflectiveMaskingEditPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    table = []
    for num_turns in turns:
        for margin in margins:
            summary = evaluate_tokens(pipe, examples, progress=False, strategy="reflective", num_turns=num_turns,
                                      remask_margin=margin, use_history=use_history)
            row = {"num_turns": num_turns, "remask_margin": margin,
                   **{k: round(summary[k], 4) for k in ("micro_precision", "micro_recall", "kept_outside",
                                                        "edit_accuracy", "forward_passes")}}
            table.append(row)
            if progress:
                print(json.dumps(row), flush=True)
    return table


def _example_codes(pipe, ex) -> tuple[torch.Tensor, torch.Tensor]:
    """(source, target) VQ codes (h, w) of one shapes example."""
    from rm_edit.vq import encode_to_codes, image_to_tensor

    codes = encode_to_codes(pipe.vqvae, torch.cat([image_to_tensor(ex.source), image_to_tensor(ex.target)]))
    return codes[0], codes[1]


def _target_log_probs(pipe, instruction: str | None, source: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """One editing forward: log-probabilities over codes + [MASK] at the target positions, (h * w, K + 1)."""
    from rm_edit.layout import build_edit_sequence, edit_prompt_text, pad_sequences

    layout, tok = pipe.layout, pipe.tokenizer
    prompt, close = (tok(t, add_special_tokens=False)["input_ids"] for t in edit_prompt_text(layout, instruction))
    batch = pad_sequences([build_edit_sequence(layout, prompt, source, state, close)], layout.pad_token_id)
    logits = pipe.transformer(batch.input_ids, batch.attention_mask, output_positions=batch.target_positions).logits
    return layout.image_code_logits(logits.float())[0].log_softmax(-1)


def _first_step_scores(pipe, ex) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first reflect step from the untouched source: (source codes (h, w), truly changed (h * w,),
    scores log p(MASK) - log p(code) (h * w,))."""
    from rm_edit.reflective import remask_scores

    source, target = _example_codes(pipe, ex)
    log_probs = _target_log_probs(pipe, ex.instruction, source, source)
    return source, (source != target).flatten(), remask_scores(log_probs[None], source.flatten()[None])[0]


@torch.no_grad()
def code_colour_purity(vq, n: int = 512, split: str = "val", min_cover: float = 0.25) -> dict:
    """How well the tokenizer's codes keep a shape's colour: over the cells of ``n`` images (sources then
    targets) at least ``min_cover`` covered by a shape, the fraction whose majority shape colour is the most
    common one among the cells sharing their code (1.0: every code stands for one colour)."""
    from rm_edit.data.shapes import COLOURS
    from rm_edit.training.train_vq import heldout_images
    from rm_edit.vq import encode_to_codes, vq_downsample_factor

    images = heldout_images(n, split)
    codes = torch.cat([encode_to_codes(vq, chunk, cell_local=True) for chunk in images.split(64)]).flatten()
    palette = torch.tensor(list(COLOURS.values()), dtype=torch.float32) / 255
    dist = (images.permute(0, 2, 3, 1).unsqueeze(-2) - palette).abs().sum(-1)  # (B, H, W, colours)
    nearest, colour = dist.min(-1)
    colour = torch.where(nearest < 1e-3, colour, len(COLOURS))  # len(COLOURS) = background
    f = vq_downsample_factor(vq)
    b, h, w = colour.shape
    cells = colour.reshape(b, h // f, f, w // f, f).permute(0, 1, 3, 2, 4).reshape(-1, f * f)
    cover = (cells < len(COLOURS)).float().mean(-1)
    majority = torch.where(cells < len(COLOURS), cells, len(COLOURS)).mode(-1).values
    sel = cover >= min_cover
    k = int(codes.max()) + 1
    table = torch.zeros(k, len(COLOURS) + 1).index_put_((codes[sel], majority[sel]), torch.ones(int(sel.sum())),
                                                         accumulate=True)
    return {"cells": int(sel.sum()), "purity": round((table.max(1).values.sum() / table.sum()).item(), 4)}


@torch.no_grad()
def remask_score_groups(model: Path | str, n: int = 64, split: str = "val") -> dict:
    """The first reflect step's scores log p(MASK) - log p(code), from the untouched source, by token group:
    the truly changed tokens, tokens of the other (unnamed) shapes, background. Grounding the instruction
    means the first group scores high and the second low; re-masking every shape means both score high."""
    from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline
    from rm_edit.vq import vq_downsample_factor

    pipe = ReflectiveMaskingEditPipeline.from_pretrained(model)
    world = ShapesWorld(split=split)
    f = vq_downsample_factor(pipe.vqvae)
    scores: dict[str, list[torch.Tensor]] = {"changed": [], "other shapes": [], "background": []}
    for i in range(n):
        ex = world[i]
        source, changed, s = _first_step_scores(pipe, ex)
        h, w = source.shape
        shape_px = torch.from_numpy((ex.source != ex.source[0, 0]).any(-1))  # corner pixel: the background
        on_shape = shape_px.reshape(h, f, w, f).any(3).any(1).flatten()
        scores["changed"].append(s[changed])
        scores["other shapes"].append(s[~changed & on_shape])
        scores["background"].append(s[~changed & ~on_shape])
    out = {}
    for name, parts in scores.items():
        v = torch.cat(parts)
        out[name] = {"tokens": v.numel(), "mean": round(v.mean().item(), 3),
                     "remasked_at_0": round((v > 0).float().mean().item(), 4)}
    return out


@torch.no_grad()
def distractor_scores(model: Path | str, n: int = 128, split: str = "val", margin: float = 1.5) -> dict:
    """Which unnamed shapes the first reflect step re-masks, by what they share with the named one.

    Over the first ``n`` edits that name a source shape (not add), each other shape's tokens (its footprint,
    minus truly changed tokens) grouped by same / different colour and kind as the named shape: mean score
    log p(MASK) - log p(code), the fraction above ``margin`` and, threshold-free, the AUC against the truly
    changed tokens (P(a changed token scores above the group's); 0.5 = not told apart, 1 = always). Grounding
    by colour shows as low scores for "other colour" shapes; by kind, for "other kind" ones.
    """
    from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline
    from rm_edit.vq import vq_downsample_factor

    pipe = ReflectiveMaskingEditPipeline.from_pretrained(model)
    world = ShapesWorld(split=split)
    f = vq_downsample_factor(pipe.vqvae)
    groups: dict[str, list[torch.Tensor]] = {}
    changed_scores: list[torch.Tensor] = []
    for ex in (world[i] for i in range(n)):
        named = named_shape(ex)
        if named is None:
            continue
        source, changed, scores = _first_step_scores(pipe, ex)
        changed_scores.append(scores[changed])
        h, w = source.shape
        for shape in ex.source_scene.shapes:
            if shape is named:
                continue
            cells = torch.from_numpy(world.footprint(shape)).reshape(h, f, w, f).any(3).any(1).flatten() & ~changed
            key = (("same" if shape.colour == named.colour else "other") + " colour, "
                   + ("same" if shape.kind == named.kind else "other") + " kind")
            groups.setdefault(key, []).append(scores[cells])
    positives = torch.cat(changed_scores) if changed_scores else torch.zeros(0)
    out = {}
    for key in sorted(groups):
        v = torch.cat(groups[key])
        empty = v.numel() == 0 or positives.numel() == 0
        out[key] = {"tokens": v.numel(), "mean": round(v.mean().item(), 3) if v.numel() else float("nan"),
                    "remasked": round((v > margin).float().mean().item(), 4) if v.numel() else float("nan"),
                    "auc": float("nan") if empty else round(score_auc(positives, v), 4)}
    return out


def score_auc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """P(a positive scores above a negative): the ROC AUC of telling the two sets apart by score."""
    from torchmetrics.functional.classification import binary_auroc

    scores = torch.cat([positive, negative]).double()
    # Min-max into [0, 1] (order kept) so torchmetrics does not squash the logits with a saturating sigmoid.
    scores = (scores - scores.min()) / (scores.max() - scores.min()).clamp(min=1e-12)
    labels = torch.cat([torch.ones(len(positive)), torch.zeros(len(negative))]).long()
    return float(binary_auroc(scores, labels))


@torch.no_grad()
def false_positive_sources(model: Path | str, n: int = 96, split: str = "val", **call_kwargs) -> dict:
    """Where the re-masked tokens outside the true change lie (what costs precision): on another shape of
    the named shape's colour, on a shape of another colour, next to the change (8-neighbourhood), elsewhere.
    Fractions of all false positives of the first ``n`` edits, run with the folder's sampler (and
    ``call_kwargs``)."""
    import torch.nn.functional as F
    from PIL import Image

    from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline
    from rm_edit.vq import vq_downsample_factor

    pipe = ReflectiveMaskingEditPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    world = ShapesWorld(split=split)
    f = vq_downsample_factor(pipe.vqvae)
    counts = {"same-colour shape": 0, "other-colour shape": 0, "next to the change": 0, "elsewhere": 0}
    tokens = 0
    for i in range(n):
        ex = world[i]
        source, target = _example_codes(pipe, ex)
        h, w = source.shape
        out = pipe(Image.fromarray(ex.source), ex.instruction, generator=torch.Generator().manual_seed(i),
                   output_type="latent", **call_kwargs)
        changed = source != target
        false_pos = out.edit_region_tokens[0].reshape(h, w) & ~changed
        tokens += h * w
        named = named_shape(ex)
        edited = named or next(s for s in ex.target_scene.shapes if s not in ex.source_scene.shapes)  # add: the new one
        near = F.max_pool2d(changed[None, None].float(), 3, 1, 1)[0, 0].bool()
        left = false_pos.clone()
        for shape in ex.source_scene.shapes:
            if shape is named:
                continue
            cells = torch.from_numpy(world.footprint(shape)).reshape(h, f, w, f).any(3).any(1)
            key = "same-colour shape" if shape.colour == edited.colour else "other-colour shape"
            counts[key] += int((left & cells).sum())
            left &= ~cells
        counts["next to the change"] += int((left & near).sum())
        counts["elsewhere"] += int((left & ~near).sum())
    total = sum(counts.values())
    return {"false_positives_per_image": round(total / n, 3), "tokens_per_image": tokens // n,
            **{k: round(v / max(total, 1), 4) for k, v in counts.items()}}


@torch.no_grad()
def placement_ceiling(vq, n: int = 256, split: str = "test", draws: int = 4, seed: int = 0) -> dict:
    """The localisation figures an oracle could reach on add and move edits: it knows the edit exactly except
    the placement jitter the instruction leaves open (the new or moved shape drawn at another position the
    world allows at that anchor). Its changed tokens against the true ones, micro precision / recall per type.
    """
    import numpy as np

    from rm_edit.data.shapes import Scene
    from rm_edit.vq import encode_to_codes, image_to_tensor

    world, rng = ShapesWorld(split=split), np.random.default_rng(seed)
    codes = lambda image: encode_to_codes(vq, image_to_tensor(image), cell_local=True)[0]  # noqa: E731
    counts: dict[str, list[int]] = {}
    for ex in (world[i] for i in range(n)):
        if ex.edit_type not in ("add", "move"):
            continue
        source = codes(ex.source)
        truth = source != codes(ex.target)
        placed = next(s for s in ex.target_scene.shapes if s not in ex.source_scene.shapes)
        for _ in range(draws):
            x, y = world._place(rng, placed.anchor)
            other = replace(placed, x=x, y=y)
            scene = Scene(ex.target_scene.background, tuple(other if s is placed else s for s in ex.target_scene.shapes))
            guess = source != codes(world.render(scene))
            c = counts.setdefault(ex.edit_type, [0, 0, 0])
            c[0] += int((guess & truth).sum()); c[1] += int(guess.sum()); c[2] += int(truth.sum())  # noqa: E702
    return {t: {"micro_precision": round(tp / max(p, 1), 4), "micro_recall": round(tp / max(g, 1), 4)}
            for t, (tp, p, g) in sorted(counts.items())}


def code_kind_readability(vq, n_train: int = 6000, n_val: int = 256, steps: int = 3000, seed: int = 0) -> dict:
    """Can a shape's kind be read from the tokenizer's codes at all? A small MLP over the 3x3 code window around
    each shape's centre cell, trained on the shapes of ``n_train`` training sources and scored on those of
    ``n_val`` validation sources: accuracy over the four kinds, overall and per size (chance 0.25). A ceiling
    for how well any editing model on these codes can tell a named shape from its same-colour twin."""
    import torch.nn.functional as F

    from rm_edit.data.shapes import KINDS, SIZES
    from rm_edit.vq import encode_to_codes, image_to_tensor, vq_downsample_factor

    f, pad = vq_downsample_factor(vq), vq.config.num_vq_embeddings  # pad id: off the image

    def windows(split: str, n: int):
        world = ShapesWorld(split=split)
        examples = [world[i] for i in range(n)]
        with torch.no_grad():
            pixels = torch.cat([image_to_tensor(ex.source) for ex in examples])
            codes = torch.cat([encode_to_codes(vq, chunk, cell_local=True) for chunk in pixels.split(128)])
        codes = F.pad(codes, (1, 1, 1, 1), value=pad)
        rows, kinds, sizes = [], [], []
        for ex, grid in zip(examples, codes):
            for shape in ex.source_scene.shapes:
                r, c = shape.y // f + 1, shape.x // f + 1
                rows.append(grid[r - 1 : r + 2, c - 1 : c + 2].flatten())
                kinds.append(KINDS.index(shape.kind))
                sizes.append(shape.size)
        return torch.stack(rows), torch.tensor(kinds), sizes

    gen = torch.Generator().manual_seed(seed)
    x_train, y_train, _ = windows("train", n_train)
    x_val, y_val, val_sizes = windows("val", n_val)
    torch.manual_seed(seed)
    probe = torch.nn.Sequential(torch.nn.Embedding(pad + 1, 32), torch.nn.Flatten(), torch.nn.Linear(9 * 32, 256),
                                torch.nn.GELU(), torch.nn.Linear(256, len(KINDS)))
    opt = torch.optim.AdamW(probe.parameters(), lr=3e-3, weight_decay=0.05)
    for _ in range(steps):
        batch = torch.randint(len(y_train), (256,), generator=gen)
        loss = F.cross_entropy(probe(x_train[batch]), y_train[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        right = probe(x_val).argmax(-1) == y_val
        train_acc = (probe(x_train).argmax(-1) == y_train).float().mean().item()
    by_size = {size: round(right[[s == size for s in val_sizes]].float().mean().item(), 4)
               for size in SIZES if size in val_sizes}
    return {"shapes": len(y_val), "val_accuracy": round(right.float().mean().item(), 4),
            "train_accuracy": round(train_acc, 4), "by_size": by_size}


@torch.no_grad()
def instruction_ablation(model: Path | str, n: int = 40, split: str = "val", edit_type: str = "recolour") -> dict:
    """Does the model read the instruction? With exactly the truly changed tokens masked, the target codes'
    cross-entropy and argmax accuracy there under the true instruction, with its last colour word swapped
    and with no instruction (the guidance branch). A model that uses the words loses accuracy when they lie."""
    from rm_edit.data.shapes import COLOURS
    from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline

    pipe = ReflectiveMaskingEditPipeline.from_pretrained(model)
    mask_code = pipe.layout.mask_code
    world = ShapesWorld(split=split)
    examples = [ex for ex in (world[i] for i in range(20 * n)) if ex.edit_type == edit_type][:n]
    codes = [_example_codes(pipe, ex) for ex in examples]

    def swapped(text: str) -> str:
        words = text.split()
        last = max(i for i, word in enumerate(words) if word in COLOURS)
        words[last] = "blue" if words[last] != "blue" else "red"
        return " ".join(words)

    variants = {"true": lambda t: t, "colour swapped": swapped, "no instruction": lambda t: None}
    out = {}
    for name, edit_text in variants.items():
        loss, hits, count = 0.0, 0, 0
        for ex, (source, target) in zip(examples, codes):
            changed = (source != target).flatten()
            state = torch.where(changed.view_as(source), torch.full_like(source, mask_code), source)
            log_probs = _target_log_probs(pipe, edit_text(ex.instruction), source, state)[changed]
            loss -= log_probs.gather(-1, target.flatten()[changed, None]).sum().item()
            hits += int((log_probs[:, :-1].argmax(-1) == target.flatten()[changed]).sum())
            count += int(changed.sum())
        out[name] = {"cross_entropy": round(loss / max(count, 1), 3), "accuracy": round(hits / max(count, 1), 4)}
    return out


def read_log_phases(paths: list[Path]) -> list[dict]:
    """Concatenate the log.jsonl of consecutive training phases, offsetting each phase's steps."""
    records, offset = [], 0
    for path in paths:
        if not path.exists():
            continue
        phase = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        records += [{**r, "step": r["step"] + offset, "phase_start": offset} for r in phase]
        offset += max((r["step"] for r in phase), default=0)
    return records


def plot_loss_curves(logs: dict[str, Path | list[Path]], out: Path) -> Path:
    """One panel per run: the reveal / mask / keep losses against the step (phases joined, a line between)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {k: read_log_phases([p] if isinstance(p, Path) else list(p)) for k, p in logs.items()}
    present = {k: r for k, r in runs.items() if r}
    fig, axes = plt.subplots(1, max(1, len(present)), figsize=(5 * max(1, len(present)), 3.6), squeeze=False)
    for ax, (name, records) in zip(axes[0], present.items()):
        for start in sorted({r["phase_start"] for r in records} - {0}):
            ax.axvline(start, color="grey", lw=0.8, ls="--")
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


def write_model_card(models: Path, results: dict, stage_times: dict, vq_metrics: dict | None, command: str) -> Path:
    """MODEL_CARD.md: what the shipped shapes models are, how they were made, and their held-out figures."""
    lines = [
        "# rm-edit shapes models (the shipped defaults)",
        "",
        "Four editing MDMs (LLaDA architecture) and one VQ image tokenizer, trained on CPU by this project on the",
        "synthetic shapes editing world (`rm_edit.data.shapes`). Folders are diffusers pipelines",
        "(`ReflectiveMaskingEditPipeline.from_pretrained(folder)`):",
        "",
        "| folder | what | use with |",
        "|---|---|---|",
        "| `shapes-base` | base MDM, Lumina-DiMOO's vanilla objective | `strategy=\"regenerate\"` |",
        "| `shapes-sft` | base + vanilla SFT (same steps as RM) | `strategy=\"regenerate\"` |",
        "| `shapes-rm` | base + Reflective Masking post-training | `strategy=\"reflective\"` |",
        "| `shapes-rm-her` | base + RM post-training with History Reference (default) | `strategy=\"reflective\", use_history=True` |",
        "",
        "## Reproduce",
        "",
        f"    {command}",
        "",
        "Configs: `configs/vq_shapes.json`, `configs/mdm_shapes_{base,sft,rm,rm_her}.json` (seeds inside).",
        "",
        "## Wall time per stage (this machine: 2 CPU cores)",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in stage_times.items()],
        "",
    ]
    if vq_metrics:
        lines += ["## Image tokenizer", "",
                  f"Held-out reconstruction PSNR {vq_metrics.get('psnr_mean', float('nan')):.2f} dB on "
                  f"{vq_metrics.get('images')} test-split images; {vq_metrics.get('codes_used')} of "
                  f"{vq_metrics.get('codebook_size')} codes used.", ""]
    keys = ["micro_precision", "micro_recall", "precision", "recall", "kept_outside", "edit_accuracy",
            "token_accuracy", "replayed", "forward_passes"]
    lines += ["## Held-out figures (shapes test split, token level)", "",
              "precision / recall: the region the model chose (re-masked tokens; for regenerate, the tokens it",
              "changed) against the ground-truth changed tokens, pooled (micro) and per image (macro);",
              "kept outside: tokens outside the true change that keep the source's code; edit accuracy: truly",
              "changed tokens equal to the target's code.", "",
              "| run | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[k]:.3f}" for k in keys) + " |")
    typed = {name: r["by_edit_type"] for name, r in results.items() if r.get("by_edit_type")}
    if typed:
        cols = ["micro_precision", "micro_recall", "kept_outside", "edit_accuracy"]
        lines += ["", "Per edit type (micro precision / micro recall / kept outside / edit accuracy):", "",
                  "| run | " + " | ".join(sorted(next(iter(typed.values())))) + " |",
                  "|---|" + "---|" * len(next(iter(typed.values())))]
        for name, types in typed.items():
            cells = [" / ".join(f"{types[t][k]:.2f}" for k in cols) for t in sorted(types)]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "RM post-training losses: `rm_losses.png`.", ""]
    out = models / "MODEL_CARD.md"
    out.write_text("\n".join(lines))
    return out

"""Token-level evaluation of an editing MDM on examples with ground-truth targets (the shapes world).

Ground truth at token level: the changed codes are where the VQ codes of source and target differ. For a
run we score the region the model chose (re-masked tokens; for regenerate, the tokens it changed) against
them, how many tokens outside the change kept the source's code, and the accuracy of the edit region
against the target's codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..metrics.localization import token_metrics
from ..vq import encode_to_codes, image_to_tensor


@dataclass
class TokenEditResult:
    precision: float
    recall: float
    iou: float
    kept_outside: float  # fraction of tokens outside the true change that keep the source's code
    edit_accuracy: float  # fraction of truly changed tokens that equal the target's code
    token_accuracy: float  # all tokens vs the target's codes
    forward_passes: float  # per batch call
    replayed: float  # re-masked positions revealed to the code they held just before (per image)


def _codes(vq, arrays: list[np.ndarray]) -> torch.Tensor:
    x = torch.cat([image_to_tensor(a) for a in arrays]).to(vq.device)
    return encode_to_codes(vq, x).cpu()


def evaluate_tokens(pipe, examples, batch_size: int = 32, seed: int = 0, progress: bool = True, **call_kwargs) -> dict:
    """Run ``pipe`` on ``examples`` (objects with .id, .source/.target uint8 arrays and .instruction) through the
    one batch loop (:func:`rm_edit.batch_edits.edit_in_batches`: each edit seeded from its id)."""
    from ..batch_edits import edit_in_batches

    rows: list[dict] = []
    bar = tqdm(total=len(examples), desc="evaluating", disable=not progress)

    def score(chunk, _images, out) -> None:
        source = _codes(pipe.vqvae, [e.source for e in chunk])
        target = _codes(pipe.vqvae, [e.target for e in chunk])
        replays = count_replays(out.trajectory, pipe.layout.mask_code)
        for i in range(len(chunk)):
            rows.append(image_token_scores(out.edit_region_tokens[i], source[i], target[i], out.images[i]) | dict(
                forward_passes=float(out.forward_passes_per_image[i]),
                replayed=float(replays[i]),
                edit_type=getattr(chunk[i], "edit_type", None),
            ))
        bar.update(len(chunk))

    edit_in_batches(pipe, examples, lambda e: (Image.fromarray(e.source), None), score, batch_size=batch_size,
                    seed=seed, output_type="latent", return_trajectory=True, **call_kwargs)
    bar.close()
    return summarize(rows) | {"rows": rows}


def image_token_scores(region: torch.Tensor, source: torch.Tensor, target: torch.Tensor, edited: torch.Tensor) -> dict:
    """One image's token scores: the chosen ``region`` against the true change (``source != target``), codes
    kept outside it, and the edited codes against the target's (inside the change, and everywhere)."""
    changed, pred = source != target, region.bool()
    tok, _ = token_metrics(pred, source, edited, target)  # the one scorer (rm-edit eval's rows too)
    return dict(
        tp=int((pred & changed).sum()), fp=int((pred & ~changed).sum()), fn=int((~pred & changed).sum()),
        **{k: tok[f"tok_{k}"] for k in ("precision", "recall", "iou", "kept_outside", "edit_accuracy")},
        token_accuracy=tok["tok_accuracy"],
    )


def count_replays(trajectory: list[dict] | None, mask_code: int) -> list[int]:
    """Per image: positions revealed to the very code they held when they were re-masked."""
    if not trajectory:
        return []
    rejected = torch.full_like(trajectory[0]["codes"], -1)
    counts = torch.zeros(trajectory[0]["codes"].shape[0], dtype=torch.long)
    for prev, cur in zip(trajectory, trajectory[1:]):
        rejected = torch.where(cur["remasked"], prev["codes"], rejected)
        revealed = (prev["codes"] == mask_code) & (cur["codes"] != mask_code)
        counts += (revealed & (cur["codes"] == rejected)).flatten(1).sum(-1)
        rejected = torch.where(revealed, -1, rejected)
    return counts.tolist()


def summarize(rows: list[dict], by_type: bool = True) -> dict:
    """Means over images, pooled (micro) precision / recall, and the same per edit type when rows have one."""
    keys = [k for k in TokenEditResult.__dataclass_fields__]
    out = {k: float(np.nanmean([r[k] for r in rows])) for k in keys}
    out["micro_precision"], out["micro_recall"] = micro_precision_recall(rows)
    out["n"] = len(rows)
    types = sorted({r.get("edit_type") for r in rows} - {None})
    if by_type and types:
        out["by_edit_type"] = {t: summarize([r for r in rows if r.get("edit_type") == t], by_type=False) for t in types}
    return out


def micro_precision_recall(rows: list[dict]) -> tuple[float, float]:
    """Token precision and recall pooled over images (micro): from the rows' summed tp / fp / fn (1.0 when
    there is nothing to find, or nothing was chosen)."""
    tp, fp, fn = (sum(r[k] for r in rows) for k in ("tp", "fp", "fn"))
    return (tp / (tp + fp) if tp + fp else 1.0), (tp / (tp + fn) if tp + fn else 1.0)

"""Edit localization: did the edit change the region it should, and only that region?

No public benchmark scores this, so the definitions live here (REFERENCE.md section 3):
the change map is the per-pixel max-channel ``|edit - source|``; thresholded, it is compared
with the ground-truth edit mask (True = should change).

Empty-set conventions (vacuous cases get the "perfect" value, so an empty mask or a no-op
edit is never silently dropped from an average):
  * precision = 1 when nothing changed (no false alarms),
  * recall = 1 when the mask is empty (nothing to find),
  * IoU = 1 when both prediction and mask are empty,
  * leakage = 0 when the mask covers the whole image (no outside to leak into),
  * AUROC = nan when the mask is all-True or all-False: a ranking needs both classes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torchmetrics.functional.classification import binary_auroc

from ._image import ImageLike, MaskLike, check_same_size, to_chw, to_mask

# Well above 8-bit rounding / JPEG noise (~1-3/255); VQ re-decoding noise can exceed it,
# which is why the threshold-free AUROC is reported alongside.
DEFAULT_THRESHOLD = 0.1

ArrayLike = np.ndarray | torch.Tensor


def change_map(edit: ImageLike, source: ImageLike) -> torch.Tensor:
    """``HxW`` float32 map of the per-pixel max over channels of ``|edit - source|``.

    Images follow the package convention (numpy/PIL ``HxWx3``, torch ``3xHxW``, floats in [0, 1]).
    """
    e, s = to_chw(edit), to_chw(source)
    check_same_size(e, s)
    return (e - s.to(e.device)).abs().amax(dim=0)


def _as_bool(grid: ArrayLike | MaskLike) -> torch.Tensor:
    return to_mask(grid).cpu()


def _set_scores(pred: torch.Tensor, gt: torch.Tensor) -> dict[str, float]:
    """Precision / recall / IoU / leakage of a predicted bool set against a ground-truth one."""
    if pred.shape != gt.shape:
        raise ValueError(f"shape mismatch: {tuple(pred.shape)} vs {tuple(gt.shape)}")
    tp = int((pred & gt).sum())
    fp = int((pred & ~gt).sum())
    fn = int((~pred & gt).sum())
    n_outside = int((~gt).sum())
    return {
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
        "iou": tp / (tp + fp + fn) if tp + fp + fn else 1.0,
        "leakage": fp / n_outside if n_outside else 0.0,
    }


def localization_scores(
    change: ArrayLike, gt_mask: MaskLike, threshold: float = DEFAULT_THRESHOLD
) -> dict[str, float]:
    """Pixel-level scores of a change map (``change > threshold``) against the edit mask.

    Returns ``precision``, ``recall``, ``iou``, ``leakage`` (= |changed & ~mask| / |~mask|)
    and the threshold-free ``auroc`` of the raw change values as mask-membership scores.
    """
    scores = torch.as_tensor(np.asarray(change) if not isinstance(change, torch.Tensor) else change)
    scores = scores.detach().float().cpu()
    gt = to_mask(gt_mask).cpu()
    if scores.shape != gt.shape:
        raise ValueError(f"change map {tuple(scores.shape)} and mask {tuple(gt.shape)} differ")
    out = _set_scores(scores > threshold, gt)
    if gt.all() or not gt.any():
        out["auroc"] = math.nan
    else:
        # Exact (thresholds=None) AUROC; ties count half, as in the Mann-Whitney statistic.
        out["auroc"] = float(binary_auroc(scores.flatten(), gt.flatten().long(), thresholds=None))
    return out


def downsample_mask(mask: MaskLike, grid_hw: tuple[int, int]) -> torch.Tensor:
    """Pixel mask -> token grid: a token counts as edited if any of its pixels is.

    "Any" rather than majority because a token that straddles the boundary must be
    regenerated for the edit to be expressible at all.
    """
    m = to_mask(mask).cpu().float()[None, None]
    return torch.nn.functional.adaptive_max_pool2d(m, grid_hw)[0, 0] > 0


def token_localization(remasked: ArrayLike, gt_changed: ArrayLike) -> dict[str, float]:
    """Token-level precision / recall / IoU / leakage of the remasked set vs the GT change."""
    return _set_scores(_as_bool(remasked), _as_bool(gt_changed))


def changed_tokens(source_codes: ArrayLike, target_codes: ArrayLike) -> torch.Tensor:
    """Bool ``(h, w)`` grid of positions where two token grids disagree."""
    s, t = torch.as_tensor(source_codes), torch.as_tensor(target_codes)
    if s.shape != t.shape:
        raise ValueError(f"token grids differ in shape: {tuple(s.shape)} vs {tuple(t.shape)}")
    return (s != t).cpu()


def kept_outside_fraction(
    source_codes: ArrayLike, edited_codes: ArrayLike, gt_changed: ArrayLike
) -> float:
    """Fraction of tokens outside the GT change whose edited code equals the source's.

    1.0 when there are no outside tokens (nothing could have been lost).
    """
    same = ~changed_tokens(source_codes, edited_codes)
    outside = ~_as_bool(gt_changed)
    if outside.shape != same.shape:
        raise ValueError(f"gt grid {tuple(outside.shape)} vs token grid {tuple(same.shape)}")
    n = int(outside.sum())
    return int((same & outside).sum()) / n if n else 1.0


def token_metrics(remasked: ArrayLike | None, source_codes: ArrayLike | None = None,
                  edited_codes: ArrayLike | None = None, target_codes: ArrayLike | None = None,
                  mask_grid: ArrayLike | None = None) -> tuple[dict[str, float], str | None]:
    """The one token scorer (``tok_*`` keys of every table): the re-masked set against the ground-truth
    change, the codes where source and target differ when a target exists ("codes"), else the mask pooled to
    the grid ("mask"); returns the scores and which ground truth was used (None: none, and no scores).
    ``tok_kept_outside`` needs the source's and edited codes; ``tok_edit_accuracy`` / ``tok_accuracy`` the
    target's."""
    if target_codes is not None:
        gt, kind = changed_tokens(source_codes, target_codes), "codes"
    elif mask_grid is not None:
        gt, kind = _as_bool(mask_grid), "mask"
    else:
        return {}, None
    out = {} if remasked is None else {f"tok_{k}": v for k, v in token_localization(remasked, gt).items()}
    if source_codes is not None and edited_codes is not None:
        out["tok_kept_outside"] = kept_outside_fraction(source_codes, edited_codes, gt)
    if target_codes is not None:
        edited, target = torch.as_tensor(edited_codes), torch.as_tensor(target_codes)
        out["tok_edit_accuracy"] = float((edited[gt] == target[gt]).float().mean()) if gt.any() else 1.0
        out["tok_accuracy"] = float((edited == target).float().mean())
    return out, kind

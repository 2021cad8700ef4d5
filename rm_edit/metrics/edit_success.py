"""Pixel edit success: did the edit land, and did nothing else move?

Definition (source S, output O, target T: float images in [0, 1], same size, ``HxWx3``):

* **changed** = the pixels where T differs from S in any channel (exact inequality).
* (a) **the change is made**: over the changed pixels (all three channels), the output is at least 4x closer
  to the target than the source was: ``mean|O - T| <= 0.25 * mean|S - T|``. The figure reported is
  ``changed_error_ratio = mean|O - T| / mean|S - T|`` over the changed pixels (success needs <= 0.25); when no
  pixel changed, (a) holds and the ratio is reported as 0.0.
* (b) **nothing far away moved**: ``far`` = the pixels more than 2 px away from the change (the changed mask
  dilated by a 5x5 square, i.e. Chebyshev distance <= 2, is excluded). A far pixel *moved* when
  ``max over channels |O - S| > 0.15``. The figure reported is ``far_changed_fraction`` = moved far pixels /
  far pixels (success needs <= 0.01); when there is no far pixel it is 0.0.
* An edit is a **success** when (a) and (b) both hold.

It judges an edit against an exact target (the shapes world, synthetic manifests). On photographs, where the
target differs from the source everywhere (re-encoding noise), (b) has nothing to judge; use it there only
with lossless targets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ._image import ImageLike, check_same_size

ERROR_RATIO_MAX = 0.25  # (a): the output's error on the changed pixels is at most a quarter of the source's
FAR_MARGIN_PX = 2  # (b): pixels within this Chebyshev distance of the change are not judged
FAR_DIFF_THRESHOLD = 0.15  # (b): a far pixel moved when some channel differs from the source by more
FAR_FRACTION_MAX = 0.01  # (b): at most this fraction of the far pixels may move

# Row keys written by the metric suite (``edit_success`` is 1.0 / 0.0 so that its mean is the success rate).
SUCCESS_KEYS = ("edit_success", "changed_error_ratio", "far_changed_fraction")


@dataclass(frozen=True)
class EditSuccess:
    """One edit's verdict and the two figures it rests on."""

    success: bool
    changed_error_ratio: float  # mean|O-T| / mean|S-T| over the changed pixels (<= 0.25 for success)
    far_changed_fraction: float  # moved pixels / pixels more than 2 px from the change (<= 0.01)

    def as_row(self) -> dict[str, float]:
        return {"edit_success": 1.0 if self.success else 0.0,
                "changed_error_ratio": self.changed_error_ratio,
                "far_changed_fraction": self.far_changed_fraction}


def _rgb(image: ImageLike, what: str) -> torch.Tensor:
    """``3xHxW`` float64 in [0, 1]; 8-bit input is read as k/255 in double so hand-worked thresholds hold."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        scale = 1.0 if np.issubdtype(image.dtype, np.floating) else 255.0
        image = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float64) / scale)
        image = image.permute(2, 0, 1) if image.ndim == 3 else image
    elif isinstance(image, torch.Tensor):
        image = image.double() if image.is_floating_point() else image.double() / 255.0
    else:
        raise TypeError(f"{what}: unsupported image type {type(image).__name__}")
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"{what} must be an RGB image (HxWx3 array or 3xHxW tensor), got shape {tuple(image.shape)}")
    return image


def edit_success(source: ImageLike, output: ImageLike, target: ImageLike) -> EditSuccess:
    """Judge one edit (see the module docstring for the exact definition)."""
    s, o, t = _rgb(source, "source"), _rgb(output, "output"), _rgb(target, "target")
    check_same_size(s, o, "source and output")
    check_same_size(s, t, "source and target")
    changed = (t != s).any(dim=0)
    if changed.any():
        source_error = (s - t).abs()[:, changed].mean()
        output_error = (o - t).abs()[:, changed].mean()
        ratio = float(output_error / source_error)
    else:
        ratio = 0.0
    near = torch.nn.functional.max_pool2d(changed[None, None].double(), kernel_size=2 * FAR_MARGIN_PX + 1,
                                          stride=1, padding=FAR_MARGIN_PX)[0, 0] > 0
    far = ~near
    moved = (o - s).abs().amax(dim=0) > FAR_DIFF_THRESHOLD
    n_far = int(far.sum())
    fraction = float((moved & far).sum()) / n_far if n_far else 0.0
    return EditSuccess(ratio <= ERROR_RATIO_MAX and fraction <= FAR_FRACTION_MAX, ratio, fraction)


def edit_success_rates(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Success rate overall and per edit type from rows with ``edit_success`` (bool or 1/0; None = not judged,
    left out) and optionally ``edit_type`` (a row without one counts only overall). Returns
    ``{"overall": {...}, "by_edit_type": {type: {...}}}``, each ``{"rate": successes / n or None,
    "successes": int, "n": int}``; types sorted by name."""
    overall = [0, 0]
    by_type: dict[str, list[int]] = {}
    for row in rows:
        verdict = row.get("edit_success")
        if verdict is None:
            continue
        tallies = [overall]
        if row.get("edit_type") is not None:
            tallies.append(by_type.setdefault(str(row["edit_type"]), [0, 0]))
        for tally in tallies:
            tally[0] += int(bool(verdict))
            tally[1] += 1

    def rate(tally: list[int]) -> dict[str, Any]:
        return {"rate": tally[0] / tally[1] if tally[1] else None, "successes": tally[0], "n": tally[1]}

    return {"overall": rate(overall), "by_edit_type": {t: rate(c) for t, c in sorted(by_type.items())}}

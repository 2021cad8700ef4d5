"""Per-sample metric suite that degrades gracefully when backbones or inputs are missing.

``EditMetrics.compute`` returns one flat dict per sample: metric name -> float, or ``None``
when it could not be computed, plus ``"reasons"``: metric name -> why it is ``None``. The dict
is JSON-serialisable (jsonl logs) and feeds straight into ``aggregate``.

Metric names:
  edit_success, changed_error_ratio, far_changed_fraction  pixel edit success vs the target (1.0 / 0.0; the
                                                          mean is the success rate; see ``edit_success``)
  pie_psnr, pie_lpips_x1e3, pie_mse_x1e4, pie_ssim_x1e2   PIE-Bench background, reported units
  bg_psnr, bg_lpips, bg_mse, bg_ssim                      background-area-normalised, raw
  loc_precision, loc_recall, loc_iou, loc_leakage, loc_auroc   pixel edit localization
  target_l1, target_l2, target_psnr, clip_i, dino         vs the ground-truth target
  clip_score, clip_score_edit_region, clip_directional    vs the text (PIE-Bench units for scores)
  clip_t                                                  MagicBrush CLIP-T: raw cosine, ViT-B/32, target caption
  tok_precision, tok_recall, tok_iou, tok_leakage, tok_kept_outside   only when token grids given
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from ._image import ImageLike, MaskLike, to_chw, to_mask
from .availability import MetricUnavailable
from .background import LPIPS, Mode, background_metrics, scale_pie_bench
from .edit_success import SUCCESS_KEYS, edit_success
from .localization import (
    DEFAULT_THRESHOLD,
    ArrayLike,
    change_map,
    downsample_mask,
    localization_scores,
    token_metrics,
)
from .quality import (
    CLIP_I_WEIGHTS_ENV,
    DEFAULT_CLIP_I_MODEL,
    DEFAULT_CLIP_SCORE_MODEL,
    DEFAULT_DINO_MODEL,
    ClipScorer,
    DinoScorer,
    pixel_metrics,
)

Values = dict[str, Any]

_PIE = {"psnr": "pie_psnr", "lpips": "pie_lpips_x1e3", "mse": "pie_mse_x1e4", "ssim": "pie_ssim_x1e2"}
_BG = {k: f"bg_{k}" for k in ("psnr", "lpips", "mse", "ssim")}
_LOC = {k: f"loc_{k}" for k in ("precision", "recall", "iou", "leakage", "auroc")}
_TOK = {k: f"tok_{k}" for k in ("precision", "recall", "iou", "leakage")}
_TARGET = {"l1": "target_l1", "l2": "target_l2", "psnr": "target_psnr"}


class EditMetrics:
    """Computes every metric whose backbone and inputs are present; the rest become ``None``.

    Backbones are passed in ready-built (``None`` = unavailable); ``unavailable`` maps a backbone
    name (``lpips``, ``clip``, ``clip_i``, ``dino``) to the reason it is missing.
    ``from_local`` builds them from local weights and fills the reasons.
    """

    def __init__(
        self,
        lpips: LPIPS | None = None,
        clip: ClipScorer | None = None,
        clip_i: ClipScorer | None = None,
        dino: DinoScorer | None = None,
        unavailable: Mapping[str, str] | None = None,
        threshold: float = DEFAULT_THRESHOLD,
    ) -> None:
        self.lpips, self.clip, self.clip_i, self.dino = lpips, clip, clip_i, dino
        self.unavailable = dict(unavailable or {})
        self.threshold = threshold

    @classmethod
    def from_local(
        cls,
        clip_weights: str | os.PathLike[str] | None = None,
        clip_i_weights: str | os.PathLike[str] | None = None,
        dino_weights: str | os.PathLike[str] | None = None,
        lpips_pretrained: bool = True,
        device: str = "cpu",
        clip_model: str = DEFAULT_CLIP_SCORE_MODEL,
        clip_i_model: str = DEFAULT_CLIP_I_MODEL,
        dino_model: str = DEFAULT_DINO_MODEL,
        threshold: float = DEFAULT_THRESHOLD,
        download: bool = False,
        offline: bool = False,
        only: Collection[str] | None = None,
    ) -> EditMetrics:
        """Build whatever the local weights allow (arguments, then environment variables); with
        ``download`` the rest from the libraries' caches (filled when online; ``offline``: caches only).
        ``only``: build just these backbones (``lpips``, ``clip``, ``clip_i``, ``dino``; e.g. those a
        benchmark reports), so no weights are looked for, or fetched, for the others."""
        web = dict(download=download, offline=offline)
        builders: dict[str, Callable[[], Any]] = {
            "lpips": lambda: LPIPS("squeeze", pretrained=lpips_pretrained, device=device, **web),
            "clip": lambda: ClipScorer(clip_model, clip_weights, device=device, **web),
            "clip_i": lambda: ClipScorer(
                clip_i_model, clip_i_weights, device=device,
                env_var=CLIP_I_WEIGHTS_ENV, flag="--clip-i-weights", **web,
            ),
            "dino": lambda: DinoScorer(dino_model, dino_weights, device=device, **web),
        }
        built: dict[str, Any] = {}
        reasons: dict[str, str] = {}
        for name, build in builders.items():
            if only is not None and name not in only:
                built[name], reasons[name] = None, "not reported for this benchmark"
                continue
            try:
                built[name] = build()
            except MetricUnavailable as exc:
                built[name], reasons[name] = None, exc.reason
        return cls(**built, unavailable=reasons, threshold=threshold)

    @classmethod
    def from_pretrained(cls, offline: bool = False, **kwargs: Any) -> EditMetrics:
        """Local files where given, else the published weights through each library's download-and-cache
        (torchvision, open_clip and timm on the Hugging Face cache); ``offline`` (or ``HF_HUB_OFFLINE=1``):
        caches only. What cannot be had is reported n/a with its reason."""
        return cls.from_local(download=True, offline=offline, **kwargs)

    def _why(self, backbone: str) -> str:
        return self.unavailable.get(backbone, f"{backbone} backbone not configured")

    def compute(
        self,
        source: ImageLike,
        edit: ImageLike,
        target: ImageLike | None = None,
        mask: MaskLike | None = None,
        instruction: str | None = None,
        source_caption: str | None = None,
        target_caption: str | None = None,
        remasked: ArrayLike | None = None,
        source_codes: ArrayLike | None = None,
        edited_codes: ArrayLike | None = None,
    ) -> Values:
        """One sample's metrics. ``mask``: True = edit region. The CLIP score uses
        ``target_caption`` (PIE-Bench's editing prompt), else ``instruction``.
        Token grids (``remasked``, codes) are scored against ``mask`` pooled to their grid."""
        values: Values = {}
        reasons: dict[str, str] = {}

        def fill(names: Iterable[str], missing: str | None, fn: Callable[[], Mapping[str, Any]]) -> None:
            names = list(names)
            if missing is None:
                try:
                    values.update(fn())
                    return
                except MetricUnavailable as exc:
                    missing = exc.reason
            for n in names:
                values[n], reasons[n] = None, missing

        src, edt = to_chw(source), to_chw(edit)
        m = to_mask(mask).cpu() if mask is not None else None
        no_mask = "no edit mask" if m is None else None
        no_lpips = None if self.lpips is not None else self._why("lpips")

        modes: tuple[tuple[Mode, dict[str, str]], ...] = (("pie-bench", _PIE), ("masked", _BG))
        for mode, names in modes:
            fill(names.values(), no_mask, lambda: _background(edt, src, m, mode, names, self.lpips))
            if no_mask is None and no_lpips is not None:
                values[names["lpips"]], reasons[names["lpips"]] = None, no_lpips

        fill(_LOC.values(), no_mask, lambda: {
            _LOC[k]: v for k, v in localization_scores(change_map(edt, src), m, self.threshold).items()
        })

        no_target = "no target image" if target is None else None
        fill(SUCCESS_KEYS, no_target, lambda: _edit_success(source, edit, target))  # 8-bit read exactly
        fill(_TARGET.values(), no_target,
             lambda: {_TARGET[k]: v for k, v in pixel_metrics(edt, target).items()})
        fill(["clip_i"], no_target or (None if self.clip_i else self._why("clip_i")),
             lambda: {"clip_i": self.clip_i.image_similarity(edt, target)})
        fill(["dino"], no_target or (None if self.dino else self._why("dino")),
             lambda: {"dino": self.dino.image_similarity(edt, target)})

        no_clip = None if self.clip is not None else self._why("clip")
        text = target_caption or instruction
        no_text = "no target caption or instruction" if text is None else None
        fill(["clip_score"], no_text or no_clip, lambda: {"clip_score": self.clip.clip_score(edt, text)})
        fill(["clip_score_edit_region"], no_text or no_mask or no_clip,
             lambda: {"clip_score_edit_region": self.clip.clip_score(edt, text, m)})
        # MagicBrush's CLIP-T: raw cosine of CLIP ViT-B/32 (the CLIP-I model) with the target's caption.
        fill(["clip_t"], ("no target caption" if not target_caption else None) or
             (None if self.clip_i else self._why("clip_i")),
             lambda: {"clip_t": self.clip_i.text_similarity(edt, target_caption)})
        no_caps = None if source_caption and target_caption else "needs source and target captions"
        fill(["clip_directional"], no_caps or no_clip, lambda: {
            "clip_directional": self.clip.directional_similarity(src, edt, source_caption, target_caption)
        })

        codes = source_codes is not None and edited_codes is not None
        if remasked is not None or codes:  # the one token scorer, against the mask pooled to the token grid
            grid = tuple((remasked if remasked is not None else source_codes).shape)
            names = [*(_TOK.values() if remasked is not None else ()), *(["tok_kept_outside"] if codes else ())]
            fill(names, no_mask, lambda: token_metrics(remasked, source_codes if codes else None, edited_codes,
                                                       mask_grid=downsample_mask(m, grid))[0])

        values["reasons"] = reasons
        return values


def _edit_success(source: ImageLike, edit: ImageLike, target: ImageLike) -> dict[str, float]:
    try:
        return edit_success(source, edit, target).as_row()
    except ValueError as exc:  # e.g. a target of another size: not judged, with the reason
        raise MetricUnavailable(f"edit success: {exc}") from None


def _background(
    edit: ImageLike, source: ImageLike, mask: MaskLike, mode: Mode, names: Mapping[str, str],
    lpips: LPIPS | None,
) -> dict[str, float | None]:
    raw = background_metrics(edit, source, mask, mode=mode, lpips_model=lpips)
    scaled = scale_pie_bench(raw) if mode == "pie-bench" else dict(raw)
    return {names[k]: v for k, v in scaled.items()}


def aggregate(samples: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float | int | None]]:
    """Per metric: ``mean`` over finite values, ``count`` of them, and how many were
    ``n_inf`` (e.g. PSNR of a pixel-identical background) or ``n_missing`` (None / nan).

    Infinite values are kept out of the mean (it would be inf) but counted, so a table can
    say "PSNR 31.2 (12 of 700 identical)".
    """
    stats: dict[str, dict[str, Any]] = {}
    for sample in samples:
        for key, v in sample.items():
            if key == "reasons":
                continue
            s = stats.setdefault(key, {"sum": 0.0, "count": 0, "n_inf": 0, "n_missing": 0})
            if v is None or (isinstance(v, float) and math.isnan(v)):
                s["n_missing"] += 1
            elif math.isinf(v):
                s["n_inf"] += 1
            else:
                s["sum"] += float(v)
                s["count"] += 1
    return {
        k: {
            "mean": s["sum"] / s["count"] if s["count"] else None,
            "count": s["count"],
            "n_inf": s["n_inf"],
            "n_missing": s["n_missing"],
        }
        for k, s in stats.items()
    }

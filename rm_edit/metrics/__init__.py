"""Image-editing metrics: pixel edit success, localization, background preservation, quality, and a suite.

Images: numpy/PIL are ``HxWx3``, torch tensors ``3xHxW``, floats in [0, 1] (uint8 is /255).
Masks: ``HxW``, True = edit region. Weights are only ever read from local files; a missing
backbone raises ``MetricUnavailable`` (the suite records it as ``None`` plus a reason).
"""

from .availability import MetricUnavailable
from .background import (
    LPIPS,
    PIE_BENCH_SCALE,
    background_metrics,
    decode_pie_bench_rle,
    scale_pie_bench,
)
from .edit_success import EditSuccess, edit_success, edit_success_rates
from .localization import (
    DEFAULT_THRESHOLD,
    change_map,
    changed_tokens,
    downsample_mask,
    kept_outside_fraction,
    localization_scores,
    token_localization,
)
from .quality import ClipScorer, DinoScorer, pixel_metrics
from .suite import EditMetrics, aggregate

__all__ = [
    "DEFAULT_THRESHOLD",
    "LPIPS",
    "PIE_BENCH_SCALE",
    "ClipScorer",
    "DinoScorer",
    "EditMetrics",
    "EditSuccess",
    "MetricUnavailable",
    "aggregate",
    "background_metrics",
    "change_map",
    "changed_tokens",
    "decode_pie_bench_rle",
    "downsample_mask",
    "edit_success",
    "edit_success_rates",
    "kept_outside_fraction",
    "localization_scores",
    "pixel_metrics",
    "scale_pie_bench",
    "token_localization",
]

"""One record type for an edit example, wherever it comes from: a manifest line, a dataset row, a benchmark
sample. Everything that drives a pipeline over examples (``rm_edit.batch_edits``) reads these fields."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class EditRecord:
    """One editing example. Images are paths (a manifest: read when needed, absolute once loaded) or loaded
    PIL images (datasets, benchmarks); ``mask`` (white / True = the region that may change) a path or a bool
    (H, W) array; ``captions`` (source caption or None, target caption); ``image_path`` the relative path a
    benchmark's edit is written under (any image suffix); ``metadata`` a manifest row's optional extra facts
(a JSON object, e.g. a Sudoku example's task, wrong digits and empty cells), carried through untouched."""

    id: str
    source: Path | Image.Image
    instruction: str
    target: Path | Image.Image | None = None
    mask: Path | np.ndarray | None = None
    edit_type: str | None = None
    captions: tuple[str | None, str] | None = None
    image_path: str = ""
    metadata: dict | None = None

"""What the web demo does with one click, without the web page: check the input, edit, and the pictures the
page shows (the edit, the chosen region as an overlay, the turns as a strip). Kept apart from Gradio so it is
tested as plain Python and the page only lays it out."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import PIL.Image

DEMO_MAX_PIXELS = 1024 * 1024  # larger uploads are refused with one line (the shipped model knows 64x64)
OVERLAY_TINT = (255, 0, 80)


@dataclass
class DemoResult:
    """One click's answer: the edit and its pictures, or ``message`` alone when the input was refused."""

    message: str
    edit: PIL.Image.Image | None = None
    overlay: PIL.Image.Image | None = None
    strip: PIL.Image.Image | None = None
    info: dict[str, Any] = field(default_factory=dict)


def painted_mask(editor_value: Any, size: tuple[int, int]) -> np.ndarray | None:
    """The brush strokes of a Gradio ImageEditor value ({"layers": [RGBA arrays], ...}) as an (H, W) bool mask
    at ``size`` (W, H): white = may change. None when nothing is painted."""
    layers = (editor_value or {}).get("layers") if isinstance(editor_value, dict) else None
    painted = None
    for layer in layers or ():
        arr = np.asarray(layer)
        if arr.ndim == 3 and arr.shape[2] == 4:
            hit = arr[..., 3] > 0
            painted = hit if painted is None else painted | hit
    if painted is None or not painted.any():
        return None
    img = PIL.Image.fromarray(painted.astype(np.uint8) * 255, "L").resize(size, PIL.Image.Resampling.NEAREST)
    return np.asarray(img) > 0


def region_overlay(image: PIL.Image.Image, region: np.ndarray, min_side: int = 256) -> PIL.Image.Image:
    """The edit with the chosen region tinted, scaled up (nearest) so a 64-px world image is visible."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    tint = np.asarray(OVERLAY_TINT, dtype=np.float32)
    out = np.where(region[..., None], 0.45 * rgb + 0.55 * tint, rgb).round().astype(np.uint8)
    scale = max(1, -(-min_side // min(out.shape[:2])))
    return PIL.Image.fromarray(out).resize((out.shape[1] * scale, out.shape[0] * scale), PIL.Image.Resampling.NEAREST)


def check_upload(image: PIL.Image.Image | None, max_pixels: int = DEMO_MAX_PIXELS) -> str | None:
    """One line when the upload cannot be edited here, else None."""
    if image is None:
        return "upload an image (or pick an example) first"
    w, h = image.size
    if w * h > max_pixels:
        return f"the image is {w}x{h} ({w * h:,} pixels); this demo takes at most {max_pixels:,} pixels"
    return None


def demo_edit(pipe, image: PIL.Image.Image | None, instruction: str, mask: np.ndarray | None = None, *,
              seed: int = 0, max_pixels: int = DEMO_MAX_PIXELS, **call_kwargs) -> DemoResult:
    """Edit as the page's button does (the CLI's seed 0, ``call_kwargs`` the advanced settings); refusals
    (an over-size image, unknown words, no words) come back as ``message``, never as a traceback."""
    import torch

    from .edit import filmstrip, region_summary, trajectory_frames

    refused = check_upload(image, max_pixels)
    if refused:
        return DemoResult(refused)
    if not (instruction or "").strip():
        return DemoResult("type an instruction, e.g. one of the examples")
    start = time.perf_counter()
    try:
        out = pipe(image, instruction, mask_image=mask, generator=torch.Generator().manual_seed(seed),
                   return_trajectory=True, **call_kwargs)
    except ValueError as exc:
        return DemoResult(str(exc).splitlines()[0])
    seconds = time.perf_counter() - start
    edit = out.images[0]
    strip = filmstrip(trajectory_frames(pipe, out.trajectory, item=0)) if out.trajectory else None
    summary = region_summary(out, 0)
    message = f"{summary}; {seconds:.2f} s"
    if out.unchanged_because and out.unchanged_because[0]:
        message = f"nothing to change: {out.unchanged_because[0]}"
    elif not out.edit_region_tokens[0].any():
        message = f"nothing to change: the model found nothing to edit for this instruction ({summary})"
    return DemoResult(message, edit, region_overlay(edit, out.edit_masks[0]), strip,
                      {"forward_passes": out.num_forward_passes, "seconds": seconds})

"""Input normalisation shared by the metric modules.

Convention (one rule, by container type):
  * ``numpy.ndarray`` / ``PIL.Image`` are channels-last: ``HxWx3`` (or ``HxW``).
  * ``torch.Tensor`` is channels-first: ``3xHxW`` (or ``HxW``).
Integer images are read as 8-bit (``/255``); float images must already be in [0, 1].
Everything is converted to a float32 ``CxHxW`` tensor internally.

Masks are ``HxW`` and True / 1 / white marks the EDIT region (PIE-Bench and MagicBrush both
use this orientation); ``background = ~mask``.
"""

from __future__ import annotations

from typing import Union

import numpy as np
import torch
from PIL import Image

ImageLike = Union[np.ndarray, torch.Tensor, Image.Image]
MaskLike = Union[np.ndarray, torch.Tensor, Image.Image]


def to_chw(image: ImageLike, device: torch.device | str | None = None) -> torch.Tensor:
    """Return a float32 ``CxHxW`` tensor in [0, 1] (C is 1 or 3)."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(image))
        t = t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)
    elif isinstance(image, torch.Tensor):
        t = image.unsqueeze(0) if image.ndim == 2 else image
    else:
        raise TypeError(f"unsupported image type {type(image).__name__}")
    if t.ndim != 3 or t.shape[0] not in (1, 3):
        raise ValueError(f"expected HxWx3 numpy or 3xHxW tensor, got shape {tuple(image.shape)}")
    if not t.is_floating_point():
        t = t.float() / 255.0
    t = t.float().contiguous()  # torchmetrics' MSE uses .view()
    return t.to(device) if device is not None else t


def to_mask(mask: MaskLike, device: torch.device | str | None = None) -> torch.Tensor:
    """Return a bool ``HxW`` tensor; 0/1, 0/255 and float masks are thresholded at half range."""
    if isinstance(mask, Image.Image):
        mask = np.asarray(mask.convert("L"))
    t = torch.as_tensor(np.asarray(mask)) if not isinstance(mask, torch.Tensor) else mask
    if t.ndim == 3:  # HxWxC (numpy) or CxHxW (tensor) masks: any channel set
        t = t.any(dim=-1) if not isinstance(mask, torch.Tensor) else t.any(dim=0)
    if t.ndim != 2:
        raise ValueError(f"mask must be HxW, got shape {tuple(t.shape)}")
    if t.dtype == torch.bool:
        out = t
    elif t.dtype == torch.uint8 and int(t.max()) > 1:  # 8-bit 0/255 mask, not a 0/1 one
        out = t > 127
    else:
        out = t > 0.5
    return out.to(device) if device is not None else out


def check_same_size(a: torch.Tensor, b: torch.Tensor, what: str = "images") -> None:
    if a.shape[-2:] != b.shape[-2:]:
        raise ValueError(f"{what} differ in size: {tuple(a.shape[-2:])} vs {tuple(b.shape[-2:])}")


def to_pil(image: ImageLike) -> Image.Image:
    """8-bit RGB PIL image (what CLIP-style preprocessors expect)."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    t = to_chw(image).clamp(0, 1)
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    arr = (t.permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)
    return Image.fromarray(arr)

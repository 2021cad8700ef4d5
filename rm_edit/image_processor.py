"""Pixels in and out of an editing call: crop / resize for the VQ, user masks to token regions, and back to
the input's size with optional paste-back (feathered), as diffusers' ``VaeImageProcessor`` does for latents.

Paste-back's promise: every pixel outside the returned region mask is the source's own, bit for bit. The
mask is exactly the composited region (every pixel with a non-zero blend weight, feathered ones included).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config

from .image_inputs import InputMode, as_pil_images, restore_mode, split_mode
from .vq import VQCrop, crop_for_vq, preprocess_image, restore_input_size


@dataclass
class PreparedImages:
    pixels: torch.Tensor  # (B, 3, H, W) in [0, 1]: the crops the VQ encodes
    crops: list[VQCrop]
    originals: list[PIL.Image.Image]  # the inputs, RGB
    modes: list[InputMode] | None = None  # each input's own mode / alpha, given back to its edit

    @property
    def grid(self) -> tuple[int, int]:
        """(cells across, cells down), shared by every image of the call."""
        return self.crops[0].grid


def grown_region(region_tokens: torch.Tensor, reach: int = 1) -> torch.Tensor:
    """Tokens whose decoded pixels may differ from the source's: the region grown by the decoder's reach."""
    x = region_tokens.float()[None, None]
    return F.max_pool2d(x, 2 * reach + 1, stride=1, padding=reach)[0, 0].bool()


def feathered_alpha(region: np.ndarray, radius: int) -> np.ndarray:
    """A soft blend weight that is exactly 0 outside ``region`` and ramps up to 1 inside over ``radius`` px."""
    x = torch.from_numpy(region.astype(np.float32))[None, None]
    k = 2 * radius + 1
    inside = -F.max_pool2d(-F.pad(x, (radius,) * 4, value=1.0), k, stride=1)  # erosion: distance-ish ramp
    soft = F.avg_pool2d(F.pad(inside, (radius,) * 4, value=0.0), k, stride=1)
    return (soft[0, 0].numpy() * region).clip(0.0, 1.0)


def seam_ring(region: np.ndarray, width: int = 2) -> np.ndarray:
    """(H, W) bool: the pixels within ``width`` px of ``region``'s border, on both sides (a 3x3-step ring)."""
    x = torch.from_numpy(np.asarray(region, dtype=np.float32))[None, None]
    k = 2 * width + 1
    grown = F.max_pool2d(x, k, stride=1, padding=width)
    shrunk = -F.max_pool2d(-F.pad(x, (width,) * 4, value=1.0), k, stride=1)
    return (grown > 0)[0, 0].numpy() & ~(shrunk > 0)[0, 0].numpy()


def seam_error(edit: PIL.Image.Image, source: PIL.Image.Image, region: np.ndarray, width: int = 2) -> float:
    """Mean |edit - source| (0-1 scale, over channels) on the ``width``-px ring around ``region``: how visible
    the border of a pasted-back edit is (0: the edit meets the source with no step)."""
    ring = seam_ring(region, width)
    if not ring.any():
        return 0.0
    diff = np.abs(np.asarray(edit.convert("RGB"), np.float32) - np.asarray(source.convert("RGB"), np.float32))
    return float(diff[ring].mean() / 255.0)


class EditImageProcessor(ConfigMixin):
    """``crop_multiple``: pixels per grid cell the crop is cut to (the VQ's downsampling, or Lumina-DiMOO's
    32); ``max_crop_cells``: larger images are resized down to at most that many cells first."""

    config_name = "image_processor.json"

    @register_to_config
    def __init__(self, crop_multiple: int = 8, max_crop_cells: int = 64, fill_budget: bool = False):
        # fill_budget: resize every input up or down onto the crop-size frontier (Lumina-DiMOO's rule).
        super().__init__()

    def crop(self, width: int, height: int) -> VQCrop:
        """Where a ``width`` x ``height`` input is resized and cropped to (its grid decides what batches together)."""
        c = self.config
        return crop_for_vq(width, height, c.crop_multiple, c.max_crop_cells, fill_budget=c.fill_budget)

    def preprocess(self, images: Any) -> PreparedImages:
        """Images in any form :func:`~rm_edit.image_inputs.as_pil_images` takes -> the crops to encode."""
        tensors, crops, originals, modes = [], [], [], []
        for image in as_pil_images(images):
            image, mode = split_mode(image)
            modes.append(mode)
            x, crop = preprocess_image(image, self.config.crop_multiple, self.config.max_crop_cells,
                                       fill_budget=self.config.fill_budget)
            tensors.append(x)
            crops.append(crop)
            originals.append(image)
        if len({c.grid for c in crops}) != 1:
            raise ValueError(f"images of one call must share a size after cropping, got grids {sorted({c.grid for c in crops})}")
        return PreparedImages(torch.cat(tensors), crops, originals, modes)

    def region_tokens(self, mask_image: Any, crops: list[VQCrop], h: int, w: int) -> torch.Tensor | None:
        """A user mask (white = may change; one, or one per image) -> (B, h*w) token region: a token is
        inside if any of its pixels is."""
        if mask_image is None:
            return None
        masks = mask_image if isinstance(mask_image, list) else [mask_image] * len(crops)
        if len(masks) != len(crops):
            raise ValueError(f"got {len(masks)} masks for {len(crops)} images")
        region = []
        for m, crop in zip(masks, crops):
            m = m if isinstance(m, PIL.Image.Image) else PIL.Image.fromarray((np.asarray(m) > 0).astype(np.uint8) * 255)
            m = m.convert("L")
            if m.size != crop.input_size:
                raise ValueError(f"mask size {m.size} != image size {crop.input_size}")
            m = m.resize(crop.resized_size, PIL.Image.Resampling.NEAREST).crop(crop.box)
            t = torch.from_numpy(np.asarray(m) > 127).float()[None, None]
            region.append(F.adaptive_max_pool2d(t, (h, w)).bool().reshape(-1))
        return torch.stack(region)

    @staticmethod
    def tokens_to_pixels(tokens: torch.Tensor, crop: VQCrop) -> np.ndarray:
        """(h, w) token mask -> (H, W) bool at the input image's size (False outside the crop)."""
        # Pixels per code from the crop box, not crop.multiple: a crop cell may hold several codes (Lumina-DiMOO:
        # 32 px cells, 16x VQ, so 2x2 codes per cell).
        l, t, r, b = crop.box
        cell_h, cell_w = (b - t) // tokens.shape[0], (r - l) // tokens.shape[1]
        crop_mask = tokens.repeat_interleave(cell_h, 0).repeat_interleave(cell_w, 1).numpy().astype(np.uint8) * 255
        canvas = PIL.Image.new("L", crop.resized_size, 0)
        canvas.paste(PIL.Image.fromarray(crop_mask), crop.box[:2])
        return np.asarray(canvas.resize(crop.input_size, PIL.Image.Resampling.NEAREST)) > 127

    def paste_back_alpha(self, region_tokens: torch.Tensor, crop: VQCrop) -> np.ndarray:
        """(H, W) blend weight of the edit at the input's size: the region grown by the decoder's reach, feathered."""
        grown = self.tokens_to_pixels(grown_region(region_tokens), crop)
        return feathered_alpha(grown, radius=max(1, crop.multiple // 4))

    def region_masks(self, region_tokens: torch.Tensor, prepared: PreparedImages, paste_back: bool = False) -> list[np.ndarray]:
        """Per image, the (H, W) bool region :meth:`postprocess` returns, without decoding anything."""
        if paste_back:
            return [self.paste_back_alpha(region_tokens[i], c) > 0 for i, c in enumerate(prepared.crops)]
        return [self.tokens_to_pixels(region_tokens[i], c) for i, c in enumerate(prepared.crops)]

    def postprocess(self, decoded: torch.Tensor, prepared: PreparedImages, region_tokens: torch.Tensor,
                    paste_back: bool = False, output_type: str = "pil") -> tuple[Any, list[np.ndarray]]:
        """Decoded crops (B, 3, h, w) -> (images at the inputs' sizes, region masks (H, W) bool).

        The masks are the token region at pixel size; with ``paste_back``, the composited region instead
        (every pixel the edit touches), so outside it each pixel is the source's. Each edit comes back in its
        input's mode (grayscale, alpha untouched); "np" / "pt" arrays have the channels of that mode when
        every input shares it (1 grey, 2 grey + alpha, 3 RGB, 4 RGBA), else RGB.
        """
        results, masks = [], []
        for i, crop in enumerate(prepared.crops):
            original = prepared.originals[i]
            edited = restore_input_size(original, decoded[i], crop)
            if paste_back:
                alpha = self.paste_back_alpha(region_tokens[i], crop)
                src = np.asarray(original, dtype=np.float32)
                mixed = alpha[..., None] * np.asarray(edited, dtype=np.float32) + (1 - alpha[..., None]) * src
                edited = PIL.Image.fromarray(np.round(mixed).clip(0, 255).astype(np.uint8))
                masks.append(alpha > 0)
            else:
                masks.append(self.tokens_to_pixels(region_tokens[i], crop))
            results.append(edited)
        modes = prepared.modes or [InputMode("RGB")] * len(results)
        results = [restore_mode(r, m) for r, m in zip(results, modes)]
        if output_type == "pil":
            return results, masks
        if len({r.mode for r in results}) > 1:
            results = [r.convert("RGB") for r in results]
        arrays = np.stack([np.asarray(r, dtype=np.float32).reshape(r.height, r.width, -1) / 255.0 for r in results])
        return (arrays if output_type == "np" else torch.from_numpy(arrays).permute(0, 3, 1, 2)), masks

"""Images as diffusers users pass them, to PIL; and an edit back to the input's mode.

Accepted (as diffusers' ``VaeImageProcessor`` accepts them): PIL images of any mode; numpy arrays (H, W),
(H, W, C) or (B, H, W, C) with C in 1, 3, 4, as uint8 0-255 or float in [0, 1]; torch tensors (C, H, W) or
(B, C, H, W), float in [0, 1] or [-1, 1] (read as [-1, 1] when any value is negative, as diffusers does) or
uint8; and lists of any of these. Editing happens in RGB; :func:`restore_mode` gives the edit the input's
mode back (grayscale stays grayscale, an alpha channel is carried through untouched).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch

# Modes edited through RGB and returned as "L" / "LA" / "RGBA"; every other mode comes back as RGB.
_GREY = {"1", "L", "I", "I;16", "I;16L", "I;16B", "F"}


@dataclass
class InputMode:
    """What an input looked like before it became RGB: the mode to return and its alpha channel, if any."""

    mode: str  # "RGB", "L", "LA" or "RGBA"
    alpha: PIL.Image.Image | None = None  # "L" image, the input's own alpha


def _array_to_pil(a: np.ndarray, what: str) -> PIL.Image.Image:
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ValueError(f"{what}: expected (H, W), (H, W, 1|3|4) or a batch of them, got shape {a.shape}")
    if a.dtype == np.uint8:
        return PIL.Image.fromarray(a)
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{what}: expected uint8 (0-255) or float (0-1) values, got dtype {a.dtype}")
    if not np.isfinite(a).all():
        raise ValueError(f"{what}: holds NaN or inf")
    lo, hi = float(a.min()), float(a.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{what}: float values must be in [0, 1], got [{lo:.3g}, {hi:.3g}]")
    return PIL.Image.fromarray(np.round(a * 255.0).astype(np.uint8))


def _tensor_to_arrays(t: torch.Tensor, what: str) -> list[np.ndarray]:
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[1] not in (1, 3, 4):
        raise ValueError(f"{what}: expected a (C, H, W) or (B, C, H, W) tensor with C in 1, 3, 4, got {tuple(t.shape)}")
    t = t.detach().cpu()
    if t.dtype == torch.uint8:
        return list(t.permute(0, 2, 3, 1).numpy())
    if not t.is_floating_point():
        raise ValueError(f"{what}: expected a float tensor in [0, 1] / [-1, 1] or uint8, got {t.dtype}")
    t = t.float()
    if not torch.isfinite(t).all():
        raise ValueError(f"{what}: holds NaN or inf")
    if t.min() < 0:  # diffusers' convention: a tensor with negative values is in [-1, 1]
        if t.min() < -1 or t.max() > 1:
            raise ValueError(f"{what}: values must be in [0, 1] or [-1, 1], got [{t.min():.3g}, {t.max():.3g}]")
        t = (t + 1) / 2
    elif t.max() > 1:
        raise ValueError(f"{what}: float values must be in [0, 1] or [-1, 1], got max {t.max():.3g}")
    return list(t.permute(0, 2, 3, 1).numpy())


def as_pil_images(image, what: str = "image") -> list[PIL.Image.Image]:
    """Every image of ``image`` (one, a batch array / tensor, or a list of them) as a PIL image."""
    if isinstance(image, (list, tuple)):
        if not image:
            raise ValueError(f"{what}: the list is empty")
        return [im for i, x in enumerate(image) for im in as_pil_images(x, f"{what} {i}")]
    if isinstance(image, PIL.Image.Image):
        return [image]
    if isinstance(image, torch.Tensor):
        return [_array_to_pil(a, what) for a in _tensor_to_arrays(image, what)]
    if isinstance(image, np.ndarray):
        batch = image.ndim == 4 or (image.ndim == 3 and image.shape[-1] not in (1, 3, 4))
        return [_array_to_pil(a, what) for a in image] if batch else [_array_to_pil(image, what)]
    if isinstance(image, str):
        raise TypeError(f"{what}: got a string; the call is pipe(image, prompt) (or pass both by keyword)")
    raise TypeError(f"{what}: expected a PIL image, numpy array, torch tensor or a list of them, "
                    f"got {type(image).__name__}")


def split_mode(image: PIL.Image.Image) -> tuple[PIL.Image.Image, InputMode]:
    """(the RGB image to edit, what to give back): alpha kept aside, grayscale remembered."""
    has_alpha = image.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (
        image.mode == "P" and "transparency" in image.info)
    if image.mode in _GREY or image.mode in ("LA", "La"):
        mode = "LA" if has_alpha else "L"
    else:
        mode = "RGBA" if has_alpha else "RGB"
    alpha = None
    if has_alpha:
        alpha = (image if image.mode in ("RGBA", "LA") else image.convert("RGBA")).getchannel("A")
    if image.mode in ("RGBA", "RGBa", "LA", "La", "PA", "P"):
        image = image.convert("RGBA")  # the colour under each pixel, whatever its alpha
    return image.convert("RGB"), InputMode(mode, alpha)


def restore_mode(edited: PIL.Image.Image, how: InputMode) -> PIL.Image.Image:
    """The RGB edit in the input's mode: grey as "L" (an RGB grey (v, v, v) gives back v exactly), the
    input's alpha put back untouched."""
    if how.mode == "RGB":
        return edited
    out = edited.convert("L") if how.mode in ("L", "LA") else edited
    if how.alpha is not None:
        out = out.copy()
        out.putalpha(how.alpha)
    return out

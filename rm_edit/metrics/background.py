"""Background preservation outside the edit mask (PSNR, LPIPS, MSE, SSIM).

Two modes, both on images whose edit region is first zeroed in BOTH inputs (so nothing inside
the mask can reach a background score through a convolution window):
  * ``"pie-bench"``: PIE-Bench's arithmetic verbatim - score the full zeroed images, so the
    zeroed region counts as perfectly preserved and scores improve with mask size.
  * ``"masked"``: normalise by the background area only - MSE/PSNR over background pixels,
    SSIM and LPIPS maps averaged over background pixels.
With ``mask=None`` the whole image is background and the two modes agree except LPIPS
(spatial-map mean vs lpips' pooled value).
Values are raw; ``scale_pie_bench`` gives PIE-Bench's reporting units.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
from torchmetrics.functional.regression import mean_squared_error

from ._image import ImageLike, MaskLike, check_same_size, to_chw, to_mask
from .availability import MetricUnavailable, torch_hub_checkpoint

Mode = Literal["pie-bench", "masked"]

# PIE-Bench reports PSNR, LPIPS x1e3, MSE x1e4, SSIM x1e2.
PIE_BENCH_SCALE: dict[str, float] = {"psnr": 1.0, "lpips": 1e3, "mse": 1e4, "ssim": 1e2}

_SSIM_KW = dict(gaussian_kernel=True, sigma=1.5, kernel_size=11, data_range=1.0)


def decode_pie_bench_rle(rle: Sequence[int], height: int = 512, width: int = 512) -> np.ndarray:
    """Decode a PIE-Bench mask: flat ``[start, length, ...]`` runs over row-major pixels.

    1 marks the edit region; runs past the end are clipped, and the 1-pixel image border is
    then forced to 1 (PIE-Bench does this to absorb annotation errors at the boundary).
    """
    if len(rle) % 2:
        raise ValueError("PIE-Bench RLE must have an even number of entries ([start, length] pairs)")
    flat = np.zeros(height * width, dtype=bool)
    for start, length in zip(rle[0::2], rle[1::2]):
        if start < 0 or length < 0:
            raise ValueError(f"negative RLE run ({start}, {length})")
        flat[start : start + length] = True  # slicing clips at the end, like PIE-Bench's min()
    mask = flat.reshape(height, width)
    mask[0, :] = mask[-1, :] = True
    mask[:, 0] = mask[:, -1] = True
    return mask


# torchvision weights each lpips trunk is built from (file names in torchvision's hub cache).
_TRUNK_WEIGHTS = {"squeeze": "SqueezeNet1_1_Weights", "alex": "AlexNet_Weights", "vgg": "VGG16_Weights"}


class LPIPS:
    """lpips.LPIPS behind an offline guard; inputs are [0, 1] images, scored on [-1, 1].

    ``pretrained=True``: lpips' calibrated linear heads (shipped inside the lpips package) on
    torchvision's ImageNet trunk, read from ``$TORCH_HOME/hub/checkpoints``; if that file is
    absent ``MetricUnavailable`` is raised - unless ``download=True``, which fetches it there as
    torchvision does (``offline``: never).
    ``pretrained=False``: random trunk and heads (tests only), seeded, with the heads made
    non-negative as lpips training enforces, so that different images score > 0.
    """

    def __init__(
        self,
        net: str = "squeeze",
        pretrained: bool = True,
        device: torch.device | str = "cpu",
        seed: int = 0,
        download: bool = False,
        offline: bool = False,
    ) -> None:
        import lpips

        if net not in _TRUNK_WEIGHTS:
            raise ValueError(f"net must be one of {sorted(_TRUNK_WEIGHTS)}, got {net!r}")
        self.net, self.pretrained, self.device = net, pretrained, torch.device(device)
        trunk_file = self._trunk_file(net, download, offline) if pretrained else None
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torchvision's `pretrained=` deprecation
            torch.manual_seed(seed)
            # pnet_rand=True always: lpips would otherwise ask torchvision, which may download.
            model = lpips.LPIPS(net=net, pretrained=pretrained, pnet_rand=True, verbose=False)
        if trunk_file is not None:
            self._load_trunk(model, trunk_file)
        else:
            with torch.no_grad():
                for lin in model.lins:
                    lin.model[-1].weight.abs_()
        self.model = model.eval().requires_grad_(False).to(self.device)

    @staticmethod
    def _trunk_file(net: str, download: bool = False, offline: bool = False) -> str:
        import torchvision.models as tvm

        url = getattr(tvm, _TRUNK_WEIGHTS[net]).IMAGENET1K_V1.url
        if download:  # torchvision's own cache, filled (hash-checked) when the network is allowed
            from .weights import torchvision_weights

            return str(torchvision_weights(url, f"LPIPS-{net}", offline))
        path = torch_hub_checkpoint(os.path.basename(url))
        if not path.is_file():
            raise MetricUnavailable(
                f"LPIPS-{net} needs torchvision's {path.name} in {path.parent} "
                "(set TORCH_HOME to a cache that has it); not downloading"
            )
        return str(path)

    @staticmethod
    def _load_trunk(model: torch.nn.Module, path: str) -> None:
        # lpips slices keep torchvision's module indices: "sliceK.<i>.x" <-> "features.<i>.x".
        tv_state = torch.load(path, map_location="cpu", weights_only=True)
        own = model.net.state_dict()
        remapped = {k: tv_state["features." + k.split(".", 1)[1]] for k in own}
        model.net.load_state_dict(remapped, strict=True)

    def _prep(self, image: torch.Tensor) -> torch.Tensor:
        t = image if image.ndim == 4 else image[None]
        return t.to(self.device) * 2 - 1

    @torch.no_grad()
    def distance(self, a: torch.Tensor, b: torch.Tensor) -> float:
        """lpips' pooled distance (what PIE-Bench / torchmetrics report)."""
        self.model.spatial = False
        return float(self.model(self._prep(a), self._prep(b)).mean())

    @torch.no_grad()
    def distance_map(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``HxW`` per-pixel map (lpips ``spatial=True``: per-layer maps upsampled and summed)."""
        self.model.spatial = True
        try:
            return self.model(self._prep(a), self._prep(b))[0, 0].cpu()
        finally:
            self.model.spatial = False


def background_metrics(
    edit: ImageLike,
    source: ImageLike,
    mask: MaskLike | None = None,
    mode: Mode = "pie-bench",
    lpips_model: LPIPS | None = None,
) -> dict[str, float]:
    """Raw ``psnr``, ``mse``, ``ssim`` (and ``lpips`` if a model is given) of the background.

    ``mask`` marks the edit region (True = edited); images need H, W >= 6 for SSIM's window.
    In ``"masked"`` mode an all-edit mask leaves no background and every value is nan.
    """
    e, s = to_chw(edit), to_chw(source)
    check_same_size(e, s)
    bg = torch.ones(e.shape[-2:], dtype=torch.bool) if mask is None else ~to_mask(mask).cpu()
    check_same_size(e, bg, "image and mask")
    keep = bg.to(e.dtype)
    e, s = (e * keep)[None], (s * keep)[None]

    if mode == "pie-bench":
        out = {
            "psnr": float(peak_signal_noise_ratio(e, s, data_range=1.0)),
            "mse": float(mean_squared_error(e, s)),
            "ssim": float(structural_similarity_index_measure(e, s, **_SSIM_KW)),
        }
        if lpips_model is not None:
            out["lpips"] = lpips_model.distance(e, s)
        return out
    if mode != "masked":
        raise ValueError(f"mode must be 'pie-bench' or 'masked', got {mode!r}")

    keys = ["psnr", "mse", "ssim"] + (["lpips"] if lpips_model is not None else [])
    if not bg.any():
        return {k: math.nan for k in keys}
    e_bg, s_bg = e[0][:, bg], s[0][:, bg]  # (C, n_background)
    _, ssim_map = structural_similarity_index_measure(e, s, return_full_image=True, **_SSIM_KW)
    out = {
        "psnr": float(peak_signal_noise_ratio(e_bg, s_bg, data_range=1.0)),
        "mse": float(mean_squared_error(e_bg, s_bg)),
        "ssim": float(ssim_map[0].mean(dim=0)[bg].mean()),
    }
    if lpips_model is not None:
        out["lpips"] = float(lpips_model.distance_map(e, s)[bg].mean())
    return out


def scale_pie_bench(values: Mapping[str, float | None]) -> dict[str, float | None]:
    """Raw metrics -> PIE-Bench reporting units (LPIPS x1e3, MSE x1e4, SSIM x1e2)."""
    return {
        k: (v * PIE_BENCH_SCALE[k] if v is not None and k in PIE_BENCH_SCALE else v)
        for k, v in values.items()
    }

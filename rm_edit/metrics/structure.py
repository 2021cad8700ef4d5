"""PIE-Bench's structure distance, with the preprocessing of its script.

PIE-Bench (``evaluation/matrics_calculator.py`` of PnPInversion / DirectInversion): DINO ViT-B/8
(``dino_vitb8``; here timm ``vit_base_patch8_224.dino``, the same published weights); each image as a float
array of 0-255 values (NOT scaled to [0, 1]) goes through ``Resize(224, max_size=480)`` (short side to 224,
aspect kept) and ImageNet mean/std normalisation; the keys of block 11 (all heads concatenated, CLS token
included) give a cosine self-similarity matrix per image; the distance is the MSE between the source's and
the edit's matrices. PIE-Bench reports it x1e3.

Weights: a local file (``--structure-weights`` / ``$RM_EDIT_STRUCTURE_WEIGHTS``: the DINO state dict or a
timm export), else (``download=True``) timm's published weights through the Hugging Face cache.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from .availability import MetricUnavailable, resolve_weights

STRUCTURE_WEIGHTS_ENV = "RM_EDIT_STRUCTURE_WEIGHTS"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _load_state(path: str) -> dict[str, torch.Tensor]:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only, no code
    for key in ("model", "state_dict", "teacher"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


class StructureDistance:
    """PIE-Bench's structure distance (see the module docstring). ``image_size`` is the short side the
    images are resized to (224; smaller for cheap random-weight tests, ``allow_random_weights``)."""

    def __init__(self, weights: str | os.PathLike[str] | None = None, model_name: str = "vit_base_patch8_224.dino",
                 layer: int = 11, device: str = "cpu", image_size: int = 224, allow_random_weights: bool = False,
                 seed: int = 0, download: bool = False, offline: bool = False) -> None:
        import timm

        if weights is None and not os.environ.get(STRUCTURE_WEIGHTS_ENV):
            if allow_random_weights:
                path = None
            elif download:
                from .weights import timm_weights

                path = str(timm_weights(model_name, offline))
            else:
                path = str(resolve_weights(None, STRUCTURE_WEIGHTS_ENV, "DINO ViT-B/8 (structure)", "--structure-weights"))
        else:
            path = str(resolve_weights(weights, STRUCTURE_WEIGHTS_ENV, "DINO ViT-B/8 (structure)", "--structure-weights"))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = timm.create_model(model_name, pretrained=False, num_classes=0, img_size=image_size,
                                      dynamic_img_size=True)  # PIE-Bench keeps the aspect ratio
        if path is not None:
            state = _load_state(path)
            state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}
            missing, _ = model.load_state_dict(state, strict=False)
            if [k for k in missing if not k.startswith("head")]:
                raise MetricUnavailable(f"structure weights {path} do not fit {model_name} (missing {missing[:3]} ...)")
        self.model = model.eval().requires_grad_(False).to(device)
        self.device, self.image_size = torch.device(device), image_size
        self.block = self.model.blocks[layer]

    def _prepare(self, image: Image.Image) -> torch.Tensor:
        from torchvision.transforms import functional as TF

        pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32).copy()).permute(2, 0, 1)
        max_size = max(self.image_size + 1, round(self.image_size * 480 / 224))
        pixels = TF.resize(pixels, self.image_size, max_size=max_size)  # bilinear on 0-255 values, as PIE-Bench
        return TF.normalize(pixels, IMAGENET_MEAN, IMAGENET_STD)

    @torch.no_grad()
    def self_similarity(self, image: Image.Image) -> torch.Tensor:
        """``(N, N)`` cosine similarity of block ``layer``'s keys (heads concatenated, CLS included)."""
        grabbed: dict[str, torch.Tensor] = {}
        hook = self.block.attn.qkv.register_forward_hook(lambda m, i, o: grabbed.__setitem__("qkv", o))
        try:
            self.model.forward_features(self._prepare(image)[None].to(self.device))
        finally:
            hook.remove()
        qkv = grabbed["qkv"][0].float()
        c = qkv.shape[-1] // 3
        keys = qkv[:, c : 2 * c]
        norms = keys.norm(dim=-1, keepdim=True)
        return (keys @ keys.T) / (norms @ norms.T).clamp_min(1e-8)

    def distance(self, source: Image.Image, edit: Image.Image) -> float:
        return float(torch.nn.functional.mse_loss(self.self_similarity(edit), self.self_similarity(source)))

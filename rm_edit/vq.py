"""Image tokenizer interface over a diffusers ``VQModel`` with ``lookup_from_codebook=True``.

This is how Lumina-DiMOO uses aMUSEd's VQ-GAN: pixels in [0, 1] (no [-1, 1] scaling), code ids from
``vq.quantize(vq.encode(x).latents)``, and decoding straight from ids with ``force_not_quantize=True``.
The same functions drive the project's small shipped tokenizer (:func:`small_vq_config`).

Editing resolution: centre-crop to multiples of a grid cell ``multiple`` (32 for Lumina-DiMOO, the
downsample factor for small models) with at most ``max_tokens`` cells and aspect at most ``max_aspect``.
By default images with too many cells are resized down (keeping aspect) before cropping; with
``fill_budget=True`` every image is resized up or down onto Lumina-DiMOO's crop-size frontier
(:func:`crop_size_frontier`), as its own inference code does (with a centre crop where it picks a random
offset). :class:`VQCrop` records the geometry so results can be pasted back at the input's size
(:func:`restore_input_size`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers import ModelMixin, VQModel  # noqa: F401 (diffusers' pipeline loader looks ModelMixin up here)
from diffusers.configuration_utils import register_to_config
from PIL import Image

__all__ = [
    "VQCrop",
    "VQTokenizer",
    "as_vq_tokenizer",
    "is_cell_local",
    "build_vq",
    "codebook_size",
    "crop_for_vq",
    "crop_size_frontier",
    "decode_codes",
    "encode_to_codes",
    "cell_latents",
    "image_to_tensor",
    "restore_input_size",
    "preprocess_image",
    "small_vq_config",
    "tensor_to_image",
    "vq_downsample_factor",
]


def small_vq_config(
    codebook_size: int = 256,
    block_out_channels: tuple[int, ...] = (16, 32, 64, 64),
    latent_channels: int = 32,
    layers_per_block: int = 1,
    norm_num_groups: int = 8,
) -> dict[str, Any]:
    """``VQModel`` kwargs of the project's small default tokenizer: 64x64 RGB -> 8x8 codes.

    Four blocks give three 2x downsamplings. No mid-block attention (as aMUSEd's VQ-GAN), which also keeps
    it cheap on CPU.
    """
    if any(c % norm_num_groups for c in block_out_channels):
        raise ValueError(f"channels {block_out_channels} not divisible by norm_num_groups={norm_num_groups}")
    n = len(block_out_channels)
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * n,
        "up_block_types": ["UpDecoderBlock2D"] * n,
        "block_out_channels": list(block_out_channels),
        "layers_per_block": layers_per_block,
        "act_fn": "silu",
        "latent_channels": latent_channels,
        "sample_size": 64,
        "num_vq_embeddings": codebook_size,
        "norm_num_groups": norm_num_groups,
        "vq_embed_dim": None,
        "scaling_factor": 1.0,
        "norm_type": "group",
        "mid_block_add_attention": False,
        "lookup_from_codebook": True,
        "force_upcast": False,
    }


class VQTokenizer(VQModel):
    """diffusers' ``VQModel`` plus how it encodes, as registered config saved with the folder: ``cell_local``
    encodes every ``f x f`` cell on its own (:func:`cell_latents`). A folder loads the same alone
    (``VQTokenizer.from_pretrained``, or ``VQModel.from_pretrained``, which keeps the key) as in a pipeline."""

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",),
        up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",),
        block_out_channels: tuple[int, ...] = (64,),
        layers_per_block: int = 1,
        act_fn: str = "silu",
        latent_channels: int = 3,
        sample_size: int = 32,
        num_vq_embeddings: int = 256,
        norm_num_groups: int = 32,
        vq_embed_dim: int | None = None,
        scaling_factor: float = 0.18215,
        norm_type: str = "group",
        mid_block_add_attention: bool = True,
        lookup_from_codebook: bool = False,
        force_upcast: bool = False,
        cell_local: bool = False,
    ):
        super().__init__(
            in_channels=in_channels, out_channels=out_channels, down_block_types=down_block_types,
            up_block_types=up_block_types, block_out_channels=block_out_channels, layers_per_block=layers_per_block,
            act_fn=act_fn, latent_channels=latent_channels, sample_size=sample_size,
            num_vq_embeddings=num_vq_embeddings, norm_num_groups=norm_num_groups, vq_embed_dim=vq_embed_dim,
            scaling_factor=scaling_factor, norm_type=norm_type, mid_block_add_attention=mid_block_add_attention,
            lookup_from_codebook=lookup_from_codebook, force_upcast=force_upcast,
        )


def is_cell_local(vq: VQModel) -> bool:
    """The VQ's encoding mode: its ``cell_local`` config (a plain ``VQModel`` of a folder saved before the key
    existed: the ``rm_edit_cell_local`` attribute older code set, else whole-image)."""
    return bool(vq.config.get("cell_local", getattr(vq, "rm_edit_cell_local", False)))


def as_vq_tokenizer(vq: VQModel, cell_local: bool | None = None) -> VQTokenizer:
    """``vq`` as a :class:`VQTokenizer` (the same weights, dtype and device). ``cell_local`` sets the mode of a
    plain ``VQModel``; for a ``VQTokenizer`` it must agree with its config (None: keep the VQ's mode)."""
    if isinstance(vq, VQTokenizer):
        if cell_local is not None and bool(cell_local) != bool(vq.config.cell_local):
            raise ValueError(f"vq_cell_local={cell_local} contradicts the VQ's own cell_local={vq.config.cell_local}")
        return vq
    mode = is_cell_local(vq) if cell_local is None else bool(cell_local)
    config = {k: v for k, v in vq.config.items() if not k.startswith("_") and k != "cell_local"}
    tokenizer = VQTokenizer(**config, cell_local=mode)
    tokenizer.load_state_dict(vq.state_dict())
    tokenizer = tokenizer.to(vq.device) if vq.dtype == torch.float32 else tokenizer.to(device=vq.device, dtype=vq.dtype)
    return tokenizer.train(vq.training)


def build_vq(config: dict[str, Any] | None = None, seed: int | None = None) -> VQModel:
    """A randomly initialised ``VQModel`` (default: :func:`small_vq_config`), optionally seeded."""
    if seed is not None:
        torch.manual_seed(seed)
    vq = VQModel(**(config if config is not None else small_vq_config()))
    if not vq.config.lookup_from_codebook:
        raise ValueError("the image tokenizer needs lookup_from_codebook=True")
    return vq


def vq_downsample_factor(vq: VQModel) -> int:
    """Pixels per code side: one 2x downsampling between consecutive encoder blocks."""
    return 2 ** (len(vq.config.block_out_channels) - 1)


def codebook_size(vq: VQModel) -> int:
    return int(vq.config.num_vq_embeddings)


def cell_latents(vq: VQModel, images: torch.Tensor) -> torch.Tensor:
    """Encoder latents with every ``f x f`` cell encoded on its own: (B, C, H/f, W/f).

    The encoder's GroupNorms pool statistics over the whole input, so a whole-image encoding lets a small
    edit shift codes everywhere. Encoding cells independently makes codes local: a cell's code depends on
    its own pixels only, so an edit changes exactly the codes of the cells it touches.
    """
    f = vq_downsample_factor(vq)
    b, c, h, w = images.shape
    cells = images.unfold(2, f, f).unfold(3, f, f)  # (B, 3, h, w, f, f)
    cells = cells.permute(0, 2, 3, 1, 4, 5).reshape(-1, c, f, f)
    lat = vq.encode(cells).latents  # (B*h*w, C, 1, 1)
    return lat.reshape(b, h // f, w // f, -1).permute(0, 3, 1, 2)


@torch.no_grad()
def encode_to_codes(vq: VQModel, images: torch.Tensor, cell_local: bool | None = None) -> torch.Tensor:
    """Float images ``(B, 3, H, W)`` in [0, 1] -> code ids ``(B, H/f, W/f)`` (int64).

    ``cell_local`` (default: the VQ's own mode, :func:`is_cell_local`) encodes each cell independently, see
    :func:`cell_latents`.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) images, got {tuple(images.shape)}")
    f = vq_downsample_factor(vq)
    b, _, h, w = images.shape
    if h % f or w % f:
        raise ValueError(f"image size {h}x{w} is not a multiple of the downsample factor {f}")
    x = images.to(device=vq.device, dtype=vq.dtype)
    if cell_local is None:
        cell_local = is_cell_local(vq)
    latents = cell_latents(vq, x) if cell_local else vq.encode(x).latents
    # diffusers' VectorQuantizer returns (z_q, loss, (perplexity, min_encodings, indices)); the indices
    # come back flat (N, 1) unless sane_index_shape is set, so reshape either way.
    indices = vq.quantize(latents)[2][2]
    return indices.reshape(b, latents.shape[2], latents.shape[3]).long()


@torch.no_grad()
def decode_codes(vq: VQModel, codes: torch.Tensor) -> torch.Tensor:
    """Code ids ``(B, h, w)`` -> float images ``(B, 3, h*f, w*f)`` clamped to [0, 1]."""
    if codes.ndim != 3:
        raise ValueError(f"expected (B, h, w) codes, got {tuple(codes.shape)}")
    b, h, w = codes.shape
    n = codebook_size(vq)
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= n):
        raise ValueError(f"codes must lie in [0, {n})")
    shape = (b, h, w, vq.config.vq_embed_dim or vq.config.latent_channels)
    ids = codes.reshape(-1).to(device=vq.device, dtype=torch.long)
    out = vq.decode(ids, force_not_quantize=True, shape=shape).sample
    return out.float().clamp_(0.0, 1.0)


# --- resolution rule -------------------------------------------------------------------------------


@dataclass(frozen=True)
class VQCrop:
    """Geometry of :func:`crop_for_vq`.

    The input (``input_size``) is resized to ``resized_size`` and ``box`` (left, top, right, bottom, in
    resized pixels) is cut out; ``input_box`` is the same box in input pixels.
    """

    input_size: tuple[int, int]  # (W, H)
    resized_size: tuple[int, int]  # (W, H)
    box: tuple[int, int, int, int]
    grid: tuple[int, int]  # (cells across, cells down)
    multiple: int
    halvings: int = 0  # box-filter halvings of the input before the final (bicubic) resize

    @property
    def scale(self) -> float:
        return self.resized_size[0] / self.input_size[0]

    @property
    def input_box(self) -> tuple[int, int, int, int]:
        sx = self.input_size[0] / self.resized_size[0]
        sy = self.input_size[1] / self.resized_size[1]
        l, t, r, b = self.box
        return (round(l * sx), round(t * sy), round(r * sx), round(b * sy))


def crop_size_frontier(max_cells: int, multiple: int, max_aspect: float = 4.0) -> list[tuple[int, int]]:
    """Lumina-DiMOO's crop sizes (w, h) in pixels: a walk along the boundary ``across * down <= max_cells``
    from the widest grid to the tallest, keeping grids with aspect <= ``max_aspect``.

    At each step the walk adds a row while the grid still fits, else drops a column; so besides the largest
    grid of every width it also visits a few one-row-short ones (e.g. 16x15 next to 16x16 for 256 cells).
    """
    sizes, across, down = [], max_cells, 1
    while across > 0:
        if max(across, down) <= max_aspect * min(across, down):
            sizes.append((across * multiple, down * multiple))
        if across * (down + 1) <= max_cells:
            down += 1
        else:
            across -= 1
    return sizes


def _frontier_crop(width: int, height: int, multiple: int, max_tokens: int, max_aspect: float) -> VQCrop:
    """The frontier size whose aspect best matches the input (ties: the larger size), the input halved by a
    box filter while it is at least twice that size, resized (bicubic) to cover it, then centre-cropped."""
    def kept(size: tuple[int, int]) -> float:  # share of the covering resize that survives the crop
        sx, sy = size[0] / width, size[1] / height
        return min(sx, sy) / max(sx, sy)

    cw, ch = max(crop_size_frontier(max_tokens, multiple, max_aspect), key=lambda size: (kept(size), size))
    w, h, halvings = width, height, 0
    while w >= 2 * cw and h >= 2 * ch:
        w, h, halvings = w // 2, h // 2, halvings + 1
    scale = max(cw / w, ch / h)
    rs_w, rs_h = round(w * scale), round(h * scale)
    left, top = (rs_w - cw) // 2, (rs_h - ch) // 2
    return VQCrop((width, height), (rs_w, rs_h), (left, top, left + cw, top + ch), (cw // multiple, ch // multiple),
                  multiple, halvings)


def crop_for_vq(
    width: int, height: int, multiple: int, max_tokens: int = 256, max_aspect: float = 4.0, fill_budget: bool = False
) -> VQCrop:
    """Plan the resize + centre crop of a ``width`` x ``height`` image for a VQ with cell ``multiple``.

    Result: a ``(gw * multiple) x (gh * multiple)`` crop with ``gw * gh <= max_tokens`` and
    ``max(gw, gh) / min(gw, gh) <= max_aspect``. By default the image is only resized when it has too many
    cells (down) or a side shorter than one cell (up); ``fill_budget`` resizes it onto the crop-size frontier
    (Lumina-DiMOO's rule: about ``max_tokens`` cells whatever the input's size).
    """
    if width < 1 or height < 1 or multiple < 1 or max_tokens < 1 or max_aspect < 1:
        raise ValueError("crop_for_vq: sizes, multiple, max_tokens must be >= 1 and max_aspect >= 1")
    if fill_budget:
        return _frontier_crop(width, height, multiple, max_tokens, max_aspect)
    # Region that survives the aspect cap; the token budget is measured on it, not the full image, so a
    # very wide image is not shrunk for pixels that will be cropped away anyway.
    rw = min(width, height * max_aspect)
    rh = min(height, width * max_aspect)
    scale = 1.0
    if math.floor(rw / multiple) * math.floor(rh / multiple) > max_tokens:
        # Area at most max_tokens cells, so the floored grid fits too.
        scale = math.sqrt(max_tokens * multiple * multiple / (rw * rh))
    if min(rw, rh) * scale < multiple:
        scale = multiple / min(rw, rh)
    gw = max(1, math.floor(rw * scale / multiple + 1e-9))
    gh = max(1, math.floor(rh * scale / multiple + 1e-9))
    # Flooring can break either cap by a cell; trim the longer side until both hold.
    while gw * gh > max_tokens or max(gw, gh) > max_aspect * min(gw, gh):
        if gw >= gh and gw > 1:
            gw -= 1
        elif gh > 1:
            gh -= 1
        else:
            break
    cw, ch = gw * multiple, gh * multiple
    rs_w = max(cw, round(width * scale)) if scale != 1.0 else width
    rs_h = max(ch, round(height * scale)) if scale != 1.0 else height
    left, top = (rs_w - cw) // 2, (rs_h - ch) // 2
    return VQCrop((width, height), (rs_w, rs_h), (left, top, left + cw, top + ch), (gw, gh), multiple)


def image_to_tensor(image: Image.Image | np.ndarray) -> torch.Tensor:
    """RGB PIL image or uint8 ``HxWx3`` array -> float ``(1, 3, H, W)`` in [0, 1]."""
    arr = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError("expected an RGB image or a uint8 HxWx3 array")
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def tensor_to_image(x: torch.Tensor) -> Image.Image:
    """Float ``(3, H, W)`` or ``(1, 3, H, W)`` in [0, 1] -> RGB PIL image."""
    if x.ndim == 4:
        x = x[0]
    arr = (x.detach().float().clamp(0, 1) * 255.0).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, "RGB")


def preprocess_image(
    image: Image.Image | np.ndarray, multiple: int, max_tokens: int = 256, max_aspect: float = 4.0,
    fill_budget: bool = False,
) -> tuple[torch.Tensor, VQCrop]:
    """Resize/centre-crop per :func:`crop_for_vq`; returns ``(1, 3, H, W)`` in [0, 1] and the crop."""
    pil = image.convert("RGB") if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    crop = crop_for_vq(pil.width, pil.height, multiple, max_tokens, max_aspect, fill_budget)
    for _ in range(crop.halvings):
        pil = pil.resize((pil.width // 2, pil.height // 2), Image.Resampling.BOX)
    if crop.resized_size != (pil.width, pil.height):
        pil = pil.resize(crop.resized_size, Image.Resampling.BICUBIC)
    return image_to_tensor(pil.crop(crop.box)), crop


def restore_input_size(original: Image.Image, edited: Image.Image | torch.Tensor, crop: VQCrop) -> Image.Image:
    """Put an edited crop back into ``original`` so the result has the input's size.

    Pixels outside the crop box keep the original's values.
    """
    if original.size != crop.input_size:
        raise ValueError(f"original size {original.size} != crop input size {crop.input_size}")
    patch = tensor_to_image(edited) if isinstance(edited, torch.Tensor) else edited.convert("RGB")
    l, t, r, b = crop.input_box
    if patch.size != (r - l, b - t):
        patch = patch.resize((r - l, b - t), Image.Resampling.BICUBIC)
    out = original.convert("RGB").copy()
    out.paste(patch, (l, t))
    return out


@torch.no_grad()
def read_back_errors(vq: VQModel, codes: torch.Tensor, images: torch.Tensor) -> list[float]:
    """Each image's mean |image - decode(codes)| over pixels and channels, on 0-255 (``images``: (B, 3, H, W) in
    [0, 1], ``codes`` what the VQ reads of them): how far an input is from what the model's codes can say."""
    decoded = decode_codes(vq, codes.to(vq.device))
    return ((decoded - images.to(decoded.device, decoded.dtype)).abs().mean(dim=(1, 2, 3)) * 255).tolist()

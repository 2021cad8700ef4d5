"""Edit quality: agreement with a ground-truth target and with the edit text.

* ``pixel_metrics``: L1, L2 (= MSE) and PSNR to the target, on [0, 1] images (MagicBrush's L1/L2).
* ``ClipScorer``: open_clip model for CLIP-I (image-image cosine), CLIP score
  (``100 * max(cos, 0)``, torchmetrics/PIE-Bench units) and CLIP directional similarity.
* ``DinoScorer``: DINO ViT-S/16 (timm) image-image cosine, MagicBrush's "DINO" metric.

Weights: a local file (argument or environment variable); with ``download=True`` otherwise the
published weights through the library's own cache (:mod:`rm_edit.metrics.weights`; ``offline``: the
cache only); with none, ``MetricUnavailable`` is raised. ``allow_random_weights=True`` builds a seeded
random model for tests - its numbers mean nothing.

MagicBrush conventions (``evaluation/image_eval.py`` of OSU-NLP-Group/MagicBrush), matched here:
  * L1 / L2: the prediction resized to the ground truth's size (Pillow bicubic), both ``ToTensor`` [0, 1],
    mean absolute / mean squared error over every pixel and channel (``nn.L1Loss`` / ``nn.MSELoss``).
  * CLIP-I: OpenAI CLIP ViT-B/32 (open_clip ``ViT-B-32-quickgelu``/``openai``), CLIP's own preprocessing
    (bicubic resize of the short side to 224, centre crop, CLIP mean/std), cosine of the image embeddings.
  * DINO: DINO ViT-S/16 (``dino_vits16``; timm ``vit_small_patch16_224.dino``), bicubic resize 256, centre
    crop 224, ImageNet mean/std, cosine of the CLS features.
  * CLIP-T: the same ViT-B/32, raw cosine (not x100, not clipped) between the edit's embedding and the
    turn's caption (MagicBrush's local description of the target) - ``ClipScorer.text_similarity``.
  * Each score is averaged over image pairs; "all turns" (single-turn: every turn edited from its given
    input) is what ``rm-edit eval`` runs; MagicBrush's "final turn" (iterative edits) is not run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import peak_signal_noise_ratio
from torchmetrics.functional.regression import mean_absolute_error, mean_squared_error

from ._image import ImageLike, MaskLike, check_same_size, to_chw, to_mask, to_pil
from .availability import MetricUnavailable, resolve_weights
from .weights import open_clip_weights, timm_weights

# OpenAI CLIP weights need the quick-GELU configs in open_clip.
DEFAULT_CLIP_SCORE_MODEL = "ViT-L-14-quickgelu"  # PIE-Bench CLIP score: ViT-L/14
DEFAULT_CLIP_I_MODEL = "ViT-B-32-quickgelu"  # MagicBrush CLIP-I: ViT-B/32
DEFAULT_DINO_MODEL = "vit_small_patch16_224.dino"  # MagicBrush DINO: ViT-S/16

CLIP_WEIGHTS_ENV = "RM_EDIT_CLIP_WEIGHTS"
CLIP_I_WEIGHTS_ENV = "RM_EDIT_CLIP_I_WEIGHTS"
DINO_WEIGHTS_ENV = "RM_EDIT_DINO_WEIGHTS"


def pixel_metrics(edit: ImageLike, target: ImageLike) -> dict[str, float]:
    """``l1`` (mean |e - t|), ``l2`` (mean squared error) and ``psnr`` (data range 1)."""
    e, t = to_chw(edit), to_chw(target)
    check_same_size(e, t)
    t = t.to(e.device)
    return {
        "l1": float(mean_absolute_error(e, t)),
        "l2": float(mean_squared_error(e, t)),
        "psnr": float(peak_signal_noise_ratio(e, t, data_range=1.0)),
    }


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.flatten(), b.flatten(), dim=0))


def _resolve_or_random(
    weights: str | os.PathLike[str] | None, env_var: str, what: str, flag: str, allow_random: bool,
    published: Callable[[], os.PathLike[str]] | None = None,
) -> str | None:
    """The file passed or in ``env_var``; else the published weights through the library's cache when
    ``published`` is given; else None for random weights when explicitly allowed (tests)."""
    if weights is None and not os.environ.get(env_var):
        if allow_random:
            return None
        if published is not None:
            return str(published())
    return str(resolve_weights(weights, env_var, what, flag))


class ClipScorer:
    """open_clip model + tokenizer, loaded offline from ``weights`` or ``$RM_EDIT_CLIP_WEIGHTS``.

    ``weights`` is an open_clip-format state dict (``.bin``/``.pt``/``.safetensors``) matching
    ``model_name``; OpenAI weights need a ``-quickgelu`` model name.
    """

    def __init__(
        self,
        model_name: str = DEFAULT_CLIP_SCORE_MODEL,
        weights: str | os.PathLike[str] | None = None,
        device: torch.device | str = "cpu",
        allow_random_weights: bool = False,
        env_var: str = CLIP_WEIGHTS_ENV,
        flag: str = "--clip-weights",
        seed: int = 0,
        image_size: int | None = None,
        context_length: int | None = None,
        download: bool = False,
        offline: bool = False,
    ) -> None:
        """``image_size`` / ``context_length`` shrink the towers (cheap random-weight tests). ``download``:
        without a local file, OpenAI's published weights through open_clip's Hugging Face cache
        (``offline``: the cache only)."""
        import open_clip

        if model_name not in open_clip.list_models():  # hub-hosted configs would need the network
            raise MetricUnavailable(f"unknown open_clip model {model_name!r} (built-in configs only)")
        cfg = open_clip.get_model_config(model_name)
        if cfg.get("text_cfg", {}).get("hf_tokenizer_name") or cfg.get("vision_cfg", {}).get(
            "timm_model_pretrained"
        ):
            raise MetricUnavailable(f"open_clip model {model_name!r} would fetch Hub assets")
        published = (lambda: open_clip_weights(model_name, "openai", offline)) if download else None
        path = _resolve_or_random(weights, env_var, "CLIP", flag, allow_random_weights, published)
        self.model_name, self.weights, self.device = model_name, path, torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name,
                pretrained=path,
                device=self.device,
                force_image_size=image_size,
                force_context_length=context_length,
            )
        self.model = model.eval().requires_grad_(False)
        self.preprocess = preprocess
        tok_kw = {"context_length": context_length} if context_length else {}
        self.tokenizer = open_clip.get_tokenizer(model_name, **tok_kw)

    @torch.no_grad()
    def encode_images(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """L2-normalised image embeddings ``(N, D)``; images go through open_clip's val transform."""
        batch = torch.stack([self.preprocess(to_pil(im)) for im in images]).to(self.device)
        return F.normalize(self.model.encode_image(batch).float(), dim=-1)

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised text embeddings ``(N, D)``."""
        tokens = self.tokenizer(list(texts)).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)

    def image_similarity(self, a: ImageLike, b: ImageLike) -> float:
        """CLIP-I: cosine between the two image embeddings."""
        emb = self.encode_images([a, b])
        return _cos(emb[0], emb[1])

    def text_similarity(self, image: ImageLike, text: str, mask: MaskLike | None = None) -> float:
        """Raw image-text cosine (MagicBrush's CLIP-T).

        With ``mask`` the image is multiplied by it first (PIE-Bench's "edited region" score).
        """
        if mask is not None:
            img = to_chw(image)
            m = to_mask(mask).to(img.device)
            check_same_size(img, m, "image and mask")
            image = img * m
        return _cos(self.encode_images([image])[0], self.encode_texts([text])[0])

    def clip_score(self, image: ImageLike, text: str, mask: MaskLike | None = None) -> float:
        """``100 * max(cos, 0)``: torchmetrics CLIPScore per image, the PIE-Bench units."""
        return 100.0 * max(self.text_similarity(image, text, mask), 0.0)

    def directional_similarity(
        self, source: ImageLike, edit: ImageLike, source_caption: str, target_caption: str
    ) -> float:
        """cos(E_img(edit) - E_img(source), E_txt(target) - E_txt(source)) on normalised embeddings.

        nan when either direction is zero (e.g. edit == source): the angle is undefined.
        """
        img = self.encode_images([source, edit])
        txt = self.encode_texts([source_caption, target_caption])
        d_img, d_txt = img[1] - img[0], txt[1] - txt[0]
        if float(d_img.norm()) < 1e-4 or float(d_txt.norm()) < 1e-4:  # unit vectors; below is float noise
            return math.nan
        return _cos(d_img, d_txt)


class DinoScorer:
    """DINO ViT image-image cosine of CLS features (timm), weights from ``$RM_EDIT_DINO_WEIGHTS``.

    ``weights``: the DINO backbone state dict (e.g. ``dino_deitsmall16_pretrain.pth``) or a
    timm export of ``model_name``.
    """

    def __init__(
        self,
        model_name: str = DEFAULT_DINO_MODEL,
        weights: str | os.PathLike[str] | None = None,
        device: torch.device | str = "cpu",
        allow_random_weights: bool = False,
        seed: int = 0,
        image_size: int = 224,
        download: bool = False,
        offline: bool = False,
    ) -> None:
        """``image_size`` below 224 is for cheap random-weight tests. ``download``: without a local file,
        the published DINO weights through timm's Hugging Face cache (``offline``: the cache only)."""
        import timm
        from torchvision import transforms as T

        published = (lambda: timm_weights(model_name, offline)) if download else None
        path = _resolve_or_random(weights, DINO_WEIGHTS_ENV, "DINO", "--dino-weights", allow_random_weights, published)
        self.model_name, self.weights, self.device = model_name, path, torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # pretrained only ever means "this local file" (the overlay replaces the Hub source).
            model = timm.create_model(
                model_name,
                pretrained=path is not None,
                pretrained_cfg_overlay=dict(file=path) if path else None,
                num_classes=0,
                img_size=image_size,
            )
        self.model = model.eval().requires_grad_(False).to(self.device)
        # MagicBrush's DINO preprocessing: bicubic resize 256, centre crop 224, ImageNet stats.
        self.preprocess = T.Compose(
            [
                T.Resize(round(image_size * 256 / 224), interpolation=T.InterpolationMode.BICUBIC),
                T.CenterCrop(image_size),
                T.ToTensor(),
                T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
            ]
        )

    @torch.no_grad()
    def encode_images(self, images: Sequence[ImageLike]) -> torch.Tensor:
        batch = torch.stack([self.preprocess(to_pil(im)) for im in images]).to(self.device)
        return F.normalize(self.model(batch).float(), dim=-1)

    def image_similarity(self, a: ImageLike, b: ImageLike) -> float:
        emb = self.encode_images([a, b])
        return _cos(emb[0], emb[1])

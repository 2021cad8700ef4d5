"""Published metric weights through each library's own download-and-cache, or an explicit local file.

Order: the file passed (``--clip-weights`` ...) or its environment variable; else the library's cache -
the Hugging Face hub cache that open_clip and timm download into (``$HF_HOME``), torchvision's
``$TORCH_HOME/hub/checkpoints`` - downloading into it when the network is allowed. ``--offline`` or the
standard ``HF_HUB_OFFLINE=1`` allows caches only. Anything that cannot be had raises ``MetricUnavailable``
with the reason (the suite reports the metric as n/a). Only safetensors files are read from the hub.
"""

from __future__ import annotations

import os
from pathlib import Path

from .availability import MetricUnavailable, torch_hub_checkpoint

OPEN_CLIP_FILE = "open_clip_model.safetensors"  # open_clip's safetensors name on the hub
TIMM_FILE = "model.safetensors"  # timm's


def offline_mode(flag: bool = False) -> bool:
    """``--offline``, or ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE`` set to 1 / true / yes / on."""
    truthy = {"1", "on", "yes", "true"}
    return flag or any(os.environ.get(v, "").strip().lower() in truthy for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


_REACHABLE: dict[tuple[str, int], bool] = {}


def network_reachable(timeout: float = 2.0) -> bool:
    """Can this host open a connection to the Hugging Face hub (``$HF_ENDPOINT``, default huggingface.co:443)
    within ``timeout`` seconds? Asked once per process: an offline host is told in seconds, not after each
    library's own retries."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    key = (url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443))
    if key not in _REACHABLE:
        try:
            socket.create_connection(key, timeout=timeout).close()
            _REACHABLE[key] = True
        except OSError:
            _REACHABLE[key] = False
    return _REACHABLE[key]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def hub_file(repo_id: str, filename: str, what: str, offline: bool = False) -> Path:
    """``repo_id/filename`` from the Hugging Face cache, downloaded into it first when online."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, filename)
    if isinstance(cached, str):
        return Path(cached)
    if offline_mode(offline):
        raise MetricUnavailable(f"{what}: {repo_id}/{filename} is not in the Hugging Face cache and the network "
                                "is off (--offline / HF_HUB_OFFLINE)")
    try:
        return Path(hf_hub_download(repo_id, filename))
    except Exception as exc:  # no network, no such file, gated repo ...
        raise MetricUnavailable(f"{what}: cannot download {repo_id}/{filename} ({_one_line(exc)})") from None


def open_clip_weights(model_name: str, tag: str = "openai", offline: bool = False) -> Path:
    """The published weights of an open_clip model (e.g. ``ViT-B-32-quickgelu`` + ``openai``)."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model_name, tag) or {}
    repo = (cfg.get("hf_hub") or "").strip("/")
    if not repo:
        raise MetricUnavailable(f"open_clip has no hub weights for {model_name} / {tag}")
    return hub_file(repo, OPEN_CLIP_FILE, f"CLIP {model_name} ({tag})", offline)


def timm_weights(model_name: str, offline: bool = False) -> Path:
    """The published weights of a timm model (e.g. ``vit_small_patch16_224.dino``)."""
    import timm

    cfg = timm.models.get_pretrained_cfg(model_name)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo:
        raise MetricUnavailable(f"timm has no hub weights for {model_name}")
    return hub_file(repo, TIMM_FILE, f"timm {model_name}", offline)


def torchvision_weights(url: str, what: str, offline: bool = False) -> Path:
    """A torchvision checkpoint in ``$TORCH_HOME/hub/checkpoints``, downloaded there (hash-checked) when online."""
    path = torch_hub_checkpoint(os.path.basename(url))
    if path.is_file():
        return path
    if offline_mode(offline):
        raise MetricUnavailable(f"{what}: torchvision's {path.name} is not in {path.parent} and the network is off "
                                "(--offline / HF_HUB_OFFLINE)")
    import torch.hub

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = path.stem.rsplit("-", 1)[-1]  # torchvision names files <name>-<sha256 prefix>.pth
        torch.hub.download_url_to_file(url, str(path), hash_prefix=digest, progress=False)
    except Exception as exc:
        raise MetricUnavailable(f"{what}: cannot download {url} ({_one_line(exc)})") from None
    return path

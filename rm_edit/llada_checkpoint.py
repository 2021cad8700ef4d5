"""LLaDA / Lumina-DiMOO checkpoint folders: their ``config.json`` keys and safetensors shards."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def _llada_weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files = [folder / n for n in names]
    else:
        files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no safetensors weights (only safetensors checkpoints are loaded)")
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"{folder}: the index names {f.name}, which is missing")
    return files


# LLaDA config keys whose value (or default when absent) this implementation cannot honour.
_UNSUPPORTED = {
    "alibi": (False, "ALiBi attention biases"),
    "include_bias": (False, "linear-layer biases"),
    "bias_for_layer_norm": (False, "norm biases"),
    "attention_layer_norm": (False, "QK layer norm"),
    "input_emb_norm": (False, "embedding normalisation"),
    "scale_logits": (False, "logit scaling"),
}


def llada_config_to_kwargs(cfg: dict) -> dict:
    """Translate a LLaDA ``config.json`` into constructor kwargs, refusing what this model cannot honour.

    Absent keys take the reference's GPT-2-like defaults, so a config that omits ``block_type`` or ``rope``
    is refused rather than silently loaded as something it is not.
    """
    def refuse(what: str) -> ValueError:
        return ValueError(f"unsupported LLaDA config: {what}")

    if cfg.get("block_type", "sequential") != "llama":
        raise refuse(f"block_type={cfg.get('block_type', 'sequential (default)')!r}; only 'llama' is implemented")
    if cfg.get("layer_norm_type", "default") != "rms":
        raise refuse(f"layer_norm_type={cfg.get('layer_norm_type', 'default')!r}; only 'rms' is implemented")
    if cfg.get("activation_type", "swiglu") != "silu":
        raise refuse(f"activation_type={cfg.get('activation_type', 'swiglu (default)')!r}; only 'silu' is implemented")
    if not cfg.get("rope", False):
        raise refuse("rope is false or absent; only RoPE positions are implemented")
    for key, (ok, what) in _UNSUPPORTED.items():
        if bool(cfg.get(key, ok)) != ok:
            raise refuse(f"{key}={cfg[key]!r} ({what})")
    if cfg.get("clip_qkv") is not None:
        raise refuse(f"clip_qkv={cfg['clip_qkv']!r}")
    if cfg.get("multi_query_attention"):
        n_kv = 1
    else:
        n_kv = cfg.get("n_kv_heads") or cfg["n_heads"]
    d_model = cfg["d_model"]
    hidden = cfg.get("mlp_hidden_size") or int(cfg.get("mlp_ratio", 4) * d_model)
    return dict(
        vocab_size=cfg["vocab_size"],
        embedding_size=cfg.get("embedding_size") or cfg["vocab_size"],
        d_model=d_model,
        n_layers=cfg["n_layers"],
        n_heads=cfg["n_heads"],
        n_kv_heads=n_kv,
        mlp_hidden_size=hidden,
        rope_theta=float(cfg.get("rope_theta", 10000.0)),
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-5)),
        max_sequence_length=cfg.get("max_sequence_length", 4096),
        mask_token_id=cfg.get("mask_token_id", 126336),
        tie_word_embeddings=bool(cfg.get("weight_tying", True)),
        rm_post_trained=cfg.get("rm_post_trained"),
    )


def llada_config(model) -> dict:
    """``model``'s config in LLaDA's ``config.json`` keys (what :func:`llada_config_to_kwargs` reads back)."""
    c = model.config
    cfg = {
        "model_type": "llada", "d_model": c.d_model, "n_heads": c.n_heads, "n_kv_heads": c.n_kv_heads,
        "n_layers": c.n_layers, "mlp_hidden_size": c.mlp_hidden_size, "mlp_ratio": c.mlp_hidden_size // c.d_model,
        "vocab_size": c.vocab_size, "embedding_size": c.embedding_size or c.vocab_size, "rope": True,
        "rope_theta": c.rope_theta, "rms_norm_eps": c.rms_norm_eps, "block_type": "llama",
        "layer_norm_type": "rms", "activation_type": "silu", "weight_tying": c.tie_word_embeddings,
        "include_bias": False, "alibi": False, "mask_token_id": c.mask_token_id,
        "max_sequence_length": c.max_sequence_length, "architectures": ["LLaDAModelLM"],
    }
    if c.get("rm_post_trained") is not None:
        cfg["rm_post_trained"] = bool(c.rm_post_trained)
    return cfg


def save_llada_checkpoint(model, folder: str | Path, max_shard_bytes: int = 2 << 30) -> None:
    """Write ``model`` as a LLaDA checkpoint folder (config.json + sharded safetensors + index).

    The inverse of :meth:`LLaDATransformer.from_llada_checkpoint`; used to make test fixtures in the exact
    layout real checkpoints ship in.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(llada_config(model), indent=2))
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in model.state_dict().items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1]["model." + name] = tensor.detach().contiguous().cpu()
        size += nbytes
    weight_map = {}
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / fname), metadata={"format": "pt"})
        weight_map.update({k: fname for k in shard})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}, indent=2))

"""An independent, loop-based transcription of LLaDA's forward (REFERENCE.md section 5) for parity tests.

Written from the spec, deliberately unlike rm_edit.transformer: per-head loops, explicit softmax, weights read
straight from the checkpoint's state dict by their LLaDA names.
"""

import math

import torch


def _rms(x, w, eps):
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return w * xf.to(x.dtype)


def _rope(x, theta):
    # x: (L, head_dim)
    l, d = x.shape
    inv = 1.0 / (theta ** (torch.arange(0, d, 2).float() / d))
    ang = torch.arange(l).float()[:, None] * inv[None, :]
    ang = torch.cat([ang, ang], -1)
    half = d // 2
    rot = torch.cat([-x[:, half:], x[:, :half]], -1)
    return x * ang.cos() + rot * ang.sin()


def llada_reference_logits(sd: dict, cfg: dict, ids: torch.Tensor) -> torch.Tensor:
    """Logits (L, V) for one unpadded sequence ``ids`` (L,)."""
    g = lambda name: sd["model.transformer." + name].float()  # noqa: E731
    d, nh = cfg["d_model"], cfg["n_heads"]
    nkv = cfg.get("n_kv_heads") or nh
    hd = d // nh
    eps = cfg.get("rms_norm_eps", 1e-5)
    x = g("wte.weight")[ids]
    for i in range(cfg["n_layers"]):
        p = f"blocks.{i}."
        h = _rms(x, g(p + "attn_norm.weight"), eps)
        q = h @ g(p + "q_proj.weight").T
        k = h @ g(p + "k_proj.weight").T
        v = h @ g(p + "v_proj.weight").T
        heads = []
        for j in range(nh):
            kv = j // (nh // nkv)
            qj = _rope(q[:, j * hd:(j + 1) * hd], cfg["rope_theta"])
            kj = _rope(k[:, kv * hd:(kv + 1) * hd], cfg["rope_theta"])
            vj = v[:, kv * hd:(kv + 1) * hd]
            att = torch.softmax(qj @ kj.T / math.sqrt(hd), dim=-1)
            heads.append(att @ vj)
        x = x + torch.cat(heads, -1) @ g(p + "attn_out.weight").T
        h = _rms(x, g(p + "ff_norm.weight"), eps)
        a = h @ g(p + "ff_proj.weight").T
        u = h @ g(p + "up_proj.weight").T
        x = x + (torch.nn.functional.silu(a) * u) @ g(p + "ff_out.weight").T
    x = _rms(x, g("ln_f.weight"), eps)
    head = g("ff_out.weight") if not cfg.get("weight_tying", True) else g("wte.weight")
    return x @ head.T

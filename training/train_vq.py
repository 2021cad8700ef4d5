"""Train the small image tokenizer (a diffusers ``VQModel``) on shapes-world images.

Sources and targets of the ``train`` split are generated on the fly; batch ``s`` depends only on
``(seed, s)``, so a resumed run sees exactly the data it would have seen. Loss: L1 + MSE reconstruction
plus the commitment/codebook loss of diffusers' ``VectorQuantizer``. Small VQs collapse onto a handful of
codes, so codes unused for ``restart_every`` steps are re-initialised from random encoder outputs.

Everything is saved with safetensors (weights via ``save_pretrained``, AdamW moments as flat tensors),
never pickles. At the end, reconstruction PSNR and codebook usage on held-out ``test`` images go to
``<out>/vq_metrics.json``.

    python -m rm_edit.training.train_vq --config configs/vq_shapes.json --out runs/vq --threads 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers import VQModel
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from rm_edit.data.shapes import ShapesWorld, ShapesWorldConfig
from rm_edit.vq import build_vq, codebook_size, decode_codes, encode_to_codes, small_vq_config

__all__ = ["VQTrainConfig", "evaluate_vq", "load_config", "main", "train_vq"]


@dataclass
class VQTrainConfig:
    out: str = "runs/vq"
    steps: int = 4000
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05  # cosine decay floor, as a fraction of lr
    grad_clip: float = 1.0
    seed: int = 0
    threads: int = 1
    mixed_precision: str = "no"
    # model (see rm_edit.vq.small_vq_config)
    codebook_size: int = 256
    block_out_channels: list[int] = field(default_factory=lambda: [16, 32, 64, 64])
    latent_channels: int = 32
    layers_per_block: int = 1
    norm_num_groups: int = 8
    # loss
    l1_weight: float = 1.0
    mse_weight: float = 1.0
    commit_weight: float = 1.0
    # Flat backgrounds are most of every pixel; pixels whose colour differs from the image's top-left
    # pixel (background in shapes-world images) get 1 + fg_weight times the reconstruction weight, which
    # makes the shapes appear several hundred steps earlier. 0 disables it.
    fg_weight: float = 4.0
    # diffusers' VectorQuantizer defaults to its "legacy" loss, which puts weight 1 on the encoder's
    # commitment and beta=0.25 on the codebook; false swaps them to the usual VQ-VAE weighting.
    legacy_vq_loss: bool = False
    # dead-code restarts; stopped after restart_stop * steps so the codebook can settle
    restart_every: int = 50
    restart_stop: float = 0.8
    save_every: int = 500
    log_every: int = 50
    eval_images: int = 512
    resume: bool = False
    smoke: bool = False
    progress: bool = True

    def vq_kwargs(self) -> dict[str, Any]:
        return small_vq_config(
            codebook_size=self.codebook_size,
            block_out_channels=tuple(self.block_out_channels),
            latent_channels=self.latent_channels,
            layers_per_block=self.layers_per_block,
            norm_num_groups=self.norm_num_groups,
        )


_SMOKE = {"steps": 4, "batch_size": 4, "save_every": 2, "restart_every": 2, "restart_stop": 1.0, "log_every": 1,
          "eval_images": 8, "warmup_steps": 1}


def load_config(path: str | Path | None = None, **overrides: Any) -> VQTrainConfig:
    """Defaults <- JSON file <- overrides (``None`` values are ignored)."""
    values: dict[str, Any] = {}
    if path is not None:
        values.update(json.loads(Path(path).read_text()))
    explicit = {k: v for k, v in overrides.items() if v is not None}
    if explicit.get("smoke", values.get("smoke", False)):
        values.update(_SMOKE)  # smoke presets, still overridable by explicit flags
    values.update(explicit)
    known = {f.name for f in dataclasses.fields(VQTrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown VQ training options: {unknown}")
    return VQTrainConfig(**values)


# --- data ------------------------------------------------------------------------------------------


def _to_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)


def train_batch(world: ShapesWorld, seed: int, step: int, batch_size: int) -> torch.Tensor:
    """Images for step ``step``: sources and targets of random train examples, in [0, 1]."""
    rng = np.random.default_rng([seed, step])
    indices = rng.integers(0, 2**31 - 1, size=math.ceil(batch_size / 2))
    images: list[np.ndarray] = []
    for i in indices:
        ex = world[int(i)]
        images += [ex.source, ex.target]
    return _to_tensor(images[:batch_size])


def heldout_images(n: int, split: str = "test", world_config: ShapesWorldConfig | None = None) -> torch.Tensor:
    """The first ``n`` images of ``split``: source then target of examples 0, 1, ..."""
    world = ShapesWorld(world_config, split)
    images: list[np.ndarray] = []
    for i in range(math.ceil(n / 2)):
        ex = world[i]
        images += [ex.source, ex.target]
    return _to_tensor(images[:n])


# --- evaluation ------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate_vq(vq: VQModel, images: torch.Tensor, batch_size: int = 64) -> dict[str, float | int]:
    """Reconstruct through codes (the inference path) and score: mean per-image PSNR, usage."""
    vq.eval()
    psnrs: list[torch.Tensor] = []
    codes_seen: list[torch.Tensor] = []
    for chunk in images.split(batch_size):
        codes = encode_to_codes(vq, chunk)
        recon = decode_codes(vq, codes).cpu()
        mse = (recon - chunk).pow(2).flatten(1).mean(1).clamp_min(1e-10)
        psnrs.append(10.0 * torch.log10(1.0 / mse))
        codes_seen.append(codes.flatten().cpu())
    psnr = torch.cat(psnrs)
    codes_all = torch.cat(codes_seen)
    counts = torch.bincount(codes_all, minlength=codebook_size(vq)).float()
    p = counts / counts.sum()
    perplexity = float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
    return {
        "images": int(images.shape[0]),
        "psnr_mean": float(psnr.mean()),
        "psnr_min": float(psnr.min()),
        "codes_used": int((counts > 0).sum()),
        "codebook_size": codebook_size(vq),
        "code_perplexity": perplexity,
    }


# --- checkpoints -----------------------------------------------------------------------------------


def _save_checkpoint(
    ckpt: Path, vq: VQModel, opt: torch.optim.Optimizer, usage: torch.Tensor, step: int, cfg: VQTrainConfig
) -> None:
    ckpt.mkdir(parents=True, exist_ok=True)
    vq.save_pretrained(ckpt, safe_serialization=True)
    # AdamW moments as flat tensors so resuming needs no pickle.
    sd = opt.state_dict()
    tensors = {f"{idx}.{k}": v.detach().cpu().contiguous() for idx, st in sd["state"].items() for k, v in st.items()}
    tensors["usage"] = usage.cpu()
    save_file(tensors, str(ckpt / "optimizer.safetensors"))
    state = {"step": step, "param_groups": sd["param_groups"], "config": dataclasses.asdict(cfg)}
    (ckpt / "state.json").write_text(json.dumps(state, indent=1))


def _load_checkpoint(ckpt: Path, vq: VQModel, opt: torch.optim.Optimizer, usage: torch.Tensor) -> int:
    vq.load_state_dict(load_file(str(ckpt / "diffusion_pytorch_model.safetensors")))
    state = json.loads((ckpt / "state.json").read_text())
    tensors = load_file(str(ckpt / "optimizer.safetensors"))
    usage.copy_(tensors.pop("usage"))
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        per_param.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": per_param, "param_groups": state["param_groups"]})
    return int(state["step"])


# --- training --------------------------------------------------------------------------------------


def _lr_at(step: int, cfg: VQTrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def _pixel_weights(x: torch.Tensor, fg_weight: float) -> torch.Tensor:
    """(B, 1, H, W) loss weights with mean 1, up-weighting non-background pixels."""
    if fg_weight <= 0:
        return torch.ones_like(x[:, :1])
    fg = ((x - x[:, :, :1, :1]).abs().amax(1, keepdim=True) > 0.5 / 255).float()
    w = 1.0 + fg_weight * fg
    return w / w.mean(dim=(1, 2, 3), keepdim=True)


@torch.no_grad()
def _restart_dead_codes(
    vq: VQModel, opt: torch.optim.Optimizer, usage: torch.Tensor, latents: torch.Tensor, gen: torch.Generator
) -> int:
    """Move codes unused since the last restart onto random encoder outputs; returns how many moved."""
    dead = (usage == 0).nonzero().flatten()
    if dead.numel() == 0:
        return 0
    z = latents.detach().permute(0, 2, 3, 1).reshape(-1, latents.shape[1]).float()
    pick = torch.randint(0, z.shape[0], (dead.numel(),), generator=gen)
    # A little noise so codes restarted onto the same latent split apart.
    noise = torch.randn(dead.numel(), z.shape[1], generator=gen) * (0.01 * z.std().item() + 1e-6)
    weight = vq.quantize.embedding.weight
    weight[dead.to(weight.device)] = (z[pick.to(z.device)].cpu() + noise).to(weight)
    # Stale Adam moments would drag the new vectors back where they came from.
    state = opt.state.get(weight, {})
    for key in ("exp_avg", "exp_avg_sq"):
        if key in state:
            state[key][dead.to(weight.device)] = 0
    return int(dead.numel())


def train_vq(config: VQTrainConfig) -> Path:
    """Train per ``config``; returns the folder of the final ``VQModel`` (``<out>/vq``)."""
    cfg = config
    torch.set_num_threads(cfg.threads)
    set_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))

    accelerator = Accelerator(mixed_precision=cfg.mixed_precision)
    vq = build_vq(cfg.vq_kwargs(), seed=cfg.seed)
    vq.quantize.legacy = cfg.legacy_vq_loss  # loss weighting only; not part of the saved model
    opt = torch.optim.AdamW(vq.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    usage = torch.zeros(codebook_size(vq), dtype=torch.long)

    start = 0
    ckpt = out / "checkpoint"
    if cfg.resume and (ckpt / "state.json").exists():
        start = _load_checkpoint(ckpt, vq, opt, usage)
        accelerator.print(f"resumed from {ckpt} at step {start}")
    raw_opt = opt
    vq, opt = accelerator.prepare(vq, opt)
    model: VQModel = accelerator.unwrap_model(vq)

    world = ShapesWorld(None, "train")
    log_path = out / "log.jsonl"
    if start == 0 and log_path.exists():
        log_path.unlink()
    restart_until = int(cfg.restart_stop * cfg.steps)
    t0 = time.time()
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="vq", disable=not cfg.progress)
    for step in bar:
        model.train()
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, cfg)
        x = train_batch(world, cfg.seed, step, cfg.batch_size).to(accelerator.device)
        with accelerator.autocast():
            latents = model.encode(x).latents
            quant, commit_loss, (_, _, indices) = model.quantize(latents)
            # Same path as VQModel.decode without re-quantising, so the indices stay at hand.
            spatial = quant if model.config.norm_type == "spatial" else None
            recon = model.decoder(model.post_quant_conv(quant), spatial).float()
            err = recon - x
            weight = _pixel_weights(x, cfg.fg_weight)
            l1 = (weight * err.abs()).mean()
            mse = err.pow(2).mean()
            wmse = (weight * err.pow(2)).mean()
            loss = cfg.l1_weight * l1 + cfg.mse_weight * wmse + cfg.commit_weight * commit_loss.float().mean()
        opt.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if cfg.grad_clip > 0:
            accelerator.clip_grad_norm_(vq.parameters(), cfg.grad_clip)
        opt.step()
        usage += torch.bincount(indices.flatten().cpu(), minlength=usage.numel())

        done = step + 1
        restarted = 0
        if cfg.restart_every > 0 and done % cfg.restart_every == 0:
            if done <= restart_until:
                gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + done)
                restarted = _restart_dead_codes(model, raw_opt, usage, latents, gen)
            usage.zero_()
        if done % cfg.log_every == 0 or done == cfg.steps:
            psnr = float(10 * torch.log10(1 / mse.detach().clamp_min(1e-10)))
            rec = {"step": done, "loss": loss.item(), "l1": l1.item(), "mse": mse.item(),
                   "commit": commit_loss.mean().item(), "batch_psnr": psnr, "restarted": restarted,
                   "lr": opt.param_groups[0]["lr"], "elapsed_s": round(time.time() - t0, 1)}
            with log_path.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            bar.set_postfix(loss=f"{loss.item():.4f}", psnr=f"{psnr:.1f}", restarted=restarted)
        if done % cfg.save_every == 0 or done == cfg.steps:
            _save_checkpoint(ckpt, model, raw_opt, usage, done, cfg)
    bar.close()
    wall = time.time() - t0

    final = out / "vq"
    model.save_pretrained(final, safe_serialization=True)
    metrics = evaluate_vq(model, heldout_images(cfg.eval_images, "test"))
    metrics.update({"split": "test", "steps": cfg.steps, "seed": cfg.seed, "train_wall_s": round(wall, 1),
                    "resumed_from": start})
    (out / "vq_metrics.json").write_text(json.dumps(metrics, indent=1))
    accelerator.print(json.dumps(metrics))
    return final


def main(argv: Sequence[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, help="JSON of VQTrainConfig fields; flags override it")
    p.add_argument("--out", type=str)
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--log-every", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"])
    p.add_argument("--codebook-size", type=int)
    p.add_argument("--restart-every", type=int)
    p.add_argument("--save-every", type=int)
    p.add_argument("--eval-images", type=int)
    p.add_argument("--resume", action="store_true", default=None, help="continue from <out>/checkpoint")
    p.add_argument("--smoke", action="store_true", default=None, help="a few tiny steps (tests)")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    args = vars(p.parse_args(argv))
    cfg = load_config(args.pop("config"), **args)
    return train_vq(cfg)


if __name__ == "__main__":
    main()

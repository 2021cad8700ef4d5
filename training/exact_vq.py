"""The shapes world's exact image tokenizer: one code per cell pattern, inside a diffusers ``VQModel``.

In the grid-aligned shapes world every 8x8 px cell is one of ``NUM_CELL_CODES`` exact patterns
(background, colour, kind, size, part). The tokenizer keeps the ``VQModel`` architecture (the folder loads
with ``VQModel.from_pretrained``) and:

* uses the hand-set cell-pixel encoder (``vq_cell_encoder``): a cell's latent is its 2x2-averaged pixels;
* sets the codebook to the latents of the canonical cells, row ``i`` = cell id ``i``, so encoding a world
  image gives exactly :meth:`ShapesWorld.codes` (all 605 patterns stay apart after averaging: the closest two
  latents are 0.25 apart, while re-encoding a cell moves it by 0);
* trains only the spatial-norm decoder, on the fixed codes of world images, until it reconstructs held-out
  images at >= 40 dB PSNR.

    python -m rm_edit.training.exact_vq --out runs/vq_exact --steps 6000
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import VQModel
from tqdm.auto import tqdm

from rm_edit.data.shapes import BACKGROUNDS, GRID, ShapesWorld, canonical_cells
from rm_edit.vq import as_vq_tokenizer, cell_latents

from .vq_cell_encoder import build_cell_pixel_vq


@torch.no_grad()
def build_exact_vq(seed: int = 0, cells: np.ndarray | None = None) -> VQModel:
    """Hand-set encoder + the canonical-cell codebook; the decoder is still random. ``cells``: another world's
    cell patterns, uint8 (N, 8, 8, 3) with row ``i`` = code ``i`` (default: the shapes world's 605)."""
    cells = canonical_cells(8) if cells is None else cells
    vq = build_cell_pixel_vq(len(cells), seed=seed)
    cells = torch.from_numpy(np.ascontiguousarray(cells)).permute(0, 3, 1, 2).float().div(255.0)
    vq.quantize.embedding.weight.copy_(cell_latents(vq, cells).flatten(1))
    return as_vq_tokenizer(vq, cell_local=True)  # codes are per cell: the folder records it


def image_code_batch(images: list[np.ndarray], codes: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (H, W, 3) images -> (n, 3, H, W) floats in [0, 1]; their codes -> (n, h, w)."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
    return x, torch.from_numpy(np.stack(codes))


def world_batch(world: ShapesWorld, rng: np.random.Generator, n_examples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sources and targets of random examples: images (2n, 3, 64, 64) in [0, 1] and their codes (2n, 8, 8)."""
    examples = [world[int(i)] for i in rng.integers(0, 2**31 - 1, size=n_examples)]
    return image_code_batch([im for ex in examples for im in (ex.source, ex.target)],
                            [ShapesWorld.codes(s) for ex in examples for s in (ex.source_scene, ex.target_scene)])


@dataclass(frozen=True)
class ExactVQWorld:
    """What the decoder trainer needs of a world: its VQ folder's name, the VQ with the world's codebook, random
    training batches (images, codes) from a seeded generator, the cells weighted by ``shape_weight`` (None: no
    such weighting) and the held-out figures of ``vq_metrics.json``."""

    folder: str
    build: Callable[[int], VQModel]
    batch: Callable[[np.random.Generator, int], tuple[torch.Tensor, torch.Tensor]]
    heldout: Callable[[VQModel], dict]
    weighted_cells: Callable[[torch.Tensor], torch.Tensor] | None = None
    name: str = "exact vq decoder"


def decode_from_codes(vq: VQModel, codes: torch.Tensor) -> torch.Tensor:
    """Differentiable decode of (B, 8, 8) codes (training; inference uses ``rm_edit.vq.decode_codes``)."""
    quantized = vq.quantize.embedding(codes).permute(0, 3, 1, 2)
    return vq.decoder(vq.post_quant_conv(quantized), quantized)


@torch.no_grad()
def heldout_psnr(vq: VQModel, n_examples: int = 128, split: str = "test") -> dict[str, float]:
    """Encode -> codes -> decode on held-out images (the inference path), PSNR per image."""
    from rm_edit.vq import decode_codes, encode_to_codes

    world = ShapesWorld(split=split)
    x = torch.from_numpy(np.stack([im for i in range(n_examples) for im in (world[i].source, world[i].target)]))
    x = x.permute(0, 3, 1, 2).float().div(255.0)
    codes = encode_to_codes(vq, x, cell_local=True)
    truth = torch.from_numpy(np.stack([ShapesWorld.codes(s) for i in range(n_examples)
                                       for s in (world[i].source_scene, world[i].target_scene)]))
    recon = decode_codes(vq, codes)
    recon = (recon * 255).round() / 255  # as saved to PNG
    mse = (recon - x).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    psnr = 10 * torch.log10(1 / mse)
    return {"images": len(x), "codes_exact": float((codes == truth).float().mean()),
            "psnr_mean": round(float(psnr.mean()), 2), "psnr_min": round(float(psnr.min()), 2)}


@torch.no_grad()
def oracle_edit_success(vq: VQModel, n_examples: int = 400, split: str = "val") -> dict[str, float]:
    """The decoder's ceiling on edits: decode the exact target codes, paste them into the changed cells (as
    paste-back does), and judge with ``rm_edit.metrics.edit_success``: what a perfect token model would score."""
    from rm_edit.metrics import edit_success
    from rm_edit.vq import decode_codes

    world = ShapesWorld(split=split)
    examples = [world[i] for i in range(n_examples)]
    codes = torch.from_numpy(np.stack([ShapesWorld.codes(e.target_scene) for e in examples]))
    decoded = (decode_codes(vq, codes).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    cell = np.ones((64 // GRID, 64 // GRID), dtype=bool)
    wins = []
    for i, e in enumerate(examples):
        region = np.kron((ShapesWorld.codes(e.target_scene) != ShapesWorld.codes(e.source_scene)), cell)
        wins.append(edit_success(e.source, np.where(region[..., None], decoded[i], e.source), e.target).success)
    return {"oracle_edits": n_examples, "oracle_edit_success": round(float(np.mean(wins)), 4)}


# The shapes world: folder ``vq``; shape cells (every code past the backgrounds) can be weighted up.
SHAPES_VQ = ExactVQWorld("vq", build_exact_vq, lambda rng, n: world_batch(ShapesWorld(split="train"), rng, n),
                         lambda vq: heldout_psnr(vq) | oracle_edit_success(vq),
                         weighted_cells=lambda codes: codes >= len(BACKGROUNDS))


def train_decoder(out: str | Path, steps: int, batch_examples: int = 8, lr: float = 2e-3, seed: int = 0,
                  threads: int = 1, save_every: int = 500, progress: bool = True, init_from: str | Path | None = None,
                  shape_weight: float = 0.0, world: ExactVQWorld = SHAPES_VQ) -> Path:
    """Train ``world``'s decoder on fixed exact codes; resumable from ``out/<world.folder>`` (weights) +
    ``out/state.json``; writes ``out/vq_metrics.json`` (``world.heldout``). Returns ``out/<world.folder>``.

    ``init_from``: start from this tokenizer folder's decoder instead of a random one. ``shape_weight``: pixels
    of ``world.weighted_cells`` weigh ``1 + shape_weight`` in the loss (edges inside small shapes are what edits
    redraw)."""
    torch.set_num_threads(threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    folder = out / world.folder
    state_path = out / "state.json"
    start = json.loads(state_path.read_text())["step"] if state_path.exists() else 0
    if start or init_from:
        vq = as_vq_tokenizer(VQModel.from_pretrained(folder if start else init_from), cell_local=True)
    else:
        vq = world.build(seed)
    if shape_weight and world.weighted_cells is None:
        raise ValueError("shape_weight needs a world with weighted cells")
    for p in vq.parameters():
        p.requires_grad_(False)
    trainable = list(vq.post_quant_conv.parameters()) + list(vq.decoder.parameters())
    for p in trainable:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
    lr_at = lambda s: lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))  # noqa: E731
    t0 = time.time()
    for step in tqdm(range(start, steps), initial=start, total=steps, disable=not progress, desc=world.name):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        x, codes = world.batch(np.random.default_rng([seed, step]), batch_examples)
        recon = decode_from_codes(vq, codes)
        if shape_weight:
            cell = x.shape[-1] // codes.shape[-1]
            weight = 1.0 + shape_weight * world.weighted_cells(codes).float().repeat_interleave(cell, 1).repeat_interleave(cell, 2)
            weight = weight.unsqueeze(1) / weight.mean()
            loss = (weight * (recon - x).pow(2)).mean() + 0.1 * (weight * (recon - x).abs()).mean()
        else:  # a weight of 1 everywhere, without the multiplications
            loss = (recon - x).pow(2).mean() + 0.1 * (recon - x).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % 100 == 0:
            psnr = -10 * torch.log10(F.mse_loss(recon.detach().clamp(0, 1), x))
            print(json.dumps({"step": step + 1, "batch_psnr": round(psnr.item(), 2), "s": round(time.time() - t0)}), flush=True)
        if (step + 1) % save_every == 0 or step + 1 == steps:
            vq.save_pretrained(folder, safe_serialization=True)
            state_path.write_text(json.dumps({"step": step + 1}))
    if not folder.exists():  # nothing was trained (steps=0): still a loadable folder, the decoder as it is
        vq.save_pretrained(folder, safe_serialization=True)
    metrics = world.heldout(vq.eval())
    metrics.update(steps=steps, wall_s=round(time.time() - t0, 1))
    (out / "vq_metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics), flush=True)
    return folder


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch-examples", type=int, default=8, help="examples per step (source + target images each)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--init-from", help="start from this tokenizer folder's decoder")
    p.add_argument("--shape-weight", type=float, default=0.0, help="extra loss weight of shape-cell pixels")
    a = p.parse_args(argv)
    train_decoder(a.out, a.steps, a.batch_examples, a.lr, a.seed, a.threads, progress=False, init_from=a.init_from,
                  shape_weight=a.shape_weight)


if __name__ == "__main__":
    main()

"""Fine-tune only the VQ decoder (encoder and codebook frozen), so the codes never change.

The MDMs are trained on the image tokenizer's codes; once those are fixed, reconstruction quality can still
improve by training the decoder alone, and every MDM trained on the codes stays valid.

    python -m rm_edit.training.finetune_vq_decoder --vq runs/vq/vq --out runs/vq_dec --steps 1500
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import VQModel
from tqdm.auto import tqdm

from rm_edit.vq import cell_latents

from .train_vq import evaluate_vq, heldout_images, train_batch


@torch.no_grad()
def kmeans_codebook(vq: VQModel, images: torch.Tensor, iters: int = 25, seed: int = 0) -> dict:
    """Set the codebook to k-means centroids of the encoder's latents over ``images`` (farthest-first init).

    Every code then stands for a real cluster of patches, so the codes carry the image's content from the
    start and no code is dead; the decoder is trained afterwards on these fixed codes.
    """
    latents = torch.cat([cell_latents(vq, images[i : i + 256]) for i in range(0, len(images), 256)])
    points = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    k = vq.quantize.embedding.weight.shape[0]
    gen = torch.Generator().manual_seed(seed)
    centroids = points[torch.randint(0, len(points), (1,), generator=gen)]
    dist = torch.cdist(points, centroids).squeeze(1)
    for _ in range(k - 1):  # farthest-first: rare patterns (small shapes) get codes too
        nxt = points[dist.argmax()].unsqueeze(0)
        centroids = torch.cat([centroids, nxt])
        dist = torch.minimum(dist, torch.cdist(points, nxt).squeeze(1))
    for _ in range(iters):
        assign = torch.cdist(points, centroids).argmin(1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=k).float().unsqueeze(1)
        centroids = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
    vq.quantize.embedding.weight.copy_(centroids)
    used = torch.cdist(points, centroids).argmin(1).unique().numel()
    return {"kmeans_points": len(points), "kmeans_codes_used": used}


def with_spatial_norm_decoder(vq: VQModel) -> VQModel:
    """The same encoder and codebook (so the same codes) with a fresh MoVQ-style decoder (``norm_type="spatial"``).

    GroupNorm over a flat colour field normalises the colour away; spatial norm re-injects the quantised
    latents at every decoder norm, which the shapes world's flat backgrounds need.
    """
    config = {k: v for k, v in vq.config.items() if not k.startswith("_")}
    new = VQModel(**{**config, "norm_type": "spatial"})
    keep = {k: v for k, v in vq.state_dict().items() if k.startswith(("encoder.", "quant_conv.", "quantize."))}
    missing = new.load_state_dict(keep, strict=False)
    assert not missing.unexpected_keys, missing.unexpected_keys
    return new


def finetune_decoder(vq_dir: str, out: str, steps: int, batch_size: int = 16, lr: float = 5e-4, seed: int = 0,
                     threads: int = 1, progress: bool = True, kmeans_images: int = 0,
                     spatial_norm: bool = False, eval_images: int = 256) -> Path:
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    from rm_edit.data.shapes import ShapesWorld

    vq = VQModel.from_pretrained(vq_dir)
    if spatial_norm and vq.config.norm_type != "spatial":
        vq = with_spatial_norm_decoder(vq)
    world = ShapesWorld(split="train")
    init = {}
    if kmeans_images:
        init = kmeans_codebook(vq, torch.cat([train_batch(world, seed + 7, i, 64) for i in range(kmeans_images // 64)]))
        vq.save_pretrained(Path(out) / "codes_vq", safe_serialization=True)  # fixed codes: pre-tokenise with this
        print(json.dumps(init), flush=True)
    trainable = list(vq.post_quant_conv.parameters()) + list(vq.decoder.parameters())
    for p in vq.parameters():
        p.requires_grad_(False)
    for p in trainable:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1), eta_min=lr * 0.05)
    t0 = time.time()
    for step in tqdm(range(steps), disable=not progress, desc="vq decoder"):
        x = train_batch(world, seed + 1000, step, batch_size)  # other draws than the VQ run
        with torch.no_grad():
            quantized = vq.quantize(cell_latents(vq, x))[0]
        recon = vq.decoder(vq.post_quant_conv(quantized), quantized if vq.config.norm_type == "spatial" else None)
        loss = F.l1_loss(recon, x) + F.mse_loss(recon, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 50 == 0:
            psnr = -10 * torch.log10(F.mse_loss(recon.detach().clamp(0, 1), x))
            print(json.dumps({"step": step + 1, "batch_psnr": round(psnr.item(), 2), "s": round(time.time() - t0, 1)}), flush=True)
    out_dir = Path(out)
    vq.save_pretrained(out_dir / "vq", safe_serialization=True)
    vq.rm_edit_cell_local = True
    metrics = evaluate_vq(vq.eval(), heldout_images(eval_images, "test"))
    metrics.update(init)
    metrics.update(decoder_finetune_steps=steps, decoder_finetune_wall_s=round(time.time() - t0, 1), base=str(vq_dir))
    (out_dir / "vq_metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics))
    return out_dir / "vq"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vq", required=True, help="trained VQModel folder")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--spatial-norm", action="store_true", help="swap in a spatial-norm decoder (same codes)")
    p.add_argument("--kmeans-images", type=int, default=0, help="first set the codebook by k-means over N images")
    a = p.parse_args(argv)
    finetune_decoder(a.vq, a.out, a.steps, a.batch_size, a.lr, a.seed, a.threads, kmeans_images=a.kmeans_images, spatial_norm=a.spatial_norm)


if __name__ == "__main__":
    main()

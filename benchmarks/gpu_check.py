"""One-call GPU check of Lumina-DiMOO-sized editing and LoRA RM post-training, with random weights.

    python benchmarks/gpu_check.py                 # 8B-shaped LLaDA in bf16 on CUDA (a few minutes)
    python benchmarks/gpu_check.py --tiny          # the same code path, tiny, on CPU (seconds)
    python benchmarks/gpu_check.py --json $OUT/gpu_check.json

Builds a random-weight LLaDATransformer with Lumina-DiMOO's shape (32 layers, d_model 4096, 32 heads, MLP
12288, vocabulary 134,548; bf16, allocated on the GPU; fewer layers if it does not fit), a tiny random VQ with
Lumina's 16x downsampling and 8192 codes, and the stand-in tokenizer, then reports for 512x512 edits (1024
codes): seconds per edit, forward passes, seconds per pass and peak memory for the reflective and regenerate
strategies at batch 1 and 4, with REDUCED step counts (printed, and extrapolated to the full counts), then
the time and peak memory of a few LoRA RM training steps. Random weights say nothing about edit quality: only
speed and memory are measured. The VQ is tiny, so encode/decode time is not aMUSEd's.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time

import numpy as np
import PIL.Image
import torch

from rm_edit.layout import LUMINA_DIMOO
from rm_edit.transformer import LLaDATransformer, count_parameters
from rm_edit.vq import build_vq

DIMOO_8B = dict(d_model=4096, n_layers=32, n_heads=32, n_kv_heads=32, mlp_hidden_size=12288)
TINY = dict(d_model=32, n_layers=2, n_heads=2, n_kv_heads=2, mlp_hidden_size=64)


def build_random_transformer(dims: dict, device: torch.device, dtype: torch.dtype) -> LLaDATransformer:
    """Allocate (and randomly initialise) directly on ``device`` in ``dtype``: no CPU copy, no cast."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LLaDATransformer(vocab_size=LUMINA_DIMOO.vocab_size, mask_token_id=LUMINA_DIMOO.mask_token_id,
                                     rope_theta=500000.0, max_sequence_length=4096, **dims)
    finally:
        torch.set_default_dtype(old)
    return model.eval()


class _Clock:
    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()

    def peak_gb(self) -> float | None:
        return round(torch.cuda.max_memory_allocated() / 2**30, 2) if self.cuda else None


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def run(args: argparse.Namespace) -> dict:
    from rm_edit.lumina_tokenizer import build_stand_in_tokenizer
    from rm_edit.pipelines.lumina_dimoo import LUMINA_PIPELINE_CONFIG, lumina_scheduler, stand_in_vq_config
    from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline

    start = time.time()
    cuda = torch.cuda.is_available() and not args.cpu
    if not args.tiny and not cuda:
        raise SystemExit("gpu_check needs CUDA for the 8B shape; use --tiny for the CPU path")
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    clock = _Clock(device)
    torch.manual_seed(0)
    dims = dict(TINY if args.tiny else DIMOO_8B)
    if args.layers:
        dims["n_layers"] = args.layers
    results: dict = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu", "dtype": str(dtype).replace("torch.", ""),
        "torch": torch.__version__, "image_size": args.image_size,
        "codes": (args.image_size // 16) ** 2,
        "reduced_steps": {"regenerate_steps": args.regen_steps, "reflective_turns": args.turns,
                          "reflective_reveal_steps": args.reveal_steps, "full_regenerate_steps": 64,
                          "full_reflective_passes": 3 * (1 + 4)},
        "edits": [], "lora": [], "skipped": [],
    }

    def say(text: str) -> None:
        print(text, flush=True)

    # ---- the model (the largest that fits, halving the layers on OOM) ----
    t0 = time.time()
    while True:
        try:
            transformer = build_random_transformer(dims, device, dtype)
            break
        except Exception as exc:  # noqa: BLE001
            if not (cuda and _is_oom(exc)) or dims["n_layers"] <= 1:
                raise
            gc.collect()
            torch.cuda.empty_cache()
            dims["n_layers"] //= 2
            say(f"out of memory; retrying with {dims['n_layers']} layers")
    clock.sync()
    results["model"] = {**dims, "vocab_size": LUMINA_DIMOO.vocab_size, "parameters": count_parameters(transformer),
                        "build_s": round(time.time() - t0, 2),
                        "weights_gb": round(count_parameters(transformer) * transformer.dtype.itemsize / 2**30, 2)}
    say(f"model: {results['model']}")

    vq = build_vq(stand_in_vq_config(), seed=0).to(device).eval()
    pipe = ReflectiveMaskingEditPipeline(vqvae=vq, transformer=transformer, tokenizer=build_stand_in_tokenizer(),
                                         scheduler=lumina_scheduler(), **LUMINA_PIPELINE_CONFIG)
    pipe.set_progress_bar_config(disable=True)
    rng = np.random.default_rng(0)
    image = PIL.Image.fromarray(rng.integers(0, 256, (args.image_size, args.image_size, 3), dtype=np.uint8))
    prompt = "make the sky red"

    def over_budget(what: str) -> bool:
        if time.time() - start > args.budget_s:
            results["skipped"].append(what)
            say(f"skipped {what}: past the {args.budget_s}s budget")
            return True
        return False

    pipe(image, prompt, strategy="regenerate", num_inference_steps=1)  # warm-up (kernels, allocator)
    for batch in args.batch_sizes:
        for strategy, use_kv_cache in (("reflective", False), ("reflective", True), ("regenerate", False)):
            name = f"{strategy}{' + kv cache' if use_kv_cache else ''} batch {batch}"
            if over_budget(name):
                continue
            gens = [torch.Generator().manual_seed(i) for i in range(batch)]
            clock.reset_peak()
            clock.sync()
            t0 = time.time()
            try:
                own = (dict(num_turns=args.turns, reveal_steps=args.reveal_steps) if strategy == "reflective"
                       else dict(num_inference_steps=args.regen_steps))
                out = pipe([image] * batch, prompt, strategy=strategy, generator=gens, output_type="np",
                           use_kv_cache=use_kv_cache, **own)
            except Exception as exc:  # noqa: BLE001
                if not (cuda and _is_oom(exc)):
                    raise
                torch.cuda.empty_cache()
                results["edits"].append({"strategy": strategy, "kv_cache": use_kv_cache, "batch": batch,
                                         "error": "out of memory"})
                say(f"{name}: out of memory")
                continue
            clock.sync()
            seconds = time.time() - t0
            passes = out.num_forward_passes
            per_pass = seconds / max(passes, 1)
            full = 64 if strategy == "regenerate" else 15
            record = {
                "strategy": strategy, "kv_cache": use_kv_cache, "batch": batch, "seconds": round(seconds, 3),
                "forward_passes": passes,
                "s_per_pass": round(per_pass, 4), "s_per_edit": round(seconds / batch, 3),
                "s_per_edit_full_steps_estimate": round(per_pass * full / batch, 3),
                "peak_gb": clock.peak_gb(), "output_shape": list(out.images.shape),
            }
            results["edits"].append(record)
            say(f"edit {name}: {record}")

    # ---- LoRA RM post-training steps ----
    from rm_edit.layout import build_edit_sequence, edit_prompt_text, pad_sequences
    from rm_edit.training.lora_rm import prepare_lora_model, rm_losses, trainable_parameters
    from rm_edit.training.trajectories import reflective_trajectory

    prepare_lora_model(transformer, rank=args.lora_rank, gradient_checkpointing=not args.tiny)
    transformer.train()
    params = list(trainable_parameters(transformer).values())
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    tok = pipe.tokenizer
    encode = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    head, close = edit_prompt_text(LUMINA_DIMOO, prompt)
    side = args.image_size // 16
    n = side * side
    g = torch.Generator().manual_seed(0)
    results["lora_trainable_parameters"] = sum(p.numel() for p in params)
    for batch in args.lora_batch_sizes:
        name = f"lora batch {batch}"
        if over_budget(name):
            continue
        source = torch.randint(0, LUMINA_DIMOO.codebook_size, (batch, n), generator=g)
        target = source.clone()
        target[:, : n // 4] = torch.randint(0, LUMINA_DIMOO.codebook_size, (batch, n // 4), generator=g)
        corrupted = reflective_trajectory(source, target, LUMINA_DIMOO.codebook_size, generator=g)
        seqs = [build_edit_sequence(LUMINA_DIMOO, encode(head), source[i].view(side, side),
                                    corrupted.state[i].view(side, side), encode(close)) for i in range(batch)]
        seq_batch = pad_sequences(seqs, LUMINA_DIMOO.pad_token_id).to(device)
        clock.reset_peak()
        times = []
        try:
            for step in range(args.lora_steps + 1):  # the first step warms up
                clock.sync()
                t0 = time.time()
                losses = rm_losses(transformer, LUMINA_DIMOO, seq_batch, corrupted)
                sum(losses.values()).backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                clock.sync()
                times.append(time.time() - t0)
        except Exception as exc:  # noqa: BLE001
            if not (cuda and _is_oom(exc)):
                raise
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            results["lora"].append({"batch": batch, "error": "out of memory"})
            say(f"{name}: out of memory")
            continue
        timed = times[1:] or times
        record = {"batch": batch, "sequence_length": int(seq_batch.input_ids.shape[1]), "steps_timed": len(timed),
                  "s_per_step": round(sum(timed) / len(timed), 3), "peak_gb": clock.peak_gb(),
                  "gradient_checkpointing": not args.tiny, "rank": args.lora_rank,
                  "losses": {k: round(v.item(), 3) for k, v in losses.items()}}
        results["lora"].append(record)
        say(f"{name}: {record}")
    results["total_s"] = round(time.time() - start, 1)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="tiny model and image, CPU-friendly (tests)")
    p.add_argument("--cpu", action="store_true", help="run on CPU even if CUDA is available (with --tiny)")
    p.add_argument("--layers", type=int, default=0, help="override the number of layers")
    p.add_argument("--image-size", type=int, default=None, help="square edit size in px (default 512; tiny 64)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="edit batch sizes (default 1 4)")
    p.add_argument("--regen-steps", type=int, default=None, help="regenerate steps (full: 64; default 8)")
    p.add_argument("--turns", type=int, default=None, help="reflective turns (full: 3; default 2)")
    p.add_argument("--reveal-steps", type=int, default=None, help="reveal steps per turn (full: 4; default 3)")
    p.add_argument("--lora-rank", type=int, default=16)
    p.add_argument("--lora-steps", type=int, default=None, help="timed LoRA steps (default 3)")
    p.add_argument("--lora-batch-sizes", type=int, nargs="+", default=None, help="LoRA batch sizes (default 1 4)")
    p.add_argument("--budget-s", type=float, default=420.0, help="skip the remaining sections after this many seconds")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    tiny = args.tiny
    defaults = dict(image_size=64 if tiny else 512, batch_sizes=[1, 2] if tiny else [1, 4], regen_steps=2 if tiny else 8,
                    turns=1 if tiny else 2, reveal_steps=2 if tiny else 3, lora_steps=2 if tiny else 3,
                    lora_batch_sizes=[1] if tiny else [1, 4])
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.image_size % 32:
        raise SystemExit("--image-size must be a multiple of 32")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    results = run(args)
    text = json.dumps(results)
    print("GPU_CHECK_JSON " + text, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            f.write(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])

"""One-call GPU check of the Lumina-DiMOO path (8B shape, random weights): load, edit, train. One table.

    python benchmarks/gpu_check.py --json $OUT/gpu_check.json      # one H100/H200: about 5 minutes
    python benchmarks/gpu_check.py --compile                         # the same with torch.compile'd blocks
    python benchmarks/gpu_check.py --tiny --cpu                      # the same code path, tiny, on CPU (tests)

Sections, each a row of the printed table (and a record of ``--json``):

1. load: a real-width LLaDA with ``--load-layers`` layers (8B width, Lumina's 134,548-class vocabulary; bf16)
   written as Lumina-DiMOO ships (sharded safetensors + index, tokenizer, vqvae/) and read back with
   ``LLaDATransformer.from_llada_checkpoint(device="cuda")`` (one tensor at a time, straight to the GPU): seconds,
   GB/s, host memory growth and whether the weights came back equal.
2. train loop: the real LoRA RM trainer (``rm_edit.training.train_mdm.train``, the lumina-dimoo-lora preset:
   gradient checkpointing, the model's own samples refreshed at step 0) on that folder for a few steps at batch
   4, on the GPU it is given (64x64 shapes images: 4x4 codes; prompts of several lengths, so each batch runs
   packed, ``pack_batches``): that it runs, seconds per step.
3. edits: the 32-layer model (``--layers`` fewer if it does not fit): 512x512 edits (1,024 codes), reflective
   with History Reference, with and without the key/value cache, and Lumina's regenerate sampler (64 steps,
   temperature 1), at batch 1 and 4: seconds per edit, forward passes, the forward passes alone timed by CUDA
   events against the whole loop (the host's share of a step), peak memory.
4. LoRA steps: rank-16 LoRA RM steps of the 32-layer model with gradient checkpointing at batch 1 and 4 (1,024
   codes, ~2.2k tokens per sequence): seconds per step, peak memory. Every row has the same prompt, so nothing
   is padded and attention runs without a mask (SDPA may pick flash); the key/value-cache edits of section 3 cache
   the packed branch row.

Not covered here: DeepSpeed ZeRO-3 (``configs/accelerate/deepspeed_zero3.yaml``, not yet run on GPUs; the trainer
sets the micro batch size and registers the output head's weight, ``training/deepspeed_setup.py``). On a machine
with several GPUs:
    pip install -e ".[deepspeed]"
    accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml --num_processes 2 \
        -m rm_edit.training.lora_rm --base DIR --train-codes CODES --out OUT --steps 3 --batch-size 4

Random weights say nothing about edit quality: only that the path runs, its speed and its memory. Without CUDA
it stops at once with one line (``--tiny --cpu`` runs the same code on CPU in seconds).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

DIMOO_8B = dict(d_model=4096, n_layers=32, n_heads=32, n_kv_heads=32, mlp_hidden_size=12288)
TINY = dict(d_model=32, n_layers=2, n_heads=2, n_kv_heads=2, mlp_hidden_size=64)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="tiny model and image (the CPU path, for tests)")
    p.add_argument("--cpu", action="store_true", help="run on CPU (with --tiny)")
    p.add_argument("--layers", type=int, default=0, help="layers of the edit / LoRA model (default 32; tiny 2)")
    p.add_argument("--load-layers", type=int, default=2, help="layers of the saved-and-loaded checkpoint")
    p.add_argument("--compile", action="store_true", help="torch.compile each block (LLaDATransformer.compile_blocks)")
    p.add_argument("--image-size", type=int, default=None, help="square edit size in px (default 512; tiny 64)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="edit batch sizes (default 1 4)")
    p.add_argument("--regen-steps", type=int, default=None, help="regenerate steps (default 64, Lumina's)")
    p.add_argument("--lora-batch-sizes", type=int, nargs="+", default=None, help="LoRA batch sizes (default 1 4)")
    p.add_argument("--lora-steps", type=int, default=None, help="timed LoRA steps (default 3)")
    p.add_argument("--budget-s", type=float, default=420.0, help="skip the remaining sections after this many seconds")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    t = args.tiny
    defaults = dict(image_size=64 if t else 512, batch_sizes=[1, 2] if t else [1, 4], regen_steps=4 if t else 64,
                    lora_steps=1 if t else 3, lora_batch_sizes=[1] if t else [1, 4])
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.image_size % 32:
        p.error("--image-size must be a multiple of 32")
    return args


class Timer:
    """Wall time of a section and, on CUDA, the transformer's forward passes alone (CUDA events around each)."""

    def __init__(self, cuda: bool, transformer=None):
        import torch

        self.torch, self.cuda, self.events, self.handles = torch, cuda, [], []
        if cuda and transformer is not None:
            def before(*_):
                start = torch.cuda.Event(enable_timing=True)
                start.record()
                self.events.append([start, None])

            def after(*_):
                end = torch.cuda.Event(enable_timing=True)
                end.record()
                self.events[-1][1] = end

            self.handles = [transformer.register_forward_pre_hook(before), transformer.register_forward_hook(after)]

    def __enter__(self):
        self.sync()
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats()
        self.events, self.start = [], time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.sync()
        self.seconds = time.perf_counter() - self.start
        self.forward_s = sum(a.elapsed_time(b) for a, b in self.events if b is not None) / 1e3 if self.cuda else None
        self.peak_gb = round(self.torch.cuda.max_memory_allocated() / 2**30, 2) if self.cuda else None
        return False

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def close(self):
        for h in self.handles:
            h.remove()


def _host_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _is_oom(exc: BaseException) -> bool:
    return "out of memory" in str(exc).lower()


def random_transformer(dims: dict, device, dtype):
    """Allocate (and randomly initialise) straight on ``device`` in ``dtype``: no host copy, no cast."""
    import torch

    from rm_edit.layout import LUMINA_DIMOO
    from rm_edit.transformer import LLaDATransformer

    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LLaDATransformer(vocab_size=LUMINA_DIMOO.vocab_size, mask_token_id=LUMINA_DIMOO.mask_token_id,
                                     rope_theta=500000.0, max_sequence_length=4096, tie_word_embeddings=False, **dims)
    finally:
        torch.set_default_dtype(old)
    return model.eval()


def check_load(args, device, dtype, work: Path) -> tuple[dict, Path]:
    """Section 1: write a real-width checkpoint folder, load it back onto ``device``."""
    import torch

    from rm_edit.pipelines.lumina_checkpoint import write_stand_in_folder
    from rm_edit.transformer import LLaDATransformer, count_parameters

    dims = {**(TINY if args.tiny else DIMOO_8B), "n_layers": args.load_layers}
    model = random_transformer(dims, device, dtype)
    folder = write_stand_in_folder(model, work / "checkpoint")
    probe = model.transformer["blocks"][0].q_proj.weight.detach().clone()
    nbytes = count_parameters(model) * model.dtype.itemsize
    del model
    gc.collect()
    host_before = _host_mb()
    with Timer(device.type == "cuda") as t:
        loaded = LLaDATransformer.from_llada_checkpoint(folder, torch_dtype=dtype, device=device)
    same = bool(torch.equal(loaded.transformer["blocks"][0].q_proj.weight, probe))
    del loaded
    return {"section": "load", "what": f"{dims['n_layers']}-layer checkpoint, {nbytes / 2**30:.2f} GB",
            "seconds": round(t.seconds, 2), "GB_per_s": round(nbytes / 2**30 / t.seconds, 2),
            "host_peak_growth_mb": round(_host_mb() - host_before), "weights_equal": same, "peak_gb": t.peak_gb}, folder


def check_train_loop(args, folder: Path, work: Path) -> dict:
    """Section 2: the real LoRA RM trainer for a few steps on the loaded folder (on CUDA when there is one)."""
    from rm_edit.data.shapes import write_shapes_dataset
    from rm_edit.training.lora_rm import lumina_lora_config
    from rm_edit.training.train_mdm import train

    manifest = write_shapes_dataset(work / "data", 8, split="train", progress=False)
    cfg = lumina_lora_config(init_from=str(folder), manifest=str(manifest), train_codes=str(work / "data" / "codes.safetensors"),
                             out=str(work / "run"), steps=3, batch_size=4, lora_rank=4, native_refresh_every=2,
                             log_every=1, save_every=0, threads=1 if args.tiny else 0)
    t0 = time.perf_counter()
    train(cfg, progress=False)
    seconds = time.perf_counter() - t0
    log = [json.loads(line) for line in (work / "run" / "log.jsonl").read_text().splitlines()]
    return {"section": "train loop", "what": "train_mdm lumina-dimoo-lora, 3 steps, batch 4, 4x4 codes",
            "seconds": round(seconds, 2), "steps": len(log), "peak_gb": log[-1].get("peak_gb"),
            "losses": {k: log[-1][k] for k in ("reveal", "mask", "keep") if k in log[-1]}}


def check_edits(args, pipe, cuda: bool, over_budget) -> list[dict]:
    """Section 3: reflective (HER on; with and without the KV cache) and regenerate edits at each batch size."""
    import numpy as np
    import PIL.Image
    import torch

    rng = np.random.default_rng(0)
    image = PIL.Image.fromarray(rng.integers(0, 256, (args.image_size, args.image_size, 3), dtype=np.uint8))
    rows, timer = [], Timer(cuda, pipe.transformer)
    settings = [("reflective", True, False), ("reflective", True, True), ("regenerate", False, False),
                ("regenerate", False, True)]
    pipe(image, "make the sky red", strategy="regenerate", num_inference_steps=2)  # warm-up (kernels, compile)
    for batch in args.batch_sizes:
        for strategy, her, kv in settings:
            name = f"{strategy}{' + HER' if her else ''}{' + kv cache' if kv else ''}"
            if over_budget(f"{name} batch {batch}"):
                continue
            try:
                with timer as t:
                    out = pipe([image] * batch, "make the sky red", strategy=strategy, use_history=her, use_kv_cache=kv,
                               num_inference_steps=args.regen_steps if strategy == "regenerate" else None,
                               generator=[torch.Generator().manual_seed(i) for i in range(batch)], output_type="np")
            except Exception as exc:  # noqa: BLE001
                if not (cuda and _is_oom(exc)):
                    raise
                torch.cuda.empty_cache()
                rows.append({"section": "edit", "what": f"{name}, batch {batch}", "error": "out of memory"})
                continue
            row = {"section": "edit", "what": f"{name}, batch {batch}", "seconds": round(t.seconds, 3),
                   "s_per_edit": round(t.seconds / batch, 3), "passes": out.num_forward_passes,
                   "s_per_pass": round(t.seconds / max(out.num_forward_passes, 1), 4), "peak_gb": t.peak_gb}
            if t.forward_s is not None:
                row["forward_s"] = round(t.forward_s, 3)
                row["host_share"] = round(max(0.0, 1 - t.forward_s / t.seconds), 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
    timer.close()
    return rows


def check_lora_steps(args, transformer, pipe, cuda: bool, over_budget) -> list[dict]:
    """Section 4: LoRA RM steps of the big model with gradient checkpointing at 1,024 codes."""
    import torch

    from rm_edit.layout import LUMINA_DIMOO as L
    from rm_edit.layout import build_edit_sequence, edit_prompt_text, pad_sequences
    from rm_edit.training.lora_rm import prepare_lora_model, rm_losses, trainable_parameters
    from rm_edit.training.trajectories import reflective_trajectory

    prepare_lora_model(transformer, rank=16, gradient_checkpointing=True)
    transformer.train()
    optimizer = torch.optim.AdamW(list(trainable_parameters(transformer).values()), lr=1e-4)
    encode = lambda text: pipe.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    head, close = edit_prompt_text(L, "make the sky red")
    side = args.image_size // 16
    g, rows = torch.Generator().manual_seed(0), []
    for batch in args.lora_batch_sizes:
        if over_budget(f"lora batch {batch}"):
            continue
        source = torch.randint(0, L.codebook_size, (batch, side * side), generator=g)
        target = source.clone()
        target[:, : side * side // 4] = torch.randint(0, L.codebook_size, (batch, side * side // 4), generator=g)
        corrupted = reflective_trajectory(source, target, L.codebook_size, generator=g)
        seqs = [build_edit_sequence(L, encode(head), source[i].view(side, side), corrupted.state[i].view(side, side),
                                    encode(close)) for i in range(batch)]
        seq_batch = pad_sequences(seqs, L.pad_token_id).to(transformer.device)
        times = []
        try:
            with Timer(cuda) as t:
                for _ in range(args.lora_steps + 1):  # the first step warms up
                    t0 = time.perf_counter()
                    losses = rm_losses(transformer, L, seq_batch, corrupted)
                    sum(losses.values()).backward()
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    t.sync()
                    times.append(time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001
            if not (cuda and _is_oom(exc)):
                raise
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            rows.append({"section": "lora", "what": f"rank 16, batch {batch}", "error": "out of memory"})
            continue
        timed = times[1:] or times
        rows.append({"section": "lora", "what": f"rank 16 + checkpointing, batch {batch}, "
                     f"{seq_batch.input_ids.shape[1]} tokens", "s_per_step": round(sum(timed) / len(timed), 3),
                     "peak_gb": t.peak_gb, "losses": {k: round(v.item(), 3) for k, v in losses.items()}})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def print_table(rows: list[dict]) -> None:
    columns = ["section", "what", "seconds", "s_per_edit", "passes", "s_per_pass", "forward_s", "host_share",
               "s_per_step", "GB_per_s", "peak_gb", "error"]
    columns = [c for c in columns if any(c in r for r in rows)]
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda values: " | ".join(v.ljust(w) for v, w in zip(values, widths))  # noqa: E731
    print(line(columns))
    print("-+-".join("-" * w for w in widths))
    for row in cells:
        print(line(row))


def run(args) -> dict:
    import torch

    cuda = torch.cuda.is_available() and not args.cpu
    if not cuda and not args.tiny:
        raise SystemExit("gpu_check: no CUDA device here (torch.cuda.is_available() is False); "
                         "run it on a GPU machine, or --tiny --cpu for the CPU path")
    start = time.time()
    device, dtype = torch.device("cuda" if cuda else "cpu"), torch.bfloat16 if cuda else torch.float32
    torch.manual_seed(0)
    results = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
               "dtype": str(dtype).replace("torch.", ""), "image_size": args.image_size,
               "codes": (args.image_size // 16) ** 2, "compile": args.compile, "rows": [], "skipped": []}

    def over_budget(what: str) -> bool:
        if time.time() - start > args.budget_s:
            results["skipped"].append(what)
            return True
        return False

    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        row, folder = check_load(args, device, dtype, Path(tmp))
        results["rows"].append(row)
        print(json.dumps(row), flush=True)
        results["rows"].append(check_train_loop(args, folder, Path(tmp)))
        print(json.dumps(results["rows"][-1]), flush=True)
    if cuda:
        torch.cuda.empty_cache()

    from rm_edit.lumina_tokenizer import build_stand_in_tokenizer
    from rm_edit.pipelines.lumina_dimoo import LUMINA_PIPELINE_CONFIG, lumina_scheduler, stand_in_vq_config
    from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline
    from rm_edit.transformer import count_parameters
    from rm_edit.vq import build_vq

    dims = dict(TINY if args.tiny else DIMOO_8B)
    dims["n_layers"] = args.layers or dims["n_layers"]
    while True:  # the largest that fits: halve the layers on out-of-memory
        try:
            transformer = random_transformer(dims, device, dtype)
            break
        except Exception as exc:  # noqa: BLE001
            if not (cuda and _is_oom(exc)) or dims["n_layers"] <= 1:
                raise
            gc.collect()
            torch.cuda.empty_cache()
            dims["n_layers"] //= 2
    transformer.register_to_config(rm_post_trained=True)  # the reflective path, as with an RM adapter
    if args.compile:
        transformer.compile_blocks()
    results["model"] = {**dims, "parameters": count_parameters(transformer),
                        "weights_gb": round(count_parameters(transformer) * transformer.dtype.itemsize / 2**30, 2)}
    pipe = ReflectiveMaskingEditPipeline(vqvae=build_vq(stand_in_vq_config(), seed=0).to(device).eval(),
                                         transformer=transformer, tokenizer=build_stand_in_tokenizer(),
                                         scheduler=lumina_scheduler(), **LUMINA_PIPELINE_CONFIG)
    pipe.set_progress_bar_config(disable=True)
    results["rows"] += check_edits(args, pipe, cuda, over_budget)
    results["rows"] += check_lora_steps(args, transformer, pipe, cuda, over_budget)
    results["total_s"] = round(time.time() - start, 1)
    return results


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    results = run(args)
    print(f"\ngpu_check on {results['device']} (torch {results['torch']}, {results['dtype']}, model {results['model']}, "
          f"{results['codes']} codes, compile {results['compile']}), {results['total_s']} s")
    print_table(results["rows"])
    if results["skipped"]:
        print(f"skipped (past --budget-s): {', '.join(results['skipped'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])

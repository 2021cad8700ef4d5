"""Speed benchmark: reflective vs regenerate editing, batch 1 vs 16 (prints a table; not a test).

    python benchmarks/benchmark_speed.py                  # the shipped default model, CPU
    python benchmarks/benchmark_speed.py --model DIR --n 32 --threads 2
    python benchmarks/benchmark_speed.py --model rm_edit/models/shapes-rm --no-history
    python benchmarks/benchmark_speed.py --forward-only   # raw transformer forward timings

For each strategy and batch size it reports transformer forward passes per edit, seconds per edit, edits
per second and the edit quality at token level on the shapes world's test split (edit-region accuracy
against the ground-truth target codes, fraction of tokens outside the true change kept). Each model runs with
its own recorded settings (History Reference as its transformer config records it) unless told otherwise. On a CUDA machine
``--synthetic-8b`` adds an 8B-shaped random LLaDA (timing only).
"""

from __future__ import annotations

import argparse
import time

import torch
from PIL import Image

from rm_edit.data.shapes import ShapesWorld
from rm_edit.evaluation.token_eval import evaluate_tokens
from rm_edit.layout import SHAPES
from rm_edit.schedulers import REGENERATE_STEPS
from rm_edit.transformer import LLaDATransformer


def time_forward(config: dict, seq_len: int, batch_sizes=(1, 16), repeats: int = 5, device="cpu", dtype=torch.float32):
    model = LLaDATransformer(**config).to(device=device, dtype=dtype).eval()
    rows = []
    for b in batch_sizes:
        ids = torch.randint(0, config["vocab_size"], (b, seq_len), device=device)
        with torch.no_grad():
            model(ids)  # warm-up
            if device != "cpu":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(repeats):
                model(ids)
            if device != "cpu":
                torch.cuda.synchronize()
        rows.append((b, (time.perf_counter() - t0) / repeats))
    return rows


def benchmark_pipeline(pipe, n: int, batch_sizes=(1, 16), reveal_steps: int | None = None,
                       use_history: bool | None = None) -> list[dict]:
    world = ShapesWorld(split="test")
    examples = [world[i] for i in range(n)]
    rows = []
    reflective = dict(use_history=use_history, reveal_steps=reveal_steps)
    runs = (
        ("reflective", "reflective", reflective),
        ("reflective+kv", "reflective", dict(reflective, use_kv_cache=True)),
        ("regenerate", "regenerate", dict(num_inference_steps=REGENERATE_STEPS)),
        ("regenerate+kv", "regenerate", dict(num_inference_steps=REGENERATE_STEPS, use_kv_cache=True)),
    )
    for label, strategy, options in runs:
        for b in batch_sizes:
            warm = Image.fromarray(examples[0].source)
            pipe(warm, examples[0].instruction, strategy=strategy, output_type="latent", **options)  # warm-up
            t0 = time.perf_counter()
            result = evaluate_tokens(pipe, examples, batch_size=b, progress=False, strategy=strategy, **options)
            seconds = time.perf_counter() - t0
            calls = (n + b - 1) // b
            rows.append(dict(
                strategy=label, batch=b, passes_per_call=result["forward_passes"],
                passes_per_edit=result["forward_passes"] * calls / n, sec_per_edit=seconds / n,
                edits_per_s=n / seconds, edit_accuracy=result["edit_accuracy"], kept_outside=result["kept_outside"],
            ))
    return rows


def print_table(rows: list[dict]) -> None:
    head = f"| {'strategy':<13} | {'batch':>5} | {'passes/call':>11} | {'s/edit':>7} | {'edits/s':>7} | {'edit acc':>8} | {'kept out':>8} |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for r in rows:
        print(f"| {r['strategy']:<13} | {r['batch']:>5} | {r['passes_per_call']:>11.2f} | {r['sec_per_edit']:>7.3f} | "
              f"{r['edits_per_s']:>7.2f} | {r['edit_accuracy']:>8.3f} | {r['kept_outside']:>8.3f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="pipeline folder (default: the shipped default model)")
    parser.add_argument("--n", type=int, default=32, help="test examples per configuration")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--reveal-steps", type=int, help="reflective reveal steps per turn (default: the model's)")
    parser.add_argument("--history", action=argparse.BooleanOptionalAction, default=None,
                        help="History Reference in the reflective rows (default: as the model was trained)")
    parser.add_argument("--batch-sizes", default="1,16", help="comma list")
    parser.add_argument("--forward-only", action="store_true")
    parser.add_argument("--synthetic-8b", action="store_true", help="also time an 8B-shaped LLaDA (CUDA only)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    seq_len = 170  # the default model's editing sequence (instruction + 2 x (8 rows x (8 codes + eor)) + tags)
    if args.forward_only:
        cfg = dict(vocab_size=SHAPES.vocab_size, d_model=256, n_layers=6, n_heads=4, mlp_hidden_size=512)
        for b, s in time_forward(cfg, seq_len):
            print(f"forward 6 layers d=256, length {seq_len}, batch {b:>2}: {s * 1000:.1f} ms")
        return
    from rm_edit.pipelines.default_model import load_default_pipeline
    from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline

    pipe = ReflectiveMaskingEditPipeline.from_pretrained(args.model) if args.model else load_default_pipeline()
    pipe.set_progress_bar_config(disable=True)
    print(f"device: cpu, torch threads {torch.get_num_threads()}, {args.n} shapes test edits per row")
    batch_sizes = tuple(int(b) for b in args.batch_sizes.split(","))
    print_table(benchmark_pipeline(pipe, args.n, batch_sizes, args.reveal_steps, use_history=args.history))
    if args.synthetic_8b:
        if not torch.cuda.is_available():
            print("synthetic 8B: skipped (no CUDA device)")
        else:
            cfg = dict(vocab_size=134548, d_model=4096, n_layers=32, n_heads=32, mlp_hidden_size=12288)
            for b, s in time_forward(cfg, 2200, (1, 4), repeats=3, device="cuda", dtype=torch.bfloat16):
                print(f"8B-shaped forward, length 2200, batch {b}: {s:.3f} s")


if __name__ == "__main__":
    main()

"""Seconds per training step of the shapes base's transformer on this machine, fp32 against bf16 autocast, at the
shipped width and wider ones (prints a table; not a test). What a larger base would cost before training one.

    python benchmarks/training_step_speed.py [--batch 64] [--threads 2] [--widths 128x4,192x6]

A width ``DxL`` is d_model x layers, with MLP 4 x d_model and d_model / 32 heads (the shipped base: 128x4). Each
step is a forward, a cross-entropy over every position, a backward and an AdamW step on random codes of the
shapes layout's sequence length (the shipped base's config); the median of ``--steps`` after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from rm_edit.transformer import LLaDATransformer

BASE = Path(__file__).resolve().parent.parent / "rm_edit" / "models" / "shapes-base" / "transformer" / "config.json"


def step_seconds(config: dict, batch: int, steps: int, bf16: bool) -> float:
    model = LLaDATransformer(**config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    codes = torch.randint(0, config["vocab_size"], (batch, config["max_sequence_length"]))
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(codes).logits
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), codes.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--widths", default="128x4,192x6")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    base = {k: v for k, v in json.loads(BASE.read_text()).items() if not k.startswith("_")}
    print(f"batch {a.batch} x {base['max_sequence_length']} positions, {a.threads} threads")
    print("| width | parameters | fp32 s/step | bf16 autocast s/step |\n|---|---:|---:|---:|")
    for width in a.widths.split(","):
        d, layers = (int(x) for x in width.split("x"))
        config = {**base, "d_model": d, "n_layers": layers, "n_heads": d // 32, "mlp_hidden_size": 4 * d}
        params = sum(p.numel() for p in LLaDATransformer(**config).parameters())
        fp32, bf16 = (step_seconds(config, a.batch, a.steps, b) for b in (False, True))
        print(f"| {width} | {params / 1e6:.2f}M | {fp32:.2f} | {bf16:.2f} |", flush=True)


if __name__ == "__main__":
    main()

"""Host work of one sampling step at Lumina-DiMOO's shape (1,024 codes, 8,192 codes + [MASK]), before and after
the sampler moved onto the transformer's device.

    python benchmarks/sampler_host_work.py                # regenerate at temperature 1 and a reflective turn
    python benchmarks/sampler_host_work.py --steps 3 --threads 1

What a step costs the host besides the forward pass, per row:

* before: the guided logits copied to the host (``.cpu()``, 33 MB per row in fp32), a host ``zeros`` of the
  batch's logits, the scheduler's step there (log-softmax, Gumbel noise from a CPU generator, the keep / re-mask
  / reveal rule), History Reference recorded on the host, and the branch sequences rebuilt from the state. All
  of it is host compute, timed here as it ran.
* after: the step's tensors live on the device; the host only issues the same ops (no copy, no host compute).
  That issuing cost is timed on PyTorch's ``meta`` device, which runs every op's shape logic and dispatch
  without computing anything: what the host does per step when the compute is on an accelerator (kernel launch
  latency itself, a few microseconds per op on CUDA, is not included). The same new code on the CPU device
  (where the CPU is the accelerator) is printed too.

Prints one JSON line per (sampler, path) and the before / after ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn

from rm_edit.history import HistoryRecorder, scatter_offsets
from rm_edit.layout import LUMINA_DIMOO as L
from rm_edit.layout import SequenceBatch, build_edit_sequence, pad_sequences
from rm_edit.schedulers import LuminaRegenerateScheduler, ReflectiveMaskingScheduler

GRID, D_MODEL, G_TEXT, G_IMAGE = 32, 4096, 2.5, 4.0
PROMPT = list(range(1000, 1060))  # a 60-token system prompt + instruction (ids are irrelevant to the timing)
UNCOND = list(range(2000, 2030))
CLOSE = [3000, 3001]


def _branches(source: torch.Tensor, state: torch.Tensor) -> SequenceBatch:
    """The old per-step rebuild: cond, no-instruction and no-image sequences from the (N,) state."""
    grid = state.view(GRID, GRID)
    seqs = [build_edit_sequence(L, PROMPT, source, grid, CLOSE), build_edit_sequence(L, UNCOND, source, grid, CLOSE),
            build_edit_sequence(L, PROMPT, None, grid, CLOSE)]
    return pad_sequences(seqs, L.pad_token_id)


def _guided(out: torch.Tensor) -> torch.Tensor:
    cond, no_text, no_image = out.float()
    return (cond + G_TEXT * (cond - no_text) + G_IMAGE * (cond - no_image))[None]


def _scheduler(kind: str):
    if kind == "regenerate":
        return LuminaRegenerateScheduler(codebook_size=L.codebook_size, num_inference_steps=64, temperature=1.0)
    return ReflectiveMaskingScheduler(codebook_size=L.codebook_size, num_turns=1, reveal_steps=2)


def _timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def before(kind: str, steps: int, branch_logits: torch.Tensor, embedding: nn.Embedding) -> float:
    """ms per step of the host work of the old loop (everything after the forward ran on the host)."""
    source = torch.randint(0, L.codebook_size, (GRID, GRID), generator=torch.Generator().manual_seed(0))
    scheduler = _scheduler(kind)
    history = HistoryRecorder(embedding, L, 1, GRID * GRID, device="cpu")
    state = scheduler.begin(source.reshape(1, -1), None, history)
    generator = torch.Generator().manual_seed(0)
    device_guided = _guided(branch_logits)  # computed on the device in the old loop too: not host work
    times = []
    for t in scheduler.timesteps.tolist()[:steps]:
        start = time.perf_counter()
        batch = _branches(source, state[0])  # rebuilt from the host state every step
        reference = history.embeddings(torch.tensor([0]))
        scatter_offsets(reference.repeat(3, 1, 1), batch.target_positions, batch.input_ids.shape[1])
        guided = device_guided.clone()  # the device -> host copy of ``.cpu()`` (a host memcpy here)
        logits = torch.zeros(1, GRID * GRID, L.codebook_size + 1).index_copy_(0, torch.tensor([0]), guided)
        state = scheduler.step(logits, t, state, generator=generator).prev_sample
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def after(kind: str, steps: int, device: str, branch_logits: torch.Tensor, embedding: nn.Embedding) -> float:
    """ms per step the host spends on the new loop's step with every tensor on ``device``."""
    source = torch.randint(0, L.codebook_size, (GRID, GRID), generator=torch.Generator().manual_seed(0))
    template = _branches(source, source.reshape(-1)).to(device)  # built once per call
    branch_logits = branch_logits.to(device)
    embedding = nn.Embedding.from_pretrained(embedding.weight.to(device))  # a copy: the caller keeps its own
    scheduler = _scheduler(kind)
    history = HistoryRecorder(embedding, L, 1, GRID * GRID, device=device)
    state = scheduler.begin(source.reshape(1, -1).to(device), None, history)
    generator = torch.Generator(device).manual_seed(0) if device != "meta" else None  # meta has no generator
    row_index = torch.tensor([0], device=device)
    times = []
    for t in scheduler.timesteps.tolist()[:steps]:
        start = time.perf_counter()
        ids = L.ids_from_code_state(state).repeat(3, 1)
        batch = SequenceBatch(template.input_ids.scatter(1, template.target_positions, ids), template.attention_mask,
                              template.target_positions)
        reference = history.embeddings(row_index)
        scatter_offsets(reference.repeat(3, 1, 1), batch.target_positions, batch.input_ids.shape[1])
        logits = _guided(branch_logits)  # the head computed only the 8,193 classes (output_classes)
        state = scheduler.step(logits, t, state, generator=generator).prev_sample
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/sampler_host_work.py")
    parser.add_argument("--steps", type=int, default=3, help="steps timed per sampler (median reported)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # Branch logits as the head gives them (bf16, the 8,193 used classes) and an embedding table of the 8B
    # model's width restricted to what History Reference reads (image codes).
    branch_logits = (torch.randn(3, GRID * GRID, L.codebook_size + 1) * 3).to(torch.bfloat16)
    rows = torch.randn(1, D_MODEL).expand(L.image_code_offset + L.codebook_size, D_MODEL)  # one row, no 2 GB table
    embedding = nn.Embedding.from_pretrained(rows)
    with torch.no_grad():
        for kind in ("regenerate", "reflective"):
            old = before(kind, args.steps, branch_logits, embedding)
            new_meta = after(kind, args.steps, "meta", branch_logits, embedding)
            new_cpu = after(kind, args.steps, "cpu", branch_logits, embedding)
            print(json.dumps({
                "sampler": kind, "codes": GRID * GRID, "classes": L.codebook_size + 1, "threads": args.threads,
                "before_host_ms_per_row_step": round(old, 2),
                "after_host_ms_per_row_step (device tensors, issue cost)": round(new_meta, 2),
                "after_on_cpu_device_ms_per_row_step": round(new_cpu, 2),
                "host_work_reduction": round(old / new_meta, 1),
            }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

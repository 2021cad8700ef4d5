"""Peak host memory of loading a Lumina-DiMOO-layout checkpoint (a measurement script, not a test).

    python benchmarks/benchmark_host_memory.py write /tmp/dimoo-2gb --gb 2   # random weights, released layout
    python benchmarks/benchmark_host_memory.py compare /tmp/dimoo-2gb --dtype fp32
    rm -r /tmp/dimoo-2gb

``write`` makes a folder in the layout Lumina-DiMOO ships (LLaDA config.json, bf16 safetensors shards + index)
with Lumina's vocabulary and a LLaDA shape sized to about ``--gb`` GB, one tensor at a time (no whole model
in memory). ``compare`` loads the transformer in fresh processes, once with the whole-state-dict loader this
project had before (every shard read into one dict, assigned, then cast) and once with
:meth:`LLaDATransformer.from_llada_checkpoint` (meta-device model, one tensor read, cast and assigned at a
time), and prints each one's peak RSS above the process's RSS before loading, against the bound
1.3 x largest shard + the model's own size in the target dtype.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch

from rm_edit.layout import LUMINA_DIMOO

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
SHARD_BYTES = 700 * 2**20


def _dims_for(gigabytes: float) -> dict:
    """A LLaDA shape (d_model 2048, MLP 5632) with as many layers as bring the bf16 size to ``gigabytes``."""
    d, mlp, rows = 2048, 5632, LUMINA_DIMOO.vocab_size
    per_layer = 4 * d * d + 3 * d * mlp + 2 * d
    layers = max(1, round((gigabytes * 1e9 / 2 - 2 * rows * d - d) / per_layer))
    return dict(d_model=d, n_layers=layers, n_heads=16, n_kv_heads=16, mlp_hidden_size=mlp)


def write_folder(folder: Path, gigabytes: float, seed: int = 0) -> dict:
    """A random-weight checkpoint in the released layout, written shard by shard."""
    from safetensors.torch import save_file

    from rm_edit.transformer import LLaDATransformer, llada_config

    dims = _dims_for(gigabytes)
    with torch.device("meta"):  # shapes only: the tensors are made one at a time below
        model = LLaDATransformer(vocab_size=LUMINA_DIMOO.vocab_size, mask_token_id=LUMINA_DIMOO.mask_token_id,
                                 rope_theta=500000.0, tie_word_embeddings=False, **dims)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(llada_config(model), indent=2))
    gen = torch.Generator().manual_seed(seed)
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    groups, size = [[]], 0
    for name, shape in shapes.items():
        nbytes = 2 * torch.Size(shape).numel()
        if groups[-1] and size + nbytes > SHARD_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += nbytes
    weight_map = {}
    for i, names in enumerate(groups):
        fname = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        shard = {}
        for name in names:
            t = torch.empty(shapes[name], dtype=torch.bfloat16)
            t.normal_(0.0, 0.02, generator=gen) if t.dim() > 1 else t.fill_(1.0)
            shard["model." + name] = t
        save_file(shard, str(folder / fname), metadata={"format": "pt"})
        weight_map.update({"model." + n: fname for n in names})
        del shard
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    total = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    return {"folder": str(folder), "bytes": total, "shards": len(groups), **dims}


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _whole_state_dict_load(folder: Path, dtype: torch.dtype):
    """The loader before the change: every shard into one dict, assign, then cast (the baseline)."""
    from safetensors.torch import load_file

    from rm_edit.transformer import LLaDATransformer, _llada_weight_files, llada_config_to_kwargs

    with torch.device("meta"):
        model = LLaDATransformer(**llada_config_to_kwargs(json.loads((folder / "config.json").read_text())))
    state = {}
    for file in _llada_weight_files(folder):
        state.update({k[len("model."):]: v for k, v in load_file(str(file)).items()})
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(dtype)


def measure(folder: Path, loader: str, dtype_name: str) -> dict:
    """Load once in this process; peak RSS (MiB) above the RSS just before loading."""
    from rm_edit.transformer import LLaDATransformer

    torch.set_num_threads(1)
    dtype = DTYPES[dtype_name]
    before = _rss_mib()
    if loader == "whole-state-dict":
        model = _whole_state_dict_load(folder, dtype)
    else:
        model = LLaDATransformer.from_llada_checkpoint(folder, torch_dtype=dtype)
    with torch.no_grad():  # read every weight: safetensors may map the file lazily, which RSS would not show
        for param in model.parameters():
            param.sum()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    model_mib = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    return {"loader": loader, "dtype": dtype_name, "rss_before_mib": round(before), "peak_mib": round(peak),
            "peak_above_before_mib": round(peak - before), "model_mib": round(model_mib)}


def compare(folder: Path, dtype_name: str) -> list[dict]:
    largest = max(f.stat().st_size for f in folder.glob("*.safetensors")) / 2**20
    rows = []
    for loader in ("whole-state-dict", "per-tensor"):
        out = subprocess.run([sys.executable, __file__, "measure", str(folder),
                              "--loader", loader, "--dtype", dtype_name], check=True, capture_output=True, text=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["bound_mib"] = round(1.3 * largest + row["model_mib"])
        row["largest_shard_mib"] = round(largest)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/benchmark_host_memory.py")
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="write a random-weight folder in the released layout")
    w.add_argument("folder", type=Path)
    w.add_argument("--gb", type=float, default=2.0)
    for name in ("measure", "compare"):
        p = sub.add_parser(name)
        p.add_argument("folder", type=Path)
        p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
        if name == "measure":
            p.add_argument("--loader", choices=("whole-state-dict", "per-tensor"), required=True)
    args = parser.parse_args(argv)
    if args.command == "write":
        print(json.dumps(write_folder(args.folder, args.gb)))
    elif args.command == "measure":
        print(json.dumps(measure(args.folder, args.loader, args.dtype)))
    else:
        for row in compare(args.folder, args.dtype):
            print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Pre-tokenise an edit manifest: encode every source/target image to VQ codes once, cache in safetensors.

The cache is ``codes.safetensors`` (``source``, ``target`` int16 (N, h, w), ``has_target`` bool (N,)) plus
``codes.json`` (the manifest path, ids, instructions, edit types, the VQ folder), so training never decodes
a PNG twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..vq import encode_to_codes, image_to_tensor
from .manifest import load_image, read_manifest


@dataclass
class CodeCache:
    source: torch.Tensor  # (N, h, w) long
    target: torch.Tensor  # (N, h, w) long
    instructions: list[str]
    ids: list[str]
    edit_types: list[str | None]

    def __len__(self) -> int:
        return len(self.ids)

    def with_edit_types(self, edit_types: Sequence[str]) -> "CodeCache":
        """The examples whose edit type is one of ``edit_types``, in their order."""
        wanted = set(edit_types)
        rows = [i for i, t in enumerate(self.edit_types) if t in wanted]
        if not rows:
            raise ValueError(f"no examples of edit types {sorted(edit_types)} (the cache has {sorted(set(map(str, self.edit_types)))})")
        index = torch.tensor(rows)
        return CodeCache(self.source[index], self.target[index], [self.instructions[i] for i in rows],
                         [self.ids[i] for i in rows], [self.edit_types[i] for i in rows])

    @staticmethod
    def concat(caches: Sequence["CodeCache"]) -> "CodeCache":
        """One cache holding every example of ``caches`` in order (e.g. a training set plus harder edits)."""
        grids = {c.grid_size for c in caches}
        if len(grids) != 1:
            raise ValueError(f"code caches of different grid sizes cannot be joined: {sorted(grids)}")
        return CodeCache(torch.cat([c.source for c in caches]), torch.cat([c.target for c in caches]),
                         [t for c in caches for t in c.instructions], [i for c in caches for i in c.ids],
                         [e for c in caches for e in c.edit_types])

    @property
    def grid_size(self) -> tuple[int, int]:
        return tuple(self.source.shape[1:])  # type: ignore[return-value]


def pretokenize_manifest(
    manifest: str | os.PathLike, vq, out: str | os.PathLike, batch_size: int = 64, progress: bool = True
) -> Path:
    """Encode a manifest's images with ``vq`` (a diffusers VQModel) into ``out`` (a .safetensors path).

    Every line needs a target (training data); a bad line or image stops with the culprit named, since a
    silently smaller training set is worse than a loud failure.
    """
    records, errors = read_manifest(manifest, strict=True)
    del errors
    if not records:
        raise ValueError(f"{manifest}: no records")
    missing = [r.id for r in records if r.target is None]
    if missing:
        raise ValueError(f"{manifest}: records without a target cannot be pre-tokenised: {missing[:3]}")
    sources, targets = [], []
    for start in tqdm(range(0, len(records), batch_size), desc="pre-tokenising", disable=not progress):
        chunk = records[start : start + batch_size]
        src = torch.cat([image_to_tensor(load_image(r.source)) for r in chunk])
        tgt = torch.cat([image_to_tensor(load_image(r.target)) for r in chunk])
        sources.append(encode_to_codes(vq, src).to(torch.int16).cpu())
        targets.append(encode_to_codes(vq, tgt).to(torch.int16).cpu())
    meta = {
        "manifest": str(Path(manifest).resolve()),
        "ids": [r.id for r in records],
        "instructions": [r.instruction for r in records],
        "edit_types": [r.edit_type for r in records],
    }
    return save_code_cache(out, torch.cat(sources), torch.cat(targets), meta)


def save_code_cache(out: str | os.PathLike, source: torch.Tensor, target: torch.Tensor, meta: dict) -> Path:
    """Write a code cache: ``out`` (.safetensors: ``source`` / ``target``, (n, h, w) codes, stored int16) and the
    JSON beside it (``meta``: at least ``ids``, ``instructions``, ``edit_types``, one per row); returns ``out``.
    The tensors go through a temporary file, so a half-written cache is never taken for a whole one."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    save_file({"source": source.to(torch.int16), "target": target.to(torch.int16)}, str(tmp))
    os.replace(tmp, out)
    out.with_suffix(".json").write_text(json.dumps(meta))
    return out


def load_code_cache(path: str | os.PathLike) -> CodeCache:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no code cache at {path} (run `rm-edit data pretokenize` first)")
    tensors = load_file(str(path))
    meta = json.loads(path.with_suffix(".json").read_text())
    return CodeCache(
        source=tensors["source"].long(),
        target=tensors["target"].long(),
        instructions=meta["instructions"],
        ids=meta["ids"],
        edit_types=meta["edit_types"],
    )


def pretokenize_dataset(spec: str | os.PathLike, vq, out: str | os.PathLike, *, columns: str | None = None,
                        preset: str | None = None, split: str | None = None, batch_size: int = 64,
                        progress: bool = True, offline: bool = False, shard=None) -> Path:
    """Encode a Hugging Face dataset (save_to_disk folder, parquet folder, or hub name when online; columns
    by preset or ``columns``, see :mod:`rm_edit.data.hf_datasets`) into ``out``, as ``pretokenize_manifest``.

    The dataset is streamed: rows are read one at a time and only a batch of images is held. Under
    ``accelerate launch`` every process encodes the rows ``rank, rank + W, ...`` (decoding no other row's
    images) into ``out.rank<r>``; the main process joins them in row order, so the file is the one a single
    process writes. Every row needs a target and all images one size; a bad row stops with its id named."""
    from ..distributed import Shard, interleave
    from .hf_datasets import column_names, iter_examples, open_edit_dataset, resolve_columns

    shard = shard or Shard.from_env()
    ds = open_edit_dataset(spec, split, streaming=True, offline=offline)
    cols = resolve_columns(column_names(ds), preset, columns)
    if cols.target is None:
        raise ValueError(f"{spec}: no target column; training data needs one (--columns target=NAME)")
    sources: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    meta: dict[str, list] = {"ids": [], "instructions": [], "edit_types": []}
    size: tuple[int, int] | None = None
    pending: list = []

    def flush() -> None:
        if pending:
            src = torch.cat([image_to_tensor(ex.source) for ex in pending])
            tgt = torch.cat([image_to_tensor(ex.target) for ex in pending])
            sources.append(encode_to_codes(vq, src).to(torch.int16).cpu())
            targets.append(encode_to_codes(vq, tgt).to(torch.int16).cpu())
            pending.clear()

    for index, ex in tqdm(iter_examples(ds, cols, keep=shard.owns), desc="pre-tokenising", unit="row",
                          disable=not (progress and shard.is_main)):
        if isinstance(ex, ValueError):
            raise ex
        if ex.target is None:
            raise ValueError(f"row {ex.id}: no target image")
        size = size or ex.source.size
        if ex.source.size != size:
            raise ValueError(f"row {ex.id}: image is {ex.source.size[0]}x{ex.source.size[1]} but earlier rows are "
                             f"{size[0]}x{size[1]}; a code cache needs one size (resize the dataset first)")
        pending.append(ex)
        meta["ids"].append(ex.id)
        meta["instructions"].append(ex.instruction)
        meta["edit_types"].append(ex.edit_type)
        if len(pending) >= batch_size:
            flush()
    flush()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = shard.part(out)
    codes = {"source": torch.cat(sources), "target": torch.cat(targets)} if sources else {}
    if shard.active:  # each process's part; the main process joins them in row order
        if codes:
            save_file(codes, str(part))
        part.with_suffix(".json").write_text(json.dumps(meta))
        shard.wait()
        if shard.is_main:
            parts = [out.with_name(f"{out.stem}.rank{r}{out.suffix}") for r in range(shard.world_size)]
            metas = [json.loads(p.with_suffix(".json").read_text()) for p in parts]
            tensors = [load_file(str(p)) if p.is_file() else {"source": [], "target": []} for p in parts]
            codes = {k: torch.stack(interleave([list(t[k]) for t in tensors])) for k in ("source", "target")}
            meta = {k: interleave([m[k] for m in metas]) for k in ("ids", "instructions", "edit_types")}
            for p in parts:
                p.unlink(missing_ok=True)
                p.with_suffix(".json").unlink(missing_ok=True)
    if shard.is_main:
        if not meta["ids"]:
            raise ValueError(f"{spec}: no rows")
        tmp = out.with_suffix(".tmp")
        save_file(codes, str(tmp))
        os.replace(tmp, out)
        out.with_suffix(".json").write_text(json.dumps({"dataset": str(spec), **meta}))
    shard.wait()
    return out

"""Runs across processes: `accelerate launch -m rm_edit.cli batch|eval|data pretokenize ...`.

Every process takes the items whose position in the (resume-filtered) list is ``rank`` modulo
``world_size``; every output file has one writer (per-item files by their item's process, shared files by
the main process after a barrier, per-process parts merged in item order). Results never depend on which
process edited an item: seeds come from item ids and images are decoded one at a time, so the files are
those of a single-process run.

Without a launcher (``WORLD_SIZE`` unset or 1) nothing is initialised and :class:`Shard` is the identity.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def launched_world_size() -> int:
    """The number of processes a launcher (accelerate, torchrun) started; 1 when run directly."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


@dataclass
class Shard:
    """This process's place among ``world_size`` processes (``rank`` 0 is the main one)."""

    rank: int = 0
    world_size: int = 1
    _state: Any = None

    @classmethod
    def from_env(cls) -> Shard:
        """From the launcher's environment through ``accelerate.PartialState`` (gloo on CPU, nccl on GPUs)."""
        if launched_world_size() == 1:
            return cls()
        import torch
        from accelerate import PartialState

        # accelerate picks gloo only when told it runs on CPU; without GPUs that is the only choice.
        state = PartialState(cpu=not torch.cuda.is_available())
        return cls(state.process_index, state.num_processes, state)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def take(self, items: Sequence[T]) -> list[T]:
        """This process's items: positions ``rank, rank + world_size, ...``."""
        return list(items[self.rank :: self.world_size])

    def owns(self, index: int) -> bool:
        return index % self.world_size == self.rank

    def wait(self) -> None:
        """A barrier (no-op for one process)."""
        if self._state is not None:
            self._state.wait_for_everyone()

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value``, in rank order (``[value]`` for one process)."""
        if self._state is None:
            return [value]
        from accelerate.utils import gather_object

        return gather_object([value])

    def part(self, path: Path) -> Path:
        """This process's part file for ``path`` (``name.rank<r>.suffix``); ``path`` itself for one process."""
        return path if not self.active else path.with_name(f"{path.stem}.rank{self.rank}{path.suffix}")


def interleave(parts: Sequence[Sequence[T]]) -> list[T]:
    """Undo :meth:`Shard.take`: ``parts[r]`` holds items ``r, r + W, ...``; returns them in item order."""
    out: list[T] = []
    longest = max((len(p) for p in parts), default=0)
    for i in range(longest):
        out.extend(p[i] for p in parts if i < len(p))
    return out


def merge_jsonl_parts(dest: Path, world_size: int) -> int:
    """Main process: concatenate ``dest``'s per-process parts (rank order) into ``dest`` and delete them;
    like one process, no file when no process wrote a row. Returns the number of rows."""
    parts = [dest.with_name(f"{dest.stem}.rank{rank}{dest.suffix}") for rank in range(world_size)]
    rows = [line for p in parts if p.is_file() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    if rows:
        tmp = dest.with_name(f".{dest.name}.tmp")
        tmp.write_text("".join(line + "\n" for line in rows), encoding="utf-8")
        os.replace(tmp, dest)
    for p in parts:
        p.unlink(missing_ok=True)
    return len(rows)


def finish(shard: Shard, errors_path: Path, done: int, failed: int) -> tuple[int, int]:
    """After every process's items: the totals over all processes (on every process), and on the main one
    the per-process error parts merged into ``errors_path`` (rank order)."""
    if not shard.active:
        return done, failed
    shard.wait()
    totals = shard.gather((done, failed))
    if shard.is_main:
        merge_jsonl_parts(errors_path, shard.world_size)
    shard.wait()
    return sum(d for d, _ in totals), sum(f for _, f in totals)

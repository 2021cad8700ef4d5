"""A benchmark as an ordered, lazily loaded list of samples (:class:`rm_edit.data.records.EditRecord`, images
loaded), and the path and file checks its loaders (:mod:`rm_edit.evaluation.benchmarks`) share."""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..data.records import EditRecord

logger = logging.getLogger("rm_edit.evaluation")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
KINDS = ("shapes", "sudoku", "pie-bench", "magicbrush", "manifest")  # a Hugging Face dataset becomes magicbrush or manifest


@dataclass
class SampleRef:
    """What is known about a sample before its images are read."""

    id: str
    image_path: str
    load: Callable[[], EditRecord] = field(repr=False)


class Benchmark:
    """An ordered, lazily loaded list of samples. Iterating loads them; bad ones are skipped and
    recorded in :attr:`errors` (``[{"id": ..., "reason": ...}]``)."""

    def __init__(self, name: str, kind: str, refs: list[SampleRef], errors: list[dict] | None = None,
                 root: Path | None = None) -> None:
        self.name, self.kind, self.root = name, kind, root
        self.refs = refs
        self.errors: list[dict] = list(errors or [])
        self._failed: set[str] = {e["id"] for e in self.errors if e.get("id") is not None}

    def __len__(self) -> int:
        return len(self.refs)

    def __repr__(self) -> str:
        return f"Benchmark({self.name!r}, kind={self.kind!r}, n={len(self.refs)}, errors={len(self.errors)})"

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.refs]

    def skip(self, sample_id: str | None, reason: str) -> None:
        """Record a bad sample (once per id) and log it."""
        if sample_id is not None and sample_id in self._failed:
            return
        if sample_id is not None:
            self._failed.add(sample_id)
        self.errors.append({"id": sample_id, "reason": " ".join(str(reason).split())})
        logger.warning("%s: skipping sample %s: %s", self.name, sample_id, reason)

    def load(self, ref: SampleRef) -> EditRecord | None:
        try:
            sample = ref.load()
        except (ValueError, KeyError, TypeError, OSError) as exc:
            self.skip(ref.id, f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc))
            return None
        return sample

    def iter_refs(self, refs: list[SampleRef]) -> Iterator[EditRecord]:
        for ref in refs:
            sample = self.load(ref)
            if sample is not None:
                yield sample

    def __iter__(self) -> Iterator[EditRecord]:
        return self.iter_refs(self.refs)

    def head(self, n: int | None) -> Benchmark:
        """The first ``n`` samples (all when ``n`` is None)."""
        if n is None:
            return self
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        return Benchmark(self.name, self.kind, self.refs[:n], self.errors, self.root)


# ---- helpers -------------------------------------------------------------------------------------------
def safe_relative_path(path: str) -> str:
    """A normalised posix relative path inside the output folder; raises ValueError otherwise."""
    if not isinstance(path, str) or not path.strip():
        raise ValueError("empty image path")
    p = posixpath.normpath(path.replace("\\", "/"))
    if p.startswith("/") or p == "." or p.split("/")[0] == ".." or any(part.startswith(".") for part in p.split("/")):
        raise ValueError(f"unsafe image path {path!r} (absolute, '..' or hidden)")
    return p


def safe_file_id(sample_id: str) -> str:
    if not sample_id or sample_id.startswith(".") or any(c in sample_id for c in "/\\\0"):
        raise ValueError(f"id {sample_id!r} cannot be a file name")
    return sample_id


def strip_brackets(prompt: str) -> str:
    """PIE-Bench marks the edited words with []: remove the brackets, keep the words."""
    return prompt.replace("[", "").replace("]", "")


def check_target(source: Image.Image, target: Image.Image | None, what: str = "target") -> None:
    if target is not None and target.size != source.size:
        raise ValueError(f"{what} is {target.size[0]}x{target.size[1]} but source is {source.size[0]}x{source.size[1]}")


def first_existing(folder: Path, stems: tuple[str, ...]) -> Path | None:
    for stem in stems:
        for suffix in IMAGE_SUFFIXES:
            p = folder / f"{stem}{suffix}"
            if p.is_file():
                return p
    return None

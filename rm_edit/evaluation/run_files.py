"""The files of an evaluation run (``out_dir``): where edits go, ``samples.jsonl`` (append-only rows, the
source of truth), ``run.json`` (a resumed run must match it) and ``errors.jsonl``."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..files import dump_json, plain_json, write_text
from .benchmark_set import IMAGE_SUFFIXES, Benchmark


def output_relpath(image_path: str) -> str:
    """Where an edit of ``image_path`` is written: the same relative path, suffix .png (lossless)."""
    return Path(image_path).with_suffix(".png").as_posix()


def find_prediction(predictions_dir: Path, image_path: str) -> Path | None:
    """The prediction for ``image_path``: the same relative path with any image suffix; also looks in
    ``predictions_dir/images`` (an eval output folder)."""
    rel = Path(image_path)
    for base in (predictions_dir, predictions_dir / "images"):
        for candidate in (rel, *(rel.with_suffix(s) for s in IMAGE_SUFFIXES), *(rel.with_suffix(s.upper()) for s in IMAGE_SUFFIXES)):
            p = base / candidate
            if p.is_file():
                return p
    return None


class SampleLog:
    """``samples.jsonl``: one JSON row per line, appended and flushed per sample; a torn last line (killed
    mid-write) is ignored on reading."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[str, dict] = {}
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            if text and not text.endswith("\n"):  # torn last line: drop it so appends start clean
                text = text[: text.rfind("\n") + 1]
                write_text(path, text)
            for line in text.splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and "id" in row:
                    self.rows[row["id"]] = row

    def append(self, row: dict) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.rows[row["id"]] = row


_FREE_CONFIG_KEYS = ("n", "label")  # a resumed run may extend n or rename itself


def check_run_config(out_dir: Path, config: dict) -> None:
    """A resumed run must use the settings its rows were made with (n and the label may change)."""
    path = out_dir / "run.json"
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        new = plain_json(config)
        diff = sorted(k for k in set(old) | set(new) if k not in _FREE_CONFIG_KEYS and old.get(k) != new.get(k))
        if diff:
            raise ValueError(f"{out_dir} holds a run with other settings ({', '.join(diff)}); "
                             "use another output folder or delete it")
    dump_json(path, config)


class ErrorList:
    def __init__(self, path: Path, benchmark: Benchmark) -> None:
        self.path, self.benchmark = path, benchmark
        self.entries: list[dict] = []

    def add(self, sample_id: str | None, reason: str) -> None:
        self.benchmark.skip(sample_id, reason)

    def write(self) -> None:
        self.entries = list(self.benchmark.errors)
        text = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in self.entries)
        write_text(self.path, text)

"""``rm-edit batch``: edit every item of a JSONL manifest, same-grid items per model call, resumable."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the pipeline drags in diffusers; only the command functions import it
    import numpy as np
    import PIL.Image
    import torch

    from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline

import json
import sys
import time

from rm_edit.files import DEFAULT_MAX_PIXELS, one_line, save_image

from .options import PROG, CliError, SubParsers, add_sampler_options, load_pipeline, mask_image, positive_int, sampler_kwargs

# ---- batch ----------------------------------------------------------------------------------------------
_BATCH_EPILOG = """\
Each manifest line is a JSON object {"id", "source", "instruction", ...} (paths relative to the manifest).
Writes OUT/<id>.png and OUT/<id>.mask.png (the region the model chose). Items whose OUT/<id>.png exists
are skipped, so re-running after an interruption finishes the job. Bad items are listed in
OUT/errors.jsonl and the rest go on. Exit status: 0 all done, 1 some items failed, 2 usage error.

examples:
  rm-edit batch data/test/manifest.jsonl --out results/rm
  rm-edit batch manifest.jsonl --out results/baseline --strategy regenerate --steps 16 --batch-size 16
  accelerate launch --num_processes 8 -m rm_edit.cli batch manifest.jsonl --out results/rm   (items sharded;
      the same files as one process)
"""


def add_batch_parser(subparsers: SubParsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "batch", help="edit every item of a JSONL manifest (resumable)",
        description="Edit every item of MANIFEST, a few images per model call.",
        epilog=_BATCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("manifest", metavar="MANIFEST.jsonl", type=Path)
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created if needed)")
    p.add_argument("--batch-size", type=positive_int, default=8, metavar="N",
                   help="images per model call (default 8); results do not depend on it")
    p.add_argument("--use-manifest-masks", action="store_true",
                   help="only let the region of each item's mask (white) change")
    p.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"skip images with more pixels (default {DEFAULT_MAX_PIXELS})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar / lines")
    p.add_argument("--progress-every", type=positive_int, default=50, metavar="N",
                   help="when stderr is not a terminal (a pipe, a log file): a progress line every N items "
                        "(default 50) or every --progress-seconds, whichever comes first")
    p.add_argument("--progress-seconds", type=positive_int, default=60, metavar="S",
                   help="... or every S seconds (default 60)")
    p.add_argument("--export-dataset", type=Path, metavar="DIR",
                   help="also write the results as a datasets dataset (source, instruction, edit, region, target)")
    p.add_argument("--export-format", choices=("disk", "parquet"), default="disk",
                   help="save_to_disk folder (default) or DIR/data.parquet")
    add_sampler_options(p)
    return p


def _safe_id(item_id: str) -> bool:
    # The id becomes a file name: no folders, no hidden files (our temp files start with a dot).
    return bool(item_id) and not item_id.startswith(".") and not any(c in item_id for c in "/\\\0")


def _ids_by_line(manifest: Path) -> dict[int, str]:
    """Line number -> the id written on it (when the line is a JSON object with a string id)."""
    ids = {}
    with manifest.open(encoding="utf-8", errors="replace") as fh:
        for line_no, line in enumerate(fh, start=1):
            try:
                item_id = json.loads(line).get("id")
            except (ValueError, AttributeError):
                continue
            if isinstance(item_id, str):
                ids[line_no] = item_id
    return ids


class _ErrorLog:
    """OUT/errors.jsonl: this run's failures, one JSON object per line, written as they happen; each names
    the item's id and its manifest line (the line alone when it has no id), and is echoed to stderr."""

    def __init__(self, path: Path, manifest: Path | None = None) -> None:
        self.path = path
        self.count = 0
        self.ids = _ids_by_line(manifest) if manifest is not None else {}
        self.lines = {}
        for line_no, item_id in self.ids.items():
            self.lines.setdefault(item_id, line_no)
        path.unlink(missing_ok=True)  # a previous run's failures are retried, not inherited

    def add(self, reason: str, *, item_id: str | None = None, line: int | None = None) -> None:
        item_id = item_id if item_id is not None else self.ids.get(line)
        line = line if line is not None else self.lines.get(item_id)
        entry: dict[str, Any] = {k: v for k, v in (("id", item_id), ("line", line)) if v is not None}
        entry["reason"] = one_line(reason)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
        where = " ".join(f"{k} {v!r}" if k == "id" else f"{k} {v}" for k, v in entry.items() if k != "reason")
        print(f"{PROG}: {where}: {entry['reason']}", file=sys.stderr)
        self.count += 1


class _ProgressLines:
    """Progress of a run: a bar on a terminal; under a pipe or in a log file a plain line every ``every``
    items or ``seconds`` seconds, so a log shows the run is alive (the end is the run's summary line)."""

    def __init__(self, total: int, every: int, seconds: float, enabled: bool = True, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.total, self.every, self.seconds, self.done = total, every, seconds, 0
        self.start = self.last_time = time.perf_counter()
        self.last_done = 0
        self.bar = None
        self.lines = enabled and not self.stream.isatty()
        if enabled and not self.lines:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="edit", desc="editing", file=self.stream)

    def update(self, n: int, failed: int = 0) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        now = time.perf_counter()
        due = self.done - self.last_done >= self.every or now - self.last_time >= self.seconds
        if self.lines and due and self.done < self.total:  # the end is the run's one summary line
            rate = self.done / (now - self.start) if now > self.start else 0.0
            print(f"{PROG}: {self.done}/{self.total} items, {failed} failed, {now - self.start:.0f} s "
                  f"({rate:.2f} items/s)", file=self.stream, flush=True)
            self.last_done, self.last_time = self.done, now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_batch(args: argparse.Namespace) -> int:
    from rm_edit.distributed import Shard, finish

    from rm_edit.data.manifest import read_manifest

    kwargs = sampler_kwargs(args)
    if not args.manifest.is_file():
        raise CliError(f"manifest not found: {args.manifest}")
    records, bad_lines = read_manifest(args.manifest)
    args.out.mkdir(parents=True, exist_ok=True)
    shard = Shard.from_env()  # under accelerate launch / torchrun: this process's share of the items
    if shard.active and shard.is_main:
        (args.out / "errors.jsonl").unlink(missing_ok=True)
    errors = _ErrorLog(shard.part(args.out / "errors.jsonl"), args.manifest)  # one writer per file
    for bad in bad_lines if shard.is_main else ():
        errors.add(bad.reason, line=bad.line_no)

    start = time.perf_counter()
    pending, skipped = [], 0
    for rec in records:
        if not _safe_id(rec.id):
            if shard.is_main:
                errors.add(f"id {rec.id!r} cannot be a file name", item_id=rec.id)
        elif (args.out / f"{rec.id}.png").exists():
            skipped += 1
        else:
            pending.append(rec)
    if skipped and shard.is_main:
        print(f"{PROG}: skipping {skipped} item(s) already in {args.out}", file=sys.stderr)
    pending = shard.take(pending)  # positions rank, rank + W, ...: every item in exactly one process

    done = 0
    if pending:
        pipe = load_pipeline(args.model, args.device, kwargs, args.compile)
        progress = _ProgressLines(len(pending), args.progress_every, args.progress_seconds,
                                  enabled=not args.no_progress)
        done = _edit_records(pipe, pending, args, kwargs, errors, progress)
        progress.close()

    done, failed = finish(shard, args.out / "errors.jsonl", done, errors.count)  # totals; errors merged
    seconds = time.perf_counter() - start
    rate = done / seconds if seconds > 0 else 0.0
    if not shard.is_main:
        return 1 if failed else 0
    print(f"done {done}, skipped {skipped}, failed {failed} in {seconds:.1f}s ({rate:.2f} edits/s)"
          + _target_success(records, args.out, args.max_pixels))
    if failed:
        print(f"failures are listed in {args.out / 'errors.jsonl'}")
    if args.export_dataset is not None:
        from rm_edit.data.hf_export import export_batch

        print(f"wrote {export_batch(records, args.out, args.export_dataset, args.export_format)}")
    return 1 if failed else 0


def _target_success(records: list, out: Path, max_pixels: int) -> str:
    """"; pixel edit success K/N (rate)" over the manifest items with a target and an edit in ``out`` (this
    run's and earlier runs'), scored by ``rm_edit.metrics.edit_success``; "" when none has a target."""
    import numpy as np

    from rm_edit.data.manifest import load_image
    from rm_edit.metrics import edit_success

    scored = []
    for rec in records:
        edited = out / f"{rec.id}.png"
        if rec.target is None or not edited.is_file():
            continue
        try:
            images = [np.asarray(load_image(p, max_pixels=max_pixels).convert("RGB")) for p in (rec.source, edited, rec.target)]
            scored.append(bool(edit_success(*images).success))
        except ValueError:  # an unreadable target (or another size) is no score, not a failed run
            continue
    if not scored:
        return ""
    return f"; pixel edit success {sum(scored)}/{len(scored)} ({sum(scored) / len(scored):.3f}) against the targets"


def _edit_records(pipe: ReflectiveMaskingEditPipeline, records: list, args: argparse.Namespace,
                  kwargs: dict[str, Any], errors: _ErrorLog, progress: _ProgressLines) -> int:
    """Edit ``records`` through the one batch loop (:func:`rm_edit.batch_edits.edit_in_batches`); returns how
    many were written."""
    import numpy as np

    from rm_edit.batch_edits import edit_in_batches
    from rm_edit.data.manifest import load_image, load_mask

    def prepare(rec):
        image = load_image(rec.source, max_pixels=args.max_pixels)
        if not args.use_manifest_masks:
            return image, None
        return image, (load_mask(rec.mask, image.size, max_pixels=args.max_pixels) if rec.mask is not None
                       else np.ones((image.height, image.width), dtype=bool))

    def write(recs, _images, out):
        for rec, image, mask in zip(recs, out.images, out.edit_masks):
            # Mask first: OUT/<id>.png is the "done" marker that resuming checks.
            save_image(args.out / f"{rec.id}.mask.png", mask_image(mask))
            save_image(args.out / f"{rec.id}.png", image)
        for rec, codes, source in zip(recs, out.codes, out.source_codes):
            if (problem := pipe.input_checks.result_problem(codes, source)) is not None:
                undone.append(f"{rec.id}: {problem}")
        for rec, why in zip(recs, out.unchanged_because or ()):
            if why is not None:
                unchanged.append(f"{rec.id}: {why}")
        progress.update(len(recs), errors.count)

    def failed(rec, reason: str) -> None:
        errors.add(reason, item_id=rec.id)
        progress.update(1, errors.count)

    undone: list[str] = []  # edits the world can tell are unfinished or broken (empty cells left, a shape in pieces)
    unchanged: list[str] = []  # instructions naming nothing to edit (a shape the scene does not hold): written as given
    written = edit_in_batches(pipe, records, prepare, write, batch_size=args.batch_size, seed=args.seed,
                              on_error=None if args.debug else failed, output_type="pil", **kwargs)
    if undone:
        shown = "; ".join(undone[:3]) + ("; ..." if len(undone) > 3 else "")
        print(f"{PROG}: warning: {len(undone)} of {written} edit(s) left something undone: {shown}", file=sys.stderr)
    if unchanged:
        shown = "; ".join(unchanged[:3]) + ("; ..." if len(unchanged) > 3 else "")
        print(f"nothing to change in {len(unchanged)} of {written} (written as given): {shown}")
    return written


# The names rm_edit.cli.lazy_command looks for.
add_parser = add_batch_parser
run = run_batch

"""The one loop that runs a pipeline over edit records (``rm-edit batch``, ``rm-edit eval``, the token
evaluation, the recipe's held-out report): same-grid records batched, one seed per record.

One rule for randomness: record ``r`` is edited with ``torch.Generator().manual_seed(item_seed(seed, r.id))``,
so its edit depends on its id and the run's seed only, never on its position or on what it was batched with.
The pipeline is passed in; this module never imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import re
import warnings

import numpy as np

from .files import item_seed
from .input_checks import InputOutsideWorldWarning

# prepare(record) -> (PIL image, mask or None); handle(records, images, pipeline output) writes / scores them.
Prepare = Callable[[Any], tuple[Any, Any]]
Handle = Callable[[list, list, Any], None]
OnError = Callable[[Any, str], None]


def edit_in_batches(pipe, records: Iterable, prepare: Prepare, handle: Handle, *, batch_size: int, seed: int = 0,
                    on_error: OnError | None = None, **call_options: Any) -> int:
    """Edit every record; returns how many were handled.

    ``prepare(record)`` loads what the call needs (a ValueError skips the record through ``on_error``); records
    are bucketed by the token grid their image is cropped to (one call needs one grid) and edited
    ``batch_size`` at a time, each with its own generator. A call (or its ``handle``) that fails is retried
    one record at a time, so only the culprit fails: ``on_error(record, "Type: message")``. Without
    ``on_error`` every failure is raised.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    buckets: dict[tuple[int, int], list] = {}
    handled = 0
    for record in records:
        try:
            image, mask = prepare(record)
        except ValueError as exc:  # one unreadable record must not sink the run
            if on_error is None:
                raise
            on_error(record, str(exc))
            continue
        bucket = buckets.setdefault(pipe.image_processor.crop(image.width, image.height).grid, [])
        bucket.append((record, image, mask))
        if len(bucket) >= batch_size:
            handled += _edit_bucket(pipe, bucket, handle, seed, on_error, call_options)
            bucket.clear()
    for bucket in buckets.values():
        if bucket:
            handled += _edit_bucket(pipe, bucket, handle, seed, on_error, call_options)
    return handled


def _edit_bucket(pipe, items: list, handle: Handle, seed: int, on_error: OnError | None, options: dict) -> int:
    try:
        _edit(pipe, items, handle, seed, options)
        return len(items)
    except Exception as exc:
        if on_error is None:
            raise
        if len(items) == 1:
            on_error(items[0][0], f"{type(exc).__name__}: {exc}")
            return 0
    # Something in the bucket broke the call: one by one (the same results: each record has its own seed).
    return sum(_edit_bucket(pipe, [item], handle, seed, on_error, options) for item in items)


def _edit(pipe, items: list, handle: Handle, seed: int, options: dict) -> None:
    import torch

    records, images, masks = (list(column) for column in zip(*items))
    if all(m is None for m in masks):
        masks = None
    else:  # a record without a mask may change everywhere
        masks = [np.ones((im.height, im.width), dtype=bool) if m is None else m for im, m in zip(images, masks)]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", InputOutsideWorldWarning)  # the checks say each kind once themselves
            out = pipe(images, [r.instruction for r in records], mask_image=masks,
                       generator=[torch.Generator().manual_seed(item_seed(seed, r.id)) for r in records], **options)
    finally:  # said even when another record fails the call: the retries do not say it again
        for w in caught:  # "image 2" is the call's third image: say which record it is
            message = re.sub(r"\bimage (\d+)\b", lambda m: f"item {records[int(m.group(1))].id!r}", str(w.message))
            warnings.warn_explicit(message, w.category, w.filename, w.lineno)
    handle(records, images, out)

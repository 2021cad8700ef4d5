"""The one batch loop (rm_edit.batch_edits): one seed per record from its id, same-grid batches, a failing
record fails alone."""

from __future__ import annotations

import zlib
from types import SimpleNamespace

import numpy as np
import PIL.Image
import torch

from rm_edit.batch_edits import edit_in_batches
from tests.conftest import make_tiny_pipeline

SAMPLED = dict(strategy="regenerate", num_inference_steps=2, temperature=1.0, output_type="latent",
               allow_unknown_words=True)  # every code sampled: the seed shows in the codes


def _records(n: int):
    rng = np.random.default_rng(3)
    return [SimpleNamespace(id=f"r{i}", instruction="make the square red",
                            source=PIL.Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
            for i in range(n)]


def _run(pipe, records, batch_size, **kw):
    codes, calls, errors = {}, [], []

    def keep(recs, _images, out):
        calls.append([r.id for r in recs])
        codes.update({r.id: out.images[i] for i, r in enumerate(recs)})

    n = edit_in_batches(pipe, records, lambda r: (r.source, None), keep, batch_size=batch_size, seed=7,
                        on_error=lambda r, why: errors.append((r.id, why)), **SAMPLED, **kw)
    return n, codes, calls, errors


def test_each_record_is_seeded_from_its_id_whatever_its_batch_or_position():
    pipe = make_tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    records = _records(4)
    n, together, calls, _ = _run(pipe, records, batch_size=3)
    assert n == 4 and calls == [["r0", "r1", "r2"], ["r3"]]
    _, alone, _, _ = _run(pipe, records[::-1], batch_size=1)
    for r in records:
        assert torch.equal(together[r.id], alone[r.id])
        # by hand: one call with the generator seeded 7 + crc32(id)
        out = pipe(r.source, r.instruction, generator=torch.Generator().manual_seed(7 + zlib.crc32(r.id.encode())),
                   **SAMPLED)
        assert torch.equal(out.images[0], together[r.id])
    assert len({tuple(c.flatten().tolist()) for c in together.values()}) == 4  # the seeds do differ


def test_a_bad_record_fails_alone_and_the_rest_are_handled():
    pipe = make_tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    records = _records(3)
    records[1].instruction = "   "  # the pipeline refuses the call that holds it
    unreadable = SimpleNamespace(id="gone", instruction="x", source=None)

    def prepare(r):
        if r.source is None:
            raise ValueError("image not found: gone.png")
        return r.source, None

    errors, handled = [], []
    n = edit_in_batches(pipe, [records[0], unreadable, records[1], records[2]], prepare,
                        lambda recs, _i, _o: handled.extend(r.id for r in recs), batch_size=3, seed=0,
                        on_error=lambda r, why: errors.append((r.id, why)), **SAMPLED)
    assert n == 2 and handled == ["r0", "r2"]  # the batch (r0, r1, r2) failed, then went one by one
    assert errors[0] == ("gone", "image not found: gone.png")
    assert errors[1][0] == "r1" and errors[1][1].startswith("ValueError: prompt 0: the editing instruction is empty")

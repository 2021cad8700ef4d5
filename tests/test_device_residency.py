"""The sampler stays on the transformer's device: its step loop reads nothing back to the host.

On a GPU every read of a device value (``.item()``, ``bool(t)``, ``.tolist()``, ``.cpu()``, ``nonzero()``) and
every tensor made on the host and copied over stalls the host until the device has caught up, so a host
round-trip per step costs a pipeline drain per step. CPU machines cannot see a device copy, so this counts the
operations that would be one (every torch op passes through a dispatch mode; ``tolist``/``cpu``/``numpy`` are
patched) and checks that their number does not grow with the number of steps: whatever a call reads, it reads
before or after its loop. The one read the loop may make is the reflective sampler's fixed-point check, once
per reflect step (rows at their fixed point leave the batch).
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from rm_edit.transformer import LLaDAOutput
from tests.conftest import make_tiny_pipeline

aten = torch.ops.aten
# Ops that read a value back to the host (or need its size there), and host tensors made to go to the device.
HOST_READS = {aten._local_scalar_dense.default, aten.nonzero.default, aten.equal.default, aten.lift_fresh.default,
              aten.masked_select.default, aten._unique2.default, aten.unique_dim.default,
              aten.unique_consecutive.default}


class CountHostReads(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.reads: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in HOST_READS:
            self.reads.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.fixture
def count_reads():
    """A function running ``fn()`` and returning its number of host reads."""
    def run(fn) -> int:
        mode = CountHostReads()
        with pytest.MonkeyPatch.context() as patch:
            for name in ("tolist", "cpu", "numpy"):
                original = getattr(torch.Tensor, name)

                def patched(self, *a, _name=name, _original=original, **k):
                    mode.reads.append(_name)
                    return _original(self, *a, **k)

                patch.setattr(torch.Tensor, name, patched)
            with mode:
                fn()
        return len(mode.reads)
    return run


@pytest.fixture(scope="module")
def pipe():
    p = make_tiny_pipeline(0)
    p.set_progress_bar_config(disable=True)
    return p


def _never_converges(monkeypatch, pipe):
    """[MASK] scores high everywhere: every reflect step re-masks, so no row reaches a fixed point."""
    original = pipe.transformer.forward

    def forward(*args, **kwargs):
        logits = original(*args, **kwargs).logits.clone()
        logits[..., -1].fill_(1e4)  # the pipeline asks for the image codes then [MASK] (output_classes)
        return LLaDAOutput(logits=logits)

    monkeypatch.setattr(pipe.transformer, "forward", forward)


def _edit(pipe, images, **kw):
    return lambda: pipe(images, "make the red circle blue", output_type="latent", **kw)


def test_regenerate_loop_reads_nothing_back_per_step(pipe, pil_images, count_reads):
    """Temperature 1 (Gumbel draws from per-row generators), History Reference on, two rows."""
    images = pil_images[:2]
    kw = dict(strategy="regenerate", use_history=True, generator=[torch.Generator().manual_seed(i) for i in (0, 1)])
    short = count_reads(_edit(pipe, images, num_inference_steps=2, **kw))
    long = count_reads(_edit(pipe, images, num_inference_steps=8, **kw))
    assert long == short


def test_reflective_loop_reads_only_its_fixed_point_check(monkeypatch, pipe, pil_images, count_reads):
    images = pil_images[:2]
    _never_converges(monkeypatch, pipe)
    kw = dict(strategy="reflective", use_history=True, reveal_steps=2, temperature=0.5,
              generator=torch.Generator().manual_seed(0))
    one_turn = count_reads(_edit(pipe, images, num_turns=1, **kw))
    three_turns = count_reads(_edit(pipe, images, num_turns=3, **kw))
    assert three_turns - one_turn == 2  # one read per extra reflect step, none in the 4 extra reveal steps


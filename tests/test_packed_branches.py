"""Guidance branches packed in one forward pass equal each branch run alone (tiny Lumina-DiMOO-layout model)."""

import PIL.Image
import numpy as np
import pytest
import torch

from rm_edit.layout import LUMINA_DIMOO as L
from rm_edit.layout import build_edit_sequence, pad_sequences
from rm_edit.packing import pack_sequences
from rm_edit.pipelines import guidance_branches
from rm_edit.pipelines.lumina_dimoo import load_lumina_dimoo
from tests.lumina_fixture import make_tiny_lumina_checkpoint, make_tiny_lumina_transformer

HEAD, SHORT_HEAD, UNCOND, CLOSE = list(range(100, 140)), list(range(100, 131)), list(range(200, 215)), [300, 301]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: tiny models run single-threaded


def _sequences():
    """Two edits with instructions of different lengths: 6 sequences of 4 lengths (cond x2, uncond x2 equal)."""
    gen = torch.Generator().manual_seed(0)
    src = [torch.randint(0, L.codebook_size, (4, 6), generator=gen) for _ in range(2)]
    state = [torch.randint(0, L.codebook_size + 1, (4, 6), generator=gen) for _ in range(2)]
    return ([build_edit_sequence(L, h, s, t, CLOSE) for h, s, t in zip((HEAD, SHORT_HEAD), src, state)]
            + [build_edit_sequence(L, UNCOND, s, t, CLOSE) for s, t in zip(src, state)]
            + [build_edit_sequence(L, h, None, t, CLOSE) for h, t in zip((HEAD, SHORT_HEAD), state)])


def test_pack_sequences_layout_by_hand():
    seqs = _sequences()
    lengths = [s.input_ids.numel() for s in seqs]
    # 4x6 images: <IMAGE> + 4 x (6 codes + <eor>) + </IMAGE> = 30 tokens; <answer> and </answer> 2 more.
    assert lengths == [40 + 30 + 2 + 32, 31 + 30 + 2 + 32, 15 + 30 + 2 + 32, 79, 40 + 2 + 32, 31 + 2 + 32]
    packed = pack_sequences(pad_sequences(seqs, L.pad_token_id))
    # By length: no-image short (65), no-image (74), the two uncond (79 each), cond short (95), cond (104).
    assert packed.groups == ((0, 1, 65), (65, 1, 74), (139, 2, 79), (297, 1, 95), (392, 1, 104))
    assert packed.input_ids.shape == (1, 496) and (packed.input_ids != L.pad_token_id).all()
    starts = [392, 297, 139, 218, 65, 0]
    for i, (seq, start) in enumerate(zip(seqs, starts)):
        n = seq.input_ids.numel()
        assert torch.equal(packed.input_ids[0, start : start + n], seq.input_ids)
        assert torch.equal(packed.positions[0, start : start + n], torch.arange(n))
        assert torch.equal(packed.target_positions[i], seq.target_positions + start)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("heads", [(2, 2), (4, 2)])  # (n_heads, n_kv_heads): multi-head and grouped-query
def test_packed_pass_equals_each_branch_alone_bit_for_bit(dtype, heads):
    model = make_tiny_lumina_transformer(0, d_model=32, n_heads=heads[0], n_kv_heads=heads[1]).to(dtype)
    seqs, classes = _sequences(), L.image_class_ids()
    with torch.no_grad():
        packed = guidance_branches.forward_branches(model, pad_sequences(seqs, L.pad_token_id), output_classes=classes)
        alone = torch.cat([model(s.input_ids[None], output_positions=s.target_positions[None]).logits for s in seqs])
    assert packed.dtype == dtype and torch.equal(packed, L.image_code_logits(alone))


@pytest.fixture(scope="module")
def bf16_pipe(tmp_path_factory):
    folder = make_tiny_lumina_checkpoint(tmp_path_factory.mktemp("dimoo") / "Lumina-DiMOO")
    pipe = load_lumina_dimoo(folder, torch_dtype=torch.bfloat16, max_crop_cells=4)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _each_branch_alone(transformer, packed, embedding_offset=None, output_classes=None):
    """forward_packed's contract computed the old way: one forward per branch sequence."""
    out = []
    for first in packed.target_positions[:, 0].tolist():
        start, _, length = next(g for g in packed.groups if g[0] <= first < g[0] + g[1] * g[2])
        begin = start + (first - start) // length * length
        seq = slice(begin, begin + length)
        offset = None if embedding_offset is None else embedding_offset[:, seq]
        positions = packed.target_positions[len(out)][None] - begin
        out.append(transformer(packed.input_ids[:, seq], embedding_offset=offset, output_positions=positions,
                               output_classes=output_classes).logits)
    return torch.cat(out)


def test_bf16_edit_with_packed_branches_matches_branches_alone(monkeypatch, bf16_pipe):
    """8 regenerate steps at temperature 1 with History Reference, two edits with different instructions: one
    forward per step, and the codes of running every branch alone (>= 99.9% asked; here every step's guided
    logits are equal bit for bit, so the codes are too)."""
    rng = np.random.default_rng(0)
    images = [PIL.Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(2)]
    prompts = ["make the sky red", "make it blue"]

    def run():
        steps = []
        out = bf16_pipe(images, prompts, strategy="regenerate", num_inference_steps=8, use_history=True,
                        output_type="latent", generator=[torch.Generator().manual_seed(i) for i in range(2)],
                        callback_on_step_end=lambda p, i, t, d: steps.append(d["logits"].clone()),
                        callback_on_step_end_tensor_inputs=["logits"])
        return out, steps

    calls = []
    handle = bf16_pipe.transformer.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        packed, packed_logits = run()
    finally:
        handle.remove()
    assert len(calls) == packed.num_forward_passes == 8  # 6 branch sequences of 4 lengths, one pass per step
    monkeypatch.setattr(guidance_branches, "forward_packed", _each_branch_alone)
    alone, alone_logits = run()
    assert bf16_pipe.transformer.dtype == torch.bfloat16 and len(alone_logits) == 8
    assert all(torch.equal(a, b) for a, b in zip(packed_logits, alone_logits))
    assert (packed.images == alone.images).float().mean().item() >= 0.999

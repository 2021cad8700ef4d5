"""The VQ's encoding mode is its own saved config: a VQ folder encodes the same alone and inside a pipeline;
training's simulated History Reference is the sampler's own."""

from __future__ import annotations

import json

import torch
from diffusers import VQModel

from rm_edit.history import HistoryRecorder, history_embedding, history_of_states
from rm_edit.layout import SHAPES
from rm_edit.pipelines.pipeline_reflective_edit import ReflectiveMaskingEditPipeline
from rm_edit.vq import VQTokenizer, as_vq_tokenizer, build_vq, encode_to_codes
from tests.conftest import make_tiny_pipeline


def test_a_vq_folder_encodes_the_same_alone_and_inside_a_pipeline(tmp_path):
    pipe = make_tiny_pipeline()
    pipe.vqvae = as_vq_tokenizer(build_vq(seed=3).eval(), cell_local=True)
    pipe.register_to_config(vq_cell_local=True)
    pipe.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "vqvae" / "config.json").read_text())["cell_local"] is True
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    inside = ReflectiveMaskingEditPipeline.from_pretrained(tmp_path).vqvae
    alone = VQTokenizer.from_pretrained(tmp_path / "vqvae")
    plain = VQModel.from_pretrained(tmp_path / "vqvae")  # diffusers' own class keeps the key too
    codes = encode_to_codes(inside, x)
    assert torch.equal(encode_to_codes(alone, x), codes) and torch.equal(encode_to_codes(plain, x), codes)
    assert torch.equal(codes, encode_to_codes(alone, x, cell_local=True))  # the mode really is cell-local
    assert not torch.equal(codes, encode_to_codes(alone, x, cell_local=False))  # and it matters here


def test_a_plain_vqmodel_becomes_a_tokenizer_with_the_same_weights():
    vq = build_vq(seed=1).eval()
    tok = as_vq_tokenizer(vq, cell_local=True)
    assert isinstance(tok, VQTokenizer) and tok.config.cell_local is True
    assert all(torch.equal(a, b) for a, b in zip(vq.state_dict().values(), tok.state_dict().values()))
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    assert torch.equal(encode_to_codes(tok, x), encode_to_codes(vq, x, cell_local=True))


def test_training_history_is_what_the_sampler_records():
    emb = torch.nn.Embedding(SHAPES.vocab_size, 2)
    with torch.no_grad():
        emb.weight.zero_()
        emb.weight[SHAPES.image_code_offset + 1] = torch.tensor([1.0, 0.0])
        emb.weight[SHAPES.image_code_offset + 2] = torch.tensor([0.0, 3.0])
    mask = SHAPES.mask_code
    # two positions, two steps: position 0 held code 1 then code 2; position 1 held [MASK] then code 1
    states = torch.tensor([[[1, 2], [mask, 1]]])
    recorder = HistoryRecorder(emb, SHAPES, batch=1, positions=2, alpha=2.0, decay=0.5)
    for t in range(2):
        recorder.record(states[..., t])
    sampled = recorder.embeddings(torch.tensor([0]))
    trained = history_embedding(history_of_states(emb, SHAPES, states, decay=0.5), 2.0)
    # position 0: alpha * (0.5 e1 + e2) / 1.5 = 2 * (0.5, 3) / 1.5 = (0.6667, 4); position 1: 2 * e1 = (2, 0)
    expected = torch.tensor([[[2 * 0.5 / 1.5, 2 * 3 / 1.5], [2.0, 0.0]]])
    torch.testing.assert_close(sampled, expected)
    torch.testing.assert_close(trained, expected, rtol=0, atol=0)

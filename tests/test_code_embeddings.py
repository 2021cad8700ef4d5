"""Attribute-sum code rows while training (training/code_embeddings.py)."""

from __future__ import annotations

import torch

from rm_edit.data.shapes import cell_code
from rm_edit.layout import SHAPES_GRID
from rm_edit.training.code_embeddings import attach_attribute_rows, cell_attribute_index, detach_attribute_rows
from rm_edit.transformer import LLaDATransformer


def _model() -> LLaDATransformer:
    torch.manual_seed(0)
    return LLaDATransformer(vocab_size=SHAPES_GRID.vocab_size, d_model=16, n_layers=1, n_heads=2, mlp_hidden_size=32,
                            mask_token_id=SHAPES_GRID.mask_token_id, max_sequence_length=64)


def test_attribute_index_by_hand():
    index = cell_attribute_index()
    # Table: backgrounds 0-4 | colours 5-10 | kinds 11-14 | parts 15-19; -1 = not present.
    assert index[cell_code("beige")].tolist() == [1, -1, -1, -1]
    # beige=1, green=5+1, triangle=11+2, part 3=15+3
    assert index[cell_code("beige", "green", "triangle", 3)].tolist() == [1, 6, 13, 18]


def test_fresh_rows_are_sums_so_attribute_differences_carry_over():
    model = _model()
    attach_attribute_rows(model, SHAPES_GRID, fresh=True)
    rows = model.get_input_embeddings().weight
    row = lambda *a: rows[SHAPES_GRID.image_code_offset + cell_code(*a)]  # noqa: E731
    # triangle - circle is the same vector on any background and colour (it is kind(triangle) - kind(circle))
    d1 = row("beige", "green", "triangle", 3) - row("beige", "green", "circle", 3)
    d2 = row("light gray", "red", "triangle", 3) - row("light gray", "red", "circle", 3)
    torch.testing.assert_close(d1, d2)
    assert d1.abs().sum() > 0
    head = model.output_head_weight
    torch.testing.assert_close(head[SHAPES_GRID.image_code_offset + cell_code("beige")],
                               model.transformer["ff_out"].parametrizations.weight[0].vectors[1])
    text = rows[: SHAPES_GRID.image_code_offset]
    assert torch.equal(text, model.transformer["wte"].parametrizations.weight.original[: SHAPES_GRID.image_code_offset])


@torch.no_grad()
def test_detach_folds_the_sums_in_and_keeps_the_function(tmp_path):
    model = _model().eval()
    attach_attribute_rows(model, SHAPES_GRID, fresh=False)
    assert torch.count_nonzero(model.transformer["wte"].parametrizations.weight[0].vectors) == 0  # step 0: unchanged
    for module in (model.transformer["wte"], model.transformer["ff_out"]):
        module.parametrizations.weight[0].vectors.normal_()  # as if trained
    ids = torch.randint(0, SHAPES_GRID.vocab_size, (2, 20))
    before = model(ids).logits
    detach_attribute_rows(model)
    assert not hasattr(model.transformer["wte"], "parametrizations")
    torch.testing.assert_close(model(ids).logits, before)
    model.save_pretrained(tmp_path / "m")
    torch.testing.assert_close(LLaDATransformer.from_pretrained(tmp_path / "m").eval()(ids).logits, before)

"""(row, column) embeddings of image codes in the LLaDA transformer (grid_position_size > 0)."""

from __future__ import annotations

import torch

from rm_edit.layout import SHAPES_GRID
from rm_edit.transformer import LLaDATransformer, grid_positions

BEGIN, EOR, END = SHAPES_GRID.image_begin_id, SHAPES_GRID.end_of_row_id, SHAPES_GRID.image_end_id  # 4, 3, 5


def test_grid_positions_read_off_the_image_block_by_hand():
    # text, text, <IMAGE> a b <eor> c d <eor> </IMAGE> text <IMAGE> e f <eor> </IMAGE>
    ids = torch.tensor([[9, 9, BEGIN, 10, 11, EOR, 12, 13, EOR, END, 7, BEGIN, 20, 21, EOR, END]])
    row, col, is_code = grid_positions(ids, BEGIN, EOR, END)
    codes = is_code[0].nonzero().flatten().tolist()
    assert codes == [3, 4, 6, 7, 12, 13]
    assert [(row[0, i].item(), col[0, i].item()) for i in codes] == [(0, 0), (0, 1), (1, 0), (1, 1), (0, 0), (0, 1)]


@torch.no_grad()
def test_same_code_at_two_cells_differs_only_by_the_grid_embeddings(tmp_path):
    torch.manual_seed(0)
    model = LLaDATransformer(vocab_size=SHAPES_GRID.vocab_size, d_model=16, n_layers=1, n_heads=2, mlp_hidden_size=32,
                             mask_token_id=2, max_sequence_length=64, grid_position_size=8, image_begin_id=BEGIN,
                             end_of_row_id=EOR, image_end_id=END).eval()
    code = SHAPES_GRID.image_code_offset + 7
    ids = torch.tensor([[BEGIN, code, code, EOR, code, code, EOR, END]])
    x = model.embed(ids)[0]
    rows, cols, wte = (model.transformer[k].weight for k in ("grid_rows", "grid_cols", "wte"))
    torch.testing.assert_close(x[1], wte[code] + rows[0] + cols[0])
    torch.testing.assert_close(x[5], wte[code] + rows[1] + cols[1])
    torch.testing.assert_close(x[0], wte[BEGIN])  # not a code: no grid embedding
    # the cached path computes the same logits for the positions it recomputes
    from rm_edit.kv_cache import KVCache

    full = model(ids).logits
    cache = KVCache()
    model(ids, kv_cache=cache)
    part = model(ids, kv_cache=cache, compute_positions=torch.tensor([[4, 5]])).logits
    torch.testing.assert_close(part, full[:, 4:6], atol=1e-5, rtol=1e-5)
    model.save_pretrained(tmp_path / "m")
    torch.testing.assert_close(LLaDATransformer.from_pretrained(tmp_path / "m").eval()(ids).logits, full)

import pytest
import torch

from rm_edit.layout import LUMINA_DIMOO, SHAPES, SHAPES_1K, build_edit_sequence, edit_prompt_text, get_layout, target_grid


def test_lumina_ids_are_the_published_ones():
    L = LUMINA_DIMOO
    assert (L.mask_token_id, L.end_of_row_id, L.image_begin_id, L.image_end_id) == (126336, 126084, 126349, 126350)
    assert (L.uncondition_id, L.answer_begin_id, L.answer_end_id, L.pad_token_id) == (126351, 126354, 126355, 126339)
    assert L.image_code_offset == 126356 and L.codebook_size == 8192 and L.vocab_size == 134548


@pytest.mark.parametrize("layout", [LUMINA_DIMOO, SHAPES, SHAPES_1K])
def test_edit_sequence_round_trip(layout):
    g = torch.Generator().manual_seed(0)
    src = torch.randint(0, layout.codebook_size, (3, 5), generator=g)
    tgt = torch.randint(0, layout.codebook_size + 1, (3, 5), generator=g)  # some [MASK]
    seq = build_edit_sequence(layout, [11, 12, 13], src, tgt, [14])
    ids = seq.input_ids
    # prompt, <IMAGE>, 3 rows of 5 + eor, </IMAGE>, close, <answer>, <IMAGE>, rows, </IMAGE>, </answer>
    assert ids.numel() == 3 + (2 + 3 * 6) + 1 + 1 + (2 + 3 * 6) + 1
    torch.testing.assert_close(target_grid(layout, ids, seq), tgt)
    assert ids[seq.target_positions.reshape(3, 5)[:, -1] + 1].eq(layout.end_of_row_id).all()
    assert ids[-1] == layout.answer_end_id and ids[-2] == layout.image_end_id
    src_positions = layout.image_positions(3, 3, 5)
    torch.testing.assert_close(layout.code_state_from_ids(ids[src_positions]).reshape(3, 5), src)


def test_guidance_variants():
    src = torch.zeros(2, 2, dtype=torch.long)
    with_image = build_edit_sequence(SHAPES, [9, 20], src, None, [12])
    no_image = build_edit_sequence(SHAPES, [9, 20], None, None, [12], grid_size=(2, 2))
    assert with_image.input_ids.numel() - no_image.input_ids.numel() == 2 + 2 * 3
    assert (with_image.input_ids[with_image.target_positions] == SHAPES.mask_token_id).all()
    assert SHAPES.image_begin_id not in no_image.input_ids[: 3].tolist()
    text, close = edit_prompt_text(SHAPES, None)
    assert "<uncondition>" in text and close == "</user>"
    assert edit_prompt_text(LUMINA_DIMOO, "make it red")[0].startswith("<system>Generate an image applying")


def test_code_state_rejects_text_ids():
    with pytest.raises(ValueError, match="neither image codes"):
        SHAPES.code_state_from_ids(torch.tensor([300, 17]))


def test_image_code_logits_order():
    logits = torch.arange(SHAPES.vocab_size, dtype=torch.float)[None]
    out = SHAPES.image_code_logits(logits)
    assert out.shape[-1] == SHAPES.codebook_size + 1
    assert out[0, 0] == SHAPES.image_code_offset and out[0, -1] == SHAPES.mask_token_id


def test_layout_from_dict_and_unknown_name():
    assert get_layout(SHAPES.to_dict()) == SHAPES
    with pytest.raises(ValueError, match="unknown token layout 'nope'"):
        get_layout("nope")

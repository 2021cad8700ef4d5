"""Cell-local encoding: an edit changes exactly the codes of the cells it touches."""

import torch

from rm_edit.vq import build_vq, cell_latents, encode_to_codes


def test_cell_local_codes_change_only_touched_cells():
    torch.manual_seed(0)
    vq = build_vq(seed=0).eval()
    image = torch.rand(1, 3, 64, 64)
    edited = image.clone()
    edited[:, :, 8:16, 24:32] = torch.rand(1, 3, 8, 8)  # exactly cell (1, 3)
    a = encode_to_codes(vq, image, cell_local=True)
    b = encode_to_codes(vq, edited, cell_local=True)
    changed = (a != b)[0]
    assert changed.sum() <= 1 and not changed[[0, 2], :].any()
    # the latent of every other cell is bit-identical, unlike the whole-image encoding
    la, lb = cell_latents(vq, image), cell_latents(vq, edited)
    keep = torch.ones(8, 8, dtype=torch.bool)
    keep[1, 3] = False
    assert torch.equal(la[0][:, keep], lb[0][:, keep])
    with torch.no_grad():
        whole_a, whole_b = vq.encode(image).latents, vq.encode(edited).latents
    assert not torch.equal(whole_a[0][:, keep], whole_b[0][:, keep])


def test_pipeline_attribute_selects_cell_local():
    vq = build_vq(seed=1).eval()
    x = torch.rand(2, 3, 64, 64)
    vq.rm_edit_cell_local = True
    assert torch.equal(encode_to_codes(vq, x), encode_to_codes(vq, x, cell_local=True))

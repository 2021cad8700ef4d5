"""A training batch with nothing padded attends without a mask (SDPA may then pick its flash kernel), with the
results of the masked path; a padded batch keeps its mask (tiny Lumina-DiMOO-layout model, fp32)."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from rm_edit.layout import LUMINA_DIMOO as L
from rm_edit.training.lora_rm import rm_losses
from rm_edit.training.train_mdm import sample_native
from tests.lumina_fixture import make_tiny_lumina_transformer, tiny_rm_batch

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: tiny models run single-threaded

SAME_LENGTH = ["make the sky red", "make the sea blue"]  # four words each: equal sequences
DIFFERENT_LENGTH = ["make the sky red", "add a hat"]


def _examples(instructions):
    return tiny_rm_batch(instructions)[:4]


@pytest.fixture
def sdpa_masks(monkeypatch):
    """Every attn_mask given to F.scaled_dot_product_attention (the transformer calls it through F)."""
    seen, real = [], F.scaled_dot_product_attention

    def spy(*args, attn_mask=None, **kwargs):
        seen.append(attn_mask)
        return real(*args, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    return seen


def test_equal_lengths_train_without_a_mask_and_lose_nothing(sdpa_masks):
    model = make_tiny_lumina_transformer(0)
    _, _, batch, corrupted = _examples(SAME_LENGTH)
    assert not batch.padded and bool(batch.attention_mask.all()) and batch.model_mask is None
    unmasked = rm_losses(model, L, batch, corrupted)
    assert len(sdpa_masks) == 2 and all(m is None for m in sdpa_masks)  # two layers, no mask: flash may run
    sdpa_masks.clear()
    masked = rm_losses(model, L, replace(batch, padded=True), corrupted)  # the same rows with their all-ones mask
    assert len(sdpa_masks) == 2 and all(m is not None for m in sdpa_masks)
    assert set(unmasked) == {"reveal", "mask", "keep"}
    for name in unmasked:
        torch.testing.assert_close(unmasked[name], masked[name], rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        a = model(batch.input_ids, None, output_positions=batch.target_positions).logits
        b = model(batch.input_ids, batch.attention_mask, output_positions=batch.target_positions).logits
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_a_padded_batch_keeps_its_mask(sdpa_masks):
    model = make_tiny_lumina_transformer(0)
    _, _, batch, corrupted = _examples(DIFFERENT_LENGTH)
    lengths = batch.attention_mask.sum(-1).tolist()
    assert lengths[0] == lengths[1] + 1 and batch.padded and batch.model_mask is batch.attention_mask
    rm_losses(model, L, batch, corrupted)
    assert len(sdpa_masks) == 2
    assert all(m is not None and not bool(m.all()) for m in sdpa_masks)  # the padding key is hidden
    # A batch padded to the device keeps its flag (the training loop moves it before the forward).
    assert batch.to("cpu").padded and not _examples(SAME_LENGTH)[2].to("cpu").padded


def test_the_models_own_samples_run_unmasked_when_nothing_is_padded(sdpa_masks):
    model = make_tiny_lumina_transformer(0)
    bank, cache, _, _ = _examples(SAME_LENGTH)
    native = sample_native(model, L, bank, cache, torch.arange(2), None, torch.Generator().manual_seed(1))
    assert native.shape == (2, 16) and int(native.max()) < L.codebook_size  # every code revealed
    assert len(sdpa_masks) == 2 and all(m is None for m in sdpa_masks)

"""A padded training batch packed into one row (``pack_batches``) trains as its padded self: the same losses and
gradients as each sequence run alone (the reference, computed here with one plain forward per sequence), with
attention per length group and no mask (tiny Lumina-DiMOO-layout model, fp32)."""

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from rm_edit.history import scatter_offsets
from rm_edit.layout import LUMINA_DIMOO as L
from rm_edit.losses import rm_losses
from rm_edit.packing import pack_sequences
from rm_edit.training import train_mdm
from rm_edit.training.train_mdm import LOSS_NAMES, forward_batch
from tests.lumina_fixture import make_tiny_lumina_checkpoint, make_tiny_lumina_transformer, tiny_rm_batch

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: tiny models run single-threaded

# Three prompt lengths (the stand-in tokenizer is word-level: 4, 3 and 6 words), two of one length.
INSTRUCTIONS = ["make the sky red", "add a hat", "make the sea blue", "remove the small red ball now"]


def _batch():
    _, _, batch, corrupted, g = tiny_rm_batch(INSTRUCTIONS)
    b, n = len(INSTRUCTIONS), 16
    # A History-Reference-like offset at every target position (random: the placement is what is checked).
    reference = torch.randn(b, n, 16, generator=g)
    offset = scatter_offsets(reference, batch.target_positions, batch.input_ids.shape[1])
    return batch, corrupted, offset


def _loss_and_grads(model, logits, corrupted):
    losses = rm_losses(logits.float(), corrupted.labels, corrupted.kind, LOSS_NAMES)
    model.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    return {k: v.detach() for k, v in losses.items()}, {n: p.grad.clone() for n, p in model.named_parameters()}


def test_pack_lays_sequences_end_to_end_by_length():
    batch, _, offset = _batch()
    lengths = batch.attention_mask.sum(-1).tolist()
    n = lengths[0]
    # By hand: 4 + 3 + 4 + 6 instruction words -> lengths n, n - 1, n, n + 2; row order by length (stable).
    assert lengths == [n, n - 1, n, n + 2] and batch.padded
    packed = pack_sequences(batch)
    assert packed.order == (1, 0, 2, 3)
    assert packed.groups == ((0, 1, n - 1), (n - 1, 2, n), (3 * n - 1, 1, n + 2))
    row = torch.cat([batch.input_ids[1, : n - 1], batch.input_ids[0, :n], batch.input_ids[2, :n], batch.input_ids[3, : n + 2]])
    assert torch.equal(packed.input_ids[0], row)
    placed = packed.pack(offset)[0]  # the offsets follow their tokens
    assert torch.equal(placed[: n - 1], offset[1, : n - 1]) and torch.equal(placed[3 * n - 1 :], offset[3, : n + 2])
    assert torch.equal(packed.target_positions[0], batch.target_positions[0] + (n - 1))  # sequence 0 sits second


def test_packed_loss_and_gradients_equal_each_sequence_alone_and_the_padded_batch():
    model = make_tiny_lumina_transformer(0).train()
    batch, corrupted, offset = _batch()
    classes = L.image_class_ids("cpu")
    lengths = batch.attention_mask.sum(-1).tolist()
    # The reference: each sequence alone, unpadded, one plain forward each.
    alone = torch.cat([model(batch.input_ids[i : i + 1, :n], None, embedding_offset=offset[i : i + 1, :n],
                             output_positions=batch.target_positions[i : i + 1], output_classes=classes).logits
                       for i, n in enumerate(lengths)])
    want_loss, want_grads = _loss_and_grads(model, alone, corrupted)
    for pack in (True, False):
        logits = forward_batch(model, batch, "cpu", offset, classes, pack=pack)
        torch.testing.assert_close(logits, alone, rtol=1e-5, atol=1e-5)
        loss, grads = _loss_and_grads(model, logits, corrupted)
        assert set(loss) == {"reveal", "mask", "keep"}
        for name in loss:
            torch.testing.assert_close(loss[name], want_loss[name], rtol=1e-6, atol=1e-6)
        for name, grad in grads.items():
            torch.testing.assert_close(grad, want_grads[name], rtol=1e-4, atol=1e-7, msg=lambda m: f"{name}: {m}")


def test_a_packed_batch_attends_without_a_mask_once_per_length_group(monkeypatch):
    seen, real = [], F.scaled_dot_product_attention

    def spy(q, *args, attn_mask=None, **kwargs):
        seen.append((q.shape[0], attn_mask))
        return real(q, *args, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    model = make_tiny_lumina_transformer(0)
    batch, _, _ = _batch()
    forward_batch(model, batch, "cpu", pack=True)
    # 2 layers x 3 length groups (1, 2 and 1 sequences), none masked: SDPA may use its flash kernel.
    assert [count for count, _ in seen] == [1, 2, 1] * 2 and all(mask is None for _, mask in seen)
    seen.clear()
    forward_batch(model, batch, "cpu", pack=False)
    assert len(seen) == 2 and all(mask is not None for _, mask in seen)  # padded: one masked call per layer


def _code_cache(path, instructions):
    g = torch.Generator().manual_seed(3)
    b = len(instructions)
    source = torch.randint(0, L.codebook_size, (b, 4, 4), generator=g)
    target = source.clone()
    target[:, 1:3, 1:3] = torch.randint(0, L.codebook_size, (b, 2, 2), generator=g)
    save_file({"source": source.to(torch.int16), "target": target.to(torch.int16)}, str(path))
    path.with_suffix(".json").write_text(json.dumps({"ids": [str(i) for i in range(b)], "instructions": instructions,
                                                     "edit_types": [None] * b}))
    return path


def test_the_training_loop_packs_padded_batches_when_asked(tmp_path, monkeypatch):
    from rm_edit.training.lora_rm import lumina_lora_config

    checkpoint = make_tiny_lumina_checkpoint(tmp_path / "Lumina-DiMOO")
    codes = _code_cache(tmp_path / "codes.safetensors", INSTRUCTIONS)
    calls, real = [], train_mdm.forward_packed

    def counting(model, packed, *args, **kwargs):
        calls.append(len(packed.groups))
        return real(model, packed, *args, **kwargs)

    monkeypatch.setattr(train_mdm, "forward_packed", counting)
    common = dict(init_from=str(checkpoint), train_codes=str(codes), steps=2, batch_size=4, lora_rank=4,
                  native_refresh_every=2, history=True, log_every=1, save_every=0, threads=1)
    out = tmp_path / "packed"
    train_mdm.train(lumina_lora_config(out=str(out), pack_batches=True, **common), progress=False)
    assert json.loads((out / "train_config.json").read_text())["pack_batches"] is True
    # Step 0: the model's own samples and the training pass; step 1: the training pass (4 examples, 4 lengths
    # at most: every draw of 4 from these prompts is padded unless all four share one length).
    assert 2 <= len(calls) <= 3 and all(g >= 2 for g in calls)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2] and all(r["reveal"] == r["reveal"] for r in records)  # not nan
    calls.clear()
    default = tmp_path / "default"
    train_mdm.train(lumina_lora_config(out=str(default), **common), progress=False)
    assert json.loads((default / "train_config.json").read_text())["pack_batches"] is False and calls == []  # CPU

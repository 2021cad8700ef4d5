import json

import pytest
import torch
from safetensors.torch import load_file

from rm_edit import LLaDATransformer
from rm_edit.transformer import llada_config_to_kwargs, save_llada_checkpoint
from tests.reference_llada import llada_reference_logits

TINY = dict(vocab_size=300, embedding_size=320, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2,
            mlp_hidden_size=96, rope_theta=500000.0, mask_token_id=7)


def _tiny(seed=0, **kw):
    torch.manual_seed(seed)
    return LLaDATransformer(**{**TINY, **kw}).eval()


def test_logits_cover_embedding_size():
    model = _tiny()
    logits = model(torch.randint(0, 300, (2, 11))).logits
    assert logits.shape == (2, 11, 320)


def test_llada_checkpoint_loads_and_matches_reference(tmp_path):
    model = _tiny(seed=1)
    save_llada_checkpoint(model, tmp_path / "llada", max_shard_bytes=40_000)  # forces several shards
    index = json.loads((tmp_path / "llada" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert all(k.startswith("model.transformer.") for k in index["weight_map"])

    loaded = LLaDATransformer.from_pretrained(tmp_path / "llada")
    cfg = json.loads((tmp_path / "llada" / "config.json").read_text())
    sd = {}
    for f in sorted((tmp_path / "llada").glob("*.safetensors")):
        sd.update(load_file(str(f)))
    ids = torch.randint(0, 300, (1, 23))
    with torch.no_grad():
        ours = loaded(ids).logits[0]
    ref = llada_reference_logits(sd, cfg, ids[0])
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


def test_own_save_pretrained_round_trip(tmp_path):
    model = _tiny(seed=2)
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "diffusion_pytorch_model.safetensors").exists()
    again = LLaDATransformer.from_pretrained(tmp_path / "m")
    ids = torch.randint(0, 300, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, again(ids).logits, atol=0, rtol=0)


def test_padding_mask_matches_unpadded_rows():
    model = _tiny(seed=3)
    a, b = torch.randint(0, 300, (13,)), torch.randint(0, 300, (8,))
    pad = 0
    batch = torch.full((2, 13), pad)
    batch[0], batch[1, 5:] = a, b  # left padding on row 1
    mask = torch.ones(2, 13, dtype=torch.long)
    mask[1, :5] = 0
    with torch.no_grad():
        both = model(batch, attention_mask=mask).logits
        alone_a = model(a[None]).logits[0]
        alone_b = model(b[None]).logits[0]
    torch.testing.assert_close(both[0], alone_a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both[1, 5:], alone_b, atol=1e-5, rtol=1e-5)
    right = torch.full((1, 13), pad)
    right[0, :8] = b
    with torch.no_grad():
        rp = model(right, attention_mask=(torch.arange(13) < 8).long()[None]).logits[0, :8]
    torch.testing.assert_close(rp, alone_b, atol=1e-5, rtol=1e-5)


def test_output_positions_select_rows():
    model = _tiny(seed=4)
    ids = torch.randint(0, 300, (2, 10))
    pos = torch.tensor([[1, 4], [9, 0]])
    with torch.no_grad():
        full = model(ids).logits
        part = model(ids, output_positions=pos).logits
    torch.testing.assert_close(part[0], full[0, [1, 4]])
    torch.testing.assert_close(part[1], full[1, [9, 0]])


def test_gradient_checkpointing_same_gradients():
    model = _tiny(seed=5).train()
    ids = torch.randint(0, 300, (2, 12))
    model(ids).logits.square().mean().backward()
    g0 = model.transformer["blocks"][0].q_proj.weight.grad.clone()
    model.zero_grad()
    model.enable_gradient_checkpointing()
    model(ids).logits.square().mean().backward()
    torch.testing.assert_close(model.transformer["blocks"][0].q_proj.weight.grad, g0, atol=1e-6, rtol=1e-5)


def test_bf16_forward_runs_and_is_close():
    model = _tiny(seed=6)
    ids = torch.randint(0, 300, (1, 12))
    with torch.no_grad():
        ref = model(ids).logits
        low = model.to(torch.bfloat16)(ids).logits
    assert low.dtype == torch.bfloat16
    assert (low.float() - ref).abs().max() < 0.1


def test_tied_weights_checkpoint(tmp_path):
    model = _tiny(seed=7, tie_word_embeddings=True)
    assert "transformer.ff_out.weight" not in model.state_dict()
    save_llada_checkpoint(model, tmp_path / "tied")
    loaded = LLaDATransformer.from_pretrained(tmp_path / "tied")
    ids = torch.randint(0, 300, (1, 6))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits)


@pytest.mark.parametrize(
    "change, words",
    [
        ({"block_type": "sequential"}, "block_type"),
        ({"alibi": True}, "alibi"),
        ({"rope": False}, "rope"),
        ({"include_bias": True}, "include_bias"),
        ({"layer_norm_type": "default"}, "layer_norm_type"),
        ({"activation_type": "gelu"}, "activation_type"),
        ({"clip_qkv": 8.0}, "clip_qkv"),
    ],
)
def test_unsupported_configs_refused(change, words):
    cfg = {"d_model": 64, "n_heads": 4, "n_layers": 2, "vocab_size": 300, "rope": True, "block_type": "llama",
           "layer_norm_type": "rms", "activation_type": "silu"}
    llada_config_to_kwargs(cfg)  # the base is fine
    with pytest.raises(ValueError, match=words):
        llada_config_to_kwargs({**cfg, **change})


def test_missing_shard_is_a_clear_error(tmp_path):
    model = _tiny(seed=8)
    save_llada_checkpoint(model, tmp_path / "c", max_shard_bytes=40_000)
    next((tmp_path / "c").glob("model-00002-*.safetensors")).unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        LLaDATransformer.from_pretrained(tmp_path / "c")


def test_output_classes_are_those_columns_of_the_full_head():
    model = _tiny(seed=6)
    ids = torch.randint(0, 300, (2, 10))
    classes = torch.tensor([299, 7, 0, 150])  # any order, as the sampler's codes-then-[MASK]
    with torch.no_grad():
        full = model(ids, output_positions=torch.tensor([[1, 4], [0, 9]])).logits
        some = model(ids, output_positions=torch.tensor([[1, 4], [0, 9]]), output_classes=classes).logits
    # A 4-column matmul may sum in another order than the full head's (BLAS kernels differ by width): equal to
    # float rounding, not bit for bit.
    assert some.shape == (2, 2, 4)
    torch.testing.assert_close(some, full[..., classes], rtol=0, atol=1e-6)


def test_gradient_checkpointing_with_packed_sequences_same_gradients():
    from rm_edit.layout import SequenceBatch
    from rm_edit.packing import pack_sequences

    model = _tiny(seed=7).train()
    mask = torch.tensor([[1] * 9, [1] * 6 + [0] * 3])
    batch = SequenceBatch(torch.randint(0, 300, (2, 9)), mask, torch.tensor([[2, 5], [1, 3]]))
    packed = pack_sequences(batch)
    out = lambda: model(packed.input_ids, packing=packed, output_positions=packed.target_positions.reshape(1, -1))  # noqa: E731
    out().logits.square().mean().backward()
    g0 = model.transformer["blocks"][0].q_proj.weight.grad.clone()
    model.zero_grad()
    model.enable_gradient_checkpointing()
    out().logits.square().mean().backward()
    torch.testing.assert_close(model.transformer["blocks"][0].q_proj.weight.grad, g0, atol=1e-6, rtol=1e-5)


def test_compile_blocks_keeps_outputs():
    """The plumbing of ``--compile`` (the eager backend: no compiler needed; inductor is timed by the GPU check)."""
    model = _tiny(seed=8)
    ids = torch.randint(0, 300, (1, 11))
    with torch.no_grad():
        before = model(ids).logits
        after = model.compile_blocks(backend="eager")(ids).logits
    assert torch.equal(before, after)


def test_llada_checkpoint_loads_onto_an_indexed_cpu_device(tmp_path):
    """Under accelerate a CPU process's device is ``cpu:0`` (safetensors names it "cpu")."""
    model = _tiny(seed=9)
    save_llada_checkpoint(model, tmp_path / "ckpt")
    loaded = LLaDATransformer.from_llada_checkpoint(tmp_path / "ckpt", device=torch.device("cpu", 0))
    assert torch.equal(loaded.transformer["blocks"][1].ff_out.weight, model.transformer["blocks"][1].ff_out.weight)

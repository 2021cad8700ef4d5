"""End-to-end smoke runs of the MDM training stages on a tiny world (random VQ, tiny model)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from rm_edit import LLaDATransformer
from rm_edit.data.pretokenize import CodeCache, load_code_cache, pretokenize_manifest
from rm_edit.data.shapes import write_shapes_dataset
from rm_edit.training.train_mdm import MDMTrainConfig, train
from rm_edit.training.trajectories import KEEP, MASK, REVEAL, reflective_trajectory, vanilla_corruption
from rm_edit.vq import build_vq

TINY_MODEL = dict(d_model=32, n_layers=1, n_heads=2, mlp_hidden_size=64)


@pytest.fixture(scope="module")
def codes(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    manifest = write_shapes_dataset(root / "train", 24, split="train", progress=False)
    vq = build_vq(seed=0).eval()
    vq.save_pretrained(root / "vq")  # the VQ the trained pipelines decode with (``vq`` below)
    out = pretokenize_manifest(manifest, vq, root / "train" / "codes.safetensors", batch_size=8, progress=False)
    return out


def _weights(folder):
    return load_file(str(folder / "transformer" / "diffusion_pytorch_model.safetensors"))


def test_pretokenized_cache_round_trip(codes):
    cache = load_code_cache(codes)
    assert len(cache) == 24 and cache.grid_size == (8, 8)
    assert cache.source.dtype == torch.long and cache.instructions[0]


def test_cache_keeps_only_the_requested_edit_types(codes):
    cache = load_code_cache(codes)
    removes = cache.with_edit_types(["remove"])
    rows = [i for i, t in enumerate(cache.edit_types) if t == "remove"]
    assert 0 < len(removes) == len(rows) < len(cache) and set(removes.edit_types) == {"remove"}
    assert removes.ids == [cache.ids[i] for i in rows] and removes.instructions == [cache.instructions[i] for i in rows]
    torch.testing.assert_close(removes.target, cache.target[rows])
    with pytest.raises(ValueError, match="no examples of edit types"):
        cache.with_edit_types(["teleport"])


def test_caches_concatenate_in_order(codes):
    cache = load_code_cache(codes)
    removes = cache.with_edit_types(["remove"])
    joined = CodeCache.concat([cache, removes])
    assert len(joined) == len(cache) + len(removes) and joined.ids == cache.ids + removes.ids
    assert joined.edit_types[len(cache):] == removes.edit_types
    torch.testing.assert_close(joined.source[len(cache):], removes.source)
    small = CodeCache(cache.source[:, :4, :4], cache.target[:, :4, :4], cache.instructions, cache.ids, cache.edit_types)
    with pytest.raises(ValueError, match="different grid sizes"):
        CodeCache.concat([cache, small])


def test_vanilla_corruption_masks_and_labels():
    target = torch.randint(0, 16, (64, 20), generator=torch.Generator().manual_seed(0))
    c = vanilla_corruption(target, 16, torch.Generator().manual_seed(1))
    masked = c.state == 16
    assert masked.any(-1).all()  # at least one masked per row
    assert (c.kind[masked] == REVEAL).all() and (c.kind[~masked] == -1).all()
    assert torch.equal(c.state[~masked], target[~masked])
    assert 0.4 < masked.float().mean() < 0.8  # E[cos(r pi/2)] = 2/pi


def test_reflective_trajectory_oracle_labels():
    g = torch.Generator().manual_seed(0)
    source = torch.randint(0, 16, (256, 30), generator=g)
    target = source.clone()
    target[:, 5:12] = (target[:, 5:12] + 3) % 16
    native = torch.randint(0, 16, (256, 30), generator=g)
    c = reflective_trajectory(source, target, 16, native, generator=g, with_history=True)
    is_mask = c.state == 16
    wrong = ~is_mask & (c.state != target)
    assert (c.labels[is_mask] == target[is_mask]).all() and (c.kind[is_mask] == REVEAL).all()
    assert (c.labels[wrong] == 16).all() and (c.kind[wrong] == MASK).all()
    correct = ~is_mask & ~wrong
    assert (c.labels[correct] == c.state[correct]).all() and (c.kind[correct] == KEEP).all()
    # some rows are the untouched source (the first reflect step): the edit region is all "mask"
    source_rows = (c.state == source).all(-1)
    assert source_rows.any() and (c.kind[source_rows][:, 5:12] == MASK).all()
    assert (c.history[source_rows] == -1).all()  # as at sampling: the first pass has recorded nothing yet
    assert set(c.kind.unique().tolist()) == {REVEAL, MASK, KEEP}
    # history of masked edit positions remembers the source code it rejected
    hist = c.history[..., 1]
    remembered = is_mask[:, 5:12] & (hist[:, 5:12] >= 0)
    assert remembered.any() and (hist[:, 5:12][remembered] == source[:, 5:12][remembered]).all()


def _cfg(codes, tmp_path, **kw):
    base = dict(train_codes=str(codes), out=str(tmp_path / "run"), model=TINY_MODEL, steps=6, batch_size=4,
                warmup_steps=1, save_every=3, log_every=1, seed=0, vq=str(codes.parents[1] / "vq"))
    return MDMTrainConfig(**{**base, **kw})


def test_vanilla_then_reflective_with_history(codes, tmp_path):
    base = train(_cfg(codes, tmp_path / "base"), progress=False)
    assert (base / "transformer" / "diffusion_pytorch_model.safetensors").exists()
    rm = train(_cfg(codes, tmp_path / "rm", objective="reflective", history=True, init_from=str(base),
                    native_refresh_every=2, extra_codes=[str(codes)]), progress=False)
    log = [json.loads(line) for line in (tmp_path / "rm" / "run" / "log.jsonl").read_text().splitlines()]
    assert {"reveal", "mask", "keep"} <= set(log[-1])
    model = LLaDATransformer.from_pretrained(rm / "transformer")
    assert model.config.d_model == 32


def test_resume_reproduces_uninterrupted_run(codes, tmp_path):
    full = train(_cfg(codes, tmp_path / "a", objective="reflective", native_refresh_every=2), progress=False)
    # interrupted run: stop after the step-3 checkpoint, then resume to 6
    train(_cfg(codes, tmp_path / "b", objective="reflective", native_refresh_every=2, steps=6, save_every=3),
          progress=False)
    part = _cfg(codes, tmp_path / "c", objective="reflective", native_refresh_every=2)
    import shutil

    shutil.copytree(tmp_path / "b" / "run" / "checkpoint", tmp_path / "c" / "run" / "checkpoint")
    (tmp_path / "c" / "run" / "checkpoint" / "training_state.json").write_text(
        (tmp_path / "b" / "run" / "checkpoint" / "training_state.json").read_text())
    resumed = train(part, progress=False)
    a, r = _weights(full), _weights(resumed)
    for k in a:
        torch.testing.assert_close(a[k], r[k], atol=1e-5, rtol=1e-4)


def test_lora_run_writes_an_adapter_and_its_merge_changes_only_adapted_weights_and_the_mask_row(codes, tmp_path):
    base = train(_cfg(codes, tmp_path / "base"), progress=False)
    out = train(_cfg(codes, tmp_path / "lora", objective="reflective", init_from=str(base), lora_rank=4,
                     steps=3, save_every=100, save_merged=True, snapshot_every=3), progress=False)
    assert {"pytorch_lora_weights.safetensors", "mask_row_delta.safetensors", "rm_adapter.json"} <= {
        p.name for p in out.iterdir()}
    snapshot = out.parent / "snapshots" / "step_000003"  # taken at the last step: the final adapter's tensors
    for name in ("pytorch_lora_weights.safetensors", "mask_row_delta.safetensors"):
        final, snap = load_file(str(out / name)), load_file(str(snapshot / name))
        assert set(final) == set(snap) and all(torch.equal(final[k], snap[k]) for k in final)
    assert not (out / "transformer").exists()  # the base's weights are not copied
    merged = out.parent / "merged"
    before, after = _weights(base), _weights(merged)
    assert set(before) == set(after) and not any("lora" in k for k in after)
    q = "transformer.blocks.0.q_proj.weight"
    assert not torch.equal(before[q], after[q])
    assert torch.equal(before["transformer.wte.weight"], after["transformer.wte.weight"])
    head = "transformer.ff_out.weight"  # the [MASK] row (token id 2 in the shapes layout) and nothing else
    assert (before[head] != after[head]).any(-1).nonzero().flatten().tolist() == [2]


def test_code_rows_seeded_from_codebook_keep_its_geometry():
    from rm_edit.layout import SHAPES_1K
    from rm_edit.training.train_mdm import init_code_rows_from_codebook

    model = LLaDATransformer(vocab_size=SHAPES_1K.vocab_size, **TINY_MODEL)
    text_rows = model.get_input_embeddings().weight[: SHAPES_1K.image_code_offset].clone()
    codebook = torch.randn(SHAPES_1K.codebook_size, 8)
    codebook[1] = codebook[0]  # two codes for the same cell content
    codebook[2] = codebook[0] + 0.01  # a near neighbour
    init_code_rows_from_codebook(model, SHAPES_1K, codebook, seed=0)
    rows = model.get_input_embeddings().weight[SHAPES_1K.image_code_offset :]
    assert torch.equal(model.get_input_embeddings().weight[: SHAPES_1K.image_code_offset], text_rows)
    assert torch.allclose(rows[0], rows[1])
    assert (rows[0] - rows[2]).norm() < 0.1 * (rows[0] - rows[3]).norm()
    assert torch.equal(model.output_head_weight[SHAPES_1K.image_code_offset :], rows)
    assert abs(rows.std().item() - 0.02) < 1e-3
    with pytest.raises(ValueError, match="1024"):
        init_code_rows_from_codebook(model, SHAPES_1K, codebook[:256], seed=0)


def test_command_line_takes_list_options(codes, tmp_path):
    from rm_edit.training.train_mdm import main

    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(dict(objective="reflective", model=TINY_MODEL, steps=2, batch_size=4, warmup_steps=1,
                                      save_every=2, log_every=1)))
    out = tmp_path / "run"
    main(["--config", str(config), "--train-codes", str(codes), "--extra-codes", str(codes), str(codes),
          "--edit-types", "remove", "recolour", "--out", str(out), "--no-progress", "--vq", str(codes.parents[1] / "vq"),
          "--sampler", '{"num_turns": 3}'])
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["extra_codes"] == [str(codes)] * 2 and saved["edit_types"] == ["remove", "recolour"]
    assert (out / "final" / "transformer" / "diffusion_pytorch_model.safetensors").is_file()
    assert json.loads((out / "final" / "scheduler" / "scheduler_config.json").read_text())["num_turns"] == 3


# ---- the sampler's own passes (states = "sampler") -------------------------------------------------------
K8 = 8  # codebook of 8 codes, [MASK] = 8
SRC = torch.tensor([[0, 5, 5, 1, 6, 2]])  # codes >= 5 are shape cells (background_codes = 5)
TGT = torch.tensor([[0, 7, 7, 1, 6, 2]])  # the edit changes positions 1 and 2


def _states(**kw):
    from rm_edit.training.trajectories import SamplerStatesConfig, sampler_states

    cfg = SamplerStatesConfig(background_codes=5, **kw)
    return sampler_states(SRC, TGT, K8, cfg, torch.Generator().manual_seed(0))


def test_sampler_states_reflect_pass_is_the_source_with_nothing_recorded():
    s = _states(p_reflect=1.0, p_reveal=0.0)
    assert s.state.tolist() == [[0, 5, 5, 1, 6, 2]]
    assert s.labels.tolist() == [[0, 8, 8, 1, 6, 2]]  # changed cells -> [MASK], the rest keep
    assert s.kind.tolist() == [[KEEP, MASK, MASK, KEEP, KEEP, KEEP]]
    assert s.history.tolist() == [[[-1, -1]] * 6]


def test_sampler_states_reveal_pass_masks_the_changed_cells_and_remembers_the_source():
    s = _states(p_reflect=0.0, p_reveal=1.0, p_false_remask=0.0, p_missed=0.0)
    assert s.state.tolist() == [[0, 8, 8, 1, 6, 2]]
    assert s.labels.tolist() == [[0, 7, 7, 1, 6, 2]]
    assert s.kind.tolist() == [[KEEP, REVEAL, REVEAL, KEEP, KEEP, KEEP]]
    assert s.history[..., 1].tolist() == [[0, 5, 5, 1, 6, 2]] and (s.history[..., 0] == -1).all()


def test_sampler_states_false_remasks_fall_on_unchanged_cells_and_are_revealed_back():
    from rm_edit.training.trajectories import SamplerStatesConfig, sampler_states

    src, tgt = SRC.repeat(400, 1), TGT.repeat(400, 1)
    cfg = SamplerStatesConfig(p_reflect=0.0, p_reveal=1.0, p_false_remask=1.0, max_false_remask=1.0,
                              p_missed=0.0, background_codes=5)
    s = sampler_states(src, tgt, K8, cfg, torch.Generator().manual_seed(1))
    assert (s.state[:, 1:3] == K8).all()
    false = s.state[:, [0, 3, 4, 5]] == K8
    assert false.any()
    assert (s.labels[:, [0, 3, 4, 5]] == tgt[:, [0, 3, 4, 5]]).all()  # a wrongly re-masked cell: reveal its own code
    shape_rate, background_rate = false[:, 2].float().mean(), false[:, [0, 1, 3]].float().mean()
    assert shape_rate > 1.3 * background_rate  # the shape cell (code 6) is re-masked by mistake more often


def test_sampler_states_confirm_pass_history_is_source_then_the_reveal_input():
    s = _states(p_reflect=0.0, p_reveal=0.0, max_wrong=0.0, p_noise=0.0, p_false_remask=0.0, p_missed=0.0)
    assert s.state.tolist() == [[0, 7, 7, 1, 6, 2]]
    assert s.kind.tolist() == [[KEEP] * 6]
    assert s.history[..., 0].tolist() == [[0, 5, 5, 1, 6, 2]]
    assert s.history[..., 1].tolist() == [[0, -1, -1, 1, 6, 2]]  # the reveal pass saw [MASK] there: nothing recorded


def test_changed_weighted_loss_by_hand():
    from rm_edit.losses import changed_weighted_loss

    logits = torch.tensor([[[0.0, 0.0], [torch.log(torch.tensor(3.0)), 0.0]]])
    labels = torch.tensor([[0, 0]])
    # CE: ln 2 = 0.693147 at position 0, -ln(3/4) = 0.287682 at position 1 (changed, weight 5)
    loss = changed_weighted_loss(logits, labels, torch.tensor([[False, True]]), 5.0)
    assert loss.item() == pytest.approx((0.693147 + 5 * 0.287682) / 6, abs=1e-5)


def test_false_remasks_are_the_keeps_where_mask_outscores_the_held_code():
    from rm_edit.losses import changed_weighted_loss, false_remasks

    # classes: codes 0, 1 and [MASK] = 2; every position holds (and keeps) code 0
    logits = torch.tensor([[[2.0, 0.0, 1.0],    # p(code 0) > p([MASK]): the sampler keeps it
                            [0.0, 0.0, 1.0],    # [MASK] outscores code 0: it would re-mask a right code
                            [0.0, 3.0, 1.0],    # code 1 wins, but [MASK] still outscores code 0: re-masked
                            [0.0, 0.0, 1.0]]])  # a reveal position, not a keep: never counted
    labels = torch.tensor([[0, 0, 0, 0]])
    keep = torch.tensor([[True, True, True, False]])
    wrong = false_remasks(logits, labels, keep, mask_class=2)
    assert wrong.tolist() == [[False, True, True, False]]
    # weighted 3x like a changed cell: CE at positions 0..3 is 0.40761, 1.55144, 3.16985, 1.55144
    loss = changed_weighted_loss(logits, labels, wrong, 3.0)
    assert loss.item() == pytest.approx((0.40761 + 3 * 1.55144 + 3 * 3.16985 + 1.55144) / 8, abs=1e-4)


def test_weighting_false_remasks_trains_and_is_refused_without_changed_weight(codes, tmp_path):
    kw = dict(objective="reflective", states="sampler", history=True, steps=2, save_every=100)
    folder = train(_cfg(codes, tmp_path / "a", changed_weight=5.0, weight_false_remasks=True, **kw), progress=False)
    assert (folder / "transformer" / "config.json").exists()
    with pytest.raises(ValueError, match="weight_false_remasks needs .* changed_weight 0.0"):
        train(_cfg(codes, tmp_path / "b", weight_false_remasks=True, **kw), progress=False)


def test_sampler_states_training_stops_early_and_resumes_to_the_same_weights(codes, tmp_path):
    kw = dict(objective="reflective", states="sampler", history=True, changed_weight=5.0, steps=6, save_every=100)
    full = train(_cfg(codes, tmp_path / "a", **kw), progress=False)
    train(_cfg(codes, tmp_path / "b", stop_after=4, **kw), progress=False)  # stops at 4 and saves its state
    assert json.loads((tmp_path / "b" / "run" / "checkpoint" / "training_state.json").read_text())["step"] == 4
    resumed = train(_cfg(codes, tmp_path / "b", **kw), progress=False)
    log = [json.loads(line) for line in (tmp_path / "b" / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6] and "total" in log[-1]
    a, r = _weights(full), _weights(resumed)
    for k in a:
        torch.testing.assert_close(a[k], r[k], atol=1e-5, rtol=1e-4)


def test_a_config_saved_with_the_old_decay_name_still_loads(tmp_path):
    """``history_gamma`` was renamed ``history_decay`` (the pipeline's name); saved configs keep working."""
    from rm_edit.configs import path as config_path

    path = tmp_path / "old.json"
    path.write_text('{"objective": "reflective", "history": true, "history_gamma": 0.5}')
    assert MDMTrainConfig.from_file(path).history_decay == 0.5
    assert MDMTrainConfig.from_file(config_path("mdm_grid_rm_her.json")).history_decay == 1.0


def test_edit_type_weights_scale_each_examples_chance_and_refuse_unknown_types():
    from rm_edit.training.train_mdm import edit_type_sampling_weights

    types = ["recolour", "null", "null", "move"]
    assert edit_type_sampling_weights(types, None) is None
    # Worked by hand: "null" examples weigh 3 each, the others keep weight 1.
    assert edit_type_sampling_weights(types, {"null": 3}).tolist() == [1.0, 3.0, 3.0, 1.0]
    zero = edit_type_sampling_weights(types, {"recolour": 0, "move": 0})
    drawn = torch.multinomial(zero, 200, replacement=True, generator=torch.Generator().manual_seed(0))
    assert set(drawn.tolist()) == {1, 2}  # only the null examples can be drawn
    with pytest.warns(UserWarning, match="plural"):  # a type the codes lack weighs nothing: said, then ignored
        assert edit_type_sampling_weights(types, {"plural": 2}).tolist() == [1.0, 1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match=">= 0"):
        edit_type_sampling_weights(types, {"null": -1})


def test_weighted_training_runs_on_the_weighted_types(codes, tmp_path):
    cache = load_code_cache(codes)
    others = {t: 0 for t in set(cache.edit_types) if t != cache.edit_types[0]}
    final = train(_cfg(codes, tmp_path / "w", edit_type_weights=others), progress=False)
    assert (final / "model_index.json").exists()
    with pytest.raises(ValueError, match="leave no example"):
        train(_cfg(codes, tmp_path / "bad", edit_type_weights={t: 0 for t in set(cache.edit_types)}), progress=False)


def test_a_missing_tokenizer_folder_is_named_not_read_as_a_hub_repo(codes, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^tokenizer runs/nowhere/tokenizer: folder not found$"):
        train(_cfg(codes, tmp_path, tokenizer="runs/nowhere/tokenizer"), progress=False)

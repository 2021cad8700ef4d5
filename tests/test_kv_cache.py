"""The key/value cache for the steps of an edit (rm_edit.kv_cache) in the transformer and the pipeline.

A one-layer transformer's keys/values depend only on each position's own token, so there the cache is exact
for every position it recomputes: cached and uncached runs must agree bit for bit (up to float rounding).
With more layers it is an approximation; recomputing every position must still reproduce a full forward.
"""

from __future__ import annotations

import pytest
import torch

from rm_edit.kv_cache import KVCache, indices_to_recompute
from rm_edit.transformer import LLaDATransformer
from tests.conftest import make_tiny_pipeline

PROMPT = "make the red circle blue"


def _model(n_layers: int, seed: int = 0) -> LLaDATransformer:
    torch.manual_seed(seed)
    return LLaDATransformer(vocab_size=64, d_model=32, n_layers=n_layers, n_heads=4, n_kv_heads=2,
                            mlp_hidden_size=64).eval()


def _batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 64, (2, 20), generator=g)
    mask = torch.ones(2, 20, dtype=torch.long)
    mask[1, :3] = 0  # left padding in the second row
    return ids, mask


def _filled(n_layers: int):
    """A model, a padded batch, and a cache filled by a full forward (with that forward's logits)."""
    model = _model(n_layers)
    ids, mask = _batch()
    cache = KVCache()
    return model, ids, mask, cache, model(ids, mask, kv_cache=cache).logits


@torch.no_grad()
def test_recomputing_every_position_reproduces_the_full_forward():
    model, ids, mask, cache, full = _filled(3)
    assert len(cache.keys) == 3 and cache.keys[0].shape == (2, 2, 20, 8)  # GQA: 2 kv heads
    again = model(ids, mask, kv_cache=cache, compute_positions=torch.arange(20).expand(2, 20)).logits
    torch.testing.assert_close(again, full, rtol=0, atol=1e-6)
    assert cache.full_passes == 1 and cache.cached_passes == 1 and cache.computed_positions == 40


@torch.no_grad()
def test_one_layer_cache_is_exact_for_the_changed_positions():
    model, ids, mask, cache, _ = _filled(1)
    changed = ids.clone()
    changed[:, 10:13] = 5
    idx = torch.tensor([[10, 11, 12], [12, 10, 11]])
    part = model(changed, mask, kv_cache=cache, compute_positions=idx).logits
    ref = model(changed, mask).logits
    torch.testing.assert_close(part, torch.gather(ref, 1, idx[..., None].expand(-1, -1, ref.shape[-1])), rtol=0, atol=1e-5)
    assert torch.equal(cache.input_ids, changed)


@torch.no_grad()
def test_deeper_cache_is_an_approximation_that_moves_with_the_change():
    """Stale keys/values of unchanged positions make deeper models differ, but by far less than the change."""
    model, ids, mask, cache, before = _filled(3)
    changed = ids.clone()
    changed[:, 10] = (ids[:, 10] + 7) % 64
    idx = torch.tensor([[10], [10]])
    cached = model(changed, mask, kv_cache=cache, compute_positions=idx).logits[:, 0]
    exact = model(changed, mask).logits[:, 10]
    assert (cached - exact).abs().max() < (exact - before[:, 10]).abs().max()


def test_cached_forward_needs_a_filled_matching_cache():
    model = _model(1)
    ids, mask = _batch()
    with pytest.raises(ValueError, match="filled kv_cache"):
        model(ids, mask, kv_cache=KVCache(), compute_positions=torch.zeros(2, 1, dtype=torch.long))
    cache = KVCache()
    with torch.no_grad():
        model(ids, mask, kv_cache=cache)
        with pytest.raises(ValueError, match="do not match the cached batch"):
            model(ids[:, :10], mask[:, :10], kv_cache=cache, compute_positions=torch.zeros(2, 1, dtype=torch.long))


def test_select_rows_keeps_the_chosen_rows():
    model = _model(2)
    ids, mask = _batch()
    cache = KVCache()
    with torch.no_grad():
        model(ids, mask, kv_cache=cache)
    second = [k[1].clone() for k in cache.keys]
    cache.select_rows(torch.tensor([1]))
    assert all(torch.equal(k[0], s) for k, s in zip(cache.keys, second))
    assert cache.input_ids.shape == (1, 20) and cache.nbytes() > 0


def test_indices_to_recompute_pads_rows_with_their_first_needed_index():
    need = torch.tensor([[False, True, False, True], [True, True, True, False], [False, False, False, False]])
    assert indices_to_recompute(need).tolist() == [[1, 3, 1], [0, 1, 2], [0, 0, 0]]


def test_a_cached_step_recomputes_the_positions_still_masked_and_the_changed_ones():
    """A reveal step reads the logits of every masked position, so a cached step recomputes all of them, not
    only the codes that changed since the cache was filled."""
    m = 9  # [MASK]
    cache = KVCache()
    cache.filled_from([0, 1], torch.tensor([[1, m, m, 2, m], [3, 3, m, m, 3]]))
    now = torch.tensor([[1, 4, m, 2, m],  # 1 revealed (changed); 2 and 4 still [MASK]
                        [3, 5, 6, m, 3]])  # 1 changed, 2 revealed, 3 still [MASK]
    assert cache.stale_positions(now, m).tolist() == [[1, 2, 4], [1, 2, 3]]
    # Now recorded as fresh: the same state again recomputes only what is still [MASK].
    assert cache.stale_positions(now, m).tolist() == [[2, 4], [3, 3]]  # a row padded with its first index


@pytest.fixture(scope="module")
def pipe():
    pipe = make_tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe, images, **kwargs):
    gens = [torch.Generator().manual_seed(i) for i in range(len(images))]
    return pipe(images, PROMPT, generator=gens, output_type="latent", return_trajectory=True, **kwargs)


@pytest.mark.parametrize("strategy", ["reflective", "regenerate"])
def test_pipeline_cache_matches_uncached_edits_on_a_one_layer_model(pipe, pil_images, strategy):
    """Both guidance branches and a batch of edits go through the cache; a one-layer model makes it exact."""
    own = dict(num_turns=2, reveal_steps=3) if strategy == "reflective" else dict(num_inference_steps=8)
    options = dict(strategy=strategy, temperature=0.0, **own)
    plain = _run(pipe, pil_images[:3], **options)
    refresh = {} if strategy == "reflective" else dict(kv_cache_refresh_every=4)  # the reflect steps refresh it
    cached = _run(pipe, pil_images[:3], use_kv_cache=True, **refresh, **options)
    assert cached.num_forward_passes == plain.num_forward_passes
    assert torch.equal(cached.images, plain.images)
    assert torch.equal(cached.edit_region_tokens, plain.edit_region_tokens)
    stats = pipe._kv_cache
    assert stats.cached_passes > 0 and stats.full_passes > 0
    # Reflective: every reflect step is full (and a step after an edit left the batch); regenerate: every 4th.
    if strategy == "reflective":
        assert 2 <= stats.full_passes < plain.num_forward_passes
    else:
        assert stats.full_passes == 2
    rows = 3 * 3  # three edits x (conditional + two guidance branches)
    assert stats.computed_positions < stats.cached_passes * rows * 64


def test_pipeline_cache_with_history_runs_and_stays_close(pipe, pil_images):
    plain = _run(pipe, pil_images[:2], use_history=True, num_turns=2, reveal_steps=2)
    cached = _run(pipe, pil_images[:2], use_history=True, num_turns=2, reveal_steps=2, use_kv_cache=True)
    assert cached.num_forward_passes == plain.num_forward_passes
    # One layer, but History Reference moves the input of unchanged positions between passes: close, not equal.
    assert (cached.images == plain.images).float().mean() > 0.9


# ---- the packed layout (rm_edit.packing): the cache holds one row of every branch, no padding ------------------
def _packed(seed: int = 2):
    """Three right-padded sequences of lengths 20, 14, 20 with 4 target positions each, packed."""
    from rm_edit.layout import SequenceBatch
    from rm_edit.packing import pack_sequences

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 64, (3, 20), generator=g)
    mask = torch.ones(3, 20, dtype=torch.long)
    mask[1, 14:] = 0
    ids[1, 14:] = 0
    targets = torch.tensor([[12, 13, 14, 15], [8, 9, 10, 11], [12, 13, 14, 15]])
    batch = SequenceBatch(ids, mask, targets)
    return batch, pack_sequences(batch)


@torch.no_grad()
def test_packed_cache_holds_no_padding_and_recomputing_everything_reproduces_the_full_pass():
    model = _model(3)
    _, packed = _packed()
    assert packed.order == (1, 0, 2) and packed.groups == ((0, 1, 14), (14, 2, 20))
    cache = KVCache()
    full = model(packed.input_ids, packing=packed, kv_cache=cache).logits
    assert cache.keys[0].shape == (1, 2, 54, 8) and cache.groups == packed.groups  # 14 + 20 + 20 tokens
    with pytest.raises(ValueError, match="P positions of each"):  # 53 positions are not P of each of 3 sequences
        model(packed.input_ids, packing=packed, kv_cache=cache, compute_positions=torch.arange(53)[None])
    # P = 14 positions of each sequence: all of the short one, the first 14 of the others.
    first14 = torch.cat([torch.arange(0, 14), torch.arange(14, 28), torch.arange(34, 48)])[None]
    again = model(packed.input_ids, packing=packed, kv_cache=cache, compute_positions=first14).logits
    torch.testing.assert_close(again, full[:, first14[0]], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="packing does not match"):
        model(packed.input_ids, kv_cache=cache, compute_positions=first14)


@torch.no_grad()
def test_packed_cached_pass_equals_the_padded_cached_pass():
    """The same approximation in both layouts: stale keys of three layers, new tokens at the target positions."""
    from rm_edit.pipelines.guidance_branches import forward_packed, forward_packed_cached
    from rm_edit.packing import PackedSequences

    model = _model(3)
    batch, packed = _packed()
    padded_cache, packed_cache = KVCache(), KVCache()
    model(batch.input_ids, batch.attention_mask, kv_cache=padded_cache)
    forward_packed(model, packed, kv_cache=packed_cache)
    new = (torch.arange(12) % 64 + 30).view(3, 4)  # every sequence's 4 target tokens change
    changed = batch.input_ids.scatter(1, batch.target_positions, new)
    index = torch.tensor([[0, 2], [1, 3], [3, 0]])  # two target indices per sequence, each its own
    positions = torch.gather(batch.target_positions, 1, index)
    want = model(changed, batch.attention_mask, kv_cache=padded_cache, compute_positions=positions).logits
    packed_ids = packed.input_ids.scatter(1, packed.target_positions.reshape(1, -1), new.reshape(1, -1))
    moved = PackedSequences(packed_ids, packed.positions, packed.target_positions, packed.groups, packed.order)
    got = forward_packed_cached(model, moved, index, packed_cache)
    assert got.shape == (3, 2, 64)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    exact = model(changed, batch.attention_mask).logits.gather(1, positions[..., None].expand(-1, -1, 64))
    assert (got - exact).abs().max() > 1e-4  # deeper than one layer: an approximation, the same in both layouts


@pytest.fixture(scope="module")
def one_layer_lumina_pipe(tmp_path_factory):
    """The tiny Lumina-DiMOO-layout pipeline (real ids, 8,193 classes) with a one-layer fp32 transformer."""
    from rm_edit.pipelines.lumina_dimoo import load_lumina_dimoo
    from tests.lumina_fixture import make_tiny_lumina_checkpoint, make_tiny_lumina_transformer

    folder = make_tiny_lumina_checkpoint(tmp_path_factory.mktemp("dimoo") / "Lumina-DiMOO")
    pipe = load_lumina_dimoo(folder, torch_dtype=torch.float32, max_crop_cells=4)
    pipe.register_modules(transformer=make_tiny_lumina_transformer(0, n_layers=1))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.usefixtures("one_thread")
def test_packed_cache_regenerate_equals_uncached_codes_on_the_lumina_layout(one_layer_lumina_pipe):
    """Two edits with instructions of different lengths (6 branch sequences of 5 lengths in one packed row),
    Lumina's sampler at temperature 1: cached and uncached runs draw the same codes."""
    import PIL.Image
    import numpy as np

    pipe = one_layer_lumina_pipe
    rng = np.random.default_rng(0)
    images = [PIL.Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(2)]
    prompts = ["make the sky red", "make it blue"]

    def run(**kwargs):
        gens = [torch.Generator().manual_seed(i) for i in range(2)]
        return pipe(images, prompts, strategy="regenerate", num_inference_steps=8, generator=gens,
                    output_type="latent", **kwargs)

    plain = run()
    cached = run(use_kv_cache=True, kv_cache_refresh_every=4)
    stats = pipe._kv_cache
    assert stats.full_passes == 2 and stats.cached_passes == 6
    assert stats.input_ids.shape[0] == 1 and sum(count for _, count, _ in stats.groups) == 6  # one row, 6 sequences
    assert stats.keys[0].shape[2] == stats.input_ids.shape[1] == sum(c * n for _, c, n in stats.groups)  # no padding
    assert torch.equal(cached.images, plain.images)
    assert not torch.equal(plain.images[0], plain.images[1])

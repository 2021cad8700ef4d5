"""A whole sampling call through each scheduler (begin -> step per timestep -> finish) on hand-built logits,
with every expected state worked out in the comments: the region, rows at their fixed point, the chosen
positions, History Reference, a call stopped mid-turn, the budget and the cache-refresh schedule."""

import pytest
import torch

from rm_edit.history import HistoryRecorder
from rm_edit.layout import TokenLayout
from rm_edit.schedulers import LuminaRegenerateScheduler, ReflectiveMaskingScheduler

K = 8
M = K  # [MASK] in code space


def _logits(best, strength=5.0, mask=None):
    """(1, N, K + 1) logits: ``best[i]`` at ``strength[i]`` (others -5); [MASK] at ``mask[i]`` (default -5)."""
    n = len(best)
    strength = strength if isinstance(strength, (list, tuple)) else [strength] * n
    mask = mask if mask is not None else [-5.0] * n
    out = torch.full((1, n, K + 1), -5.0)
    for i, (c, s, m) in enumerate(zip(best, strength, mask)):
        out[0, i, c] = s
        out[0, i, K] = m
    return out


SOURCE = torch.tensor([[1, 1, 1, 1, 1, 1]])
REGION = torch.tensor([[True, True, True, True, True, False]])
# reflect: [MASK] (8.0) beats the held code 1 (5.0) at 2, 3 and 5; 5 is outside the region
REFLECT = _logits([1] * 6, mask=[-5.0, -5.0, 8.0, 8.0, -5.0, 8.0])
# reveal: position 2 -> code 4 (logit 5), position 3 -> code 6 (logit 3): 2 is the more confident
REVEAL = _logits([1, 1, 4, 6, 1, 1], strength=[5.0, 5.0, 5.0, 3.0, 5.0, 5.0])
KEEP = _logits([1, 1, 4, 6, 1, 1])  # a reflect step that keeps every held code


def test_reflective_call_by_hand():
    sched = ReflectiveMaskingScheduler(codebook_size=K, num_turns=3, reveal_steps=2)
    sched.set_timesteps()
    sample = sched.begin(SOURCE, REGION)
    assert sample.tolist() == SOURCE.tolist() and sample is not SOURCE
    # t=0 reflect: re-mask 2 and 3 (5 is outside the region)
    out = sched.step(REFLECT, 0, sample)
    assert out.prev_sample.tolist() == [[1, 1, M, M, 1, 1]] and not out.converged.item()
    # t=1 reveal 1 of 2: 2 masked -> floor(2 cos(pi/4)) = floor(1.41) = 1 left -> reveal the more confident, 2
    out = sched.step(REVEAL, 1, out.prev_sample)
    assert out.prev_sample.tolist() == [[1, 1, 4, M, 1, 1]]
    # t=2 reveal the last one (the last reveal step leaves 0)
    out = sched.step(REVEAL, 2, out.prev_sample)
    assert out.prev_sample.tolist() == [[1, 1, 4, 6, 1, 1]] and not sched.finished
    # t=3 reflect: nothing re-masked, nothing masked -> fixed point; the row leaves the forward pass
    out = sched.step(KEEP, 3, out.prev_sample)
    assert out.converged.item() and sched.finished and sched.active_rows.tolist() == []
    final, region = sched.finish(out.prev_sample)
    assert final.tolist() == [[1, 1, 4, 6, 1, 1]]
    assert region.tolist() == [[False, False, True, True, False, False]]  # re-masked and changed: 2 and 3


def test_rows_at_their_fixed_point_are_frozen():
    sched = ReflectiveMaskingScheduler(codebook_size=K, num_turns=2, reveal_steps=1)
    sample = sched.begin(SOURCE.repeat(2, 1))
    # row 0 keeps everything (fixed point at once), row 1 re-masks 2 and 3 (no region this time: 5 too)
    out = sched.step(torch.cat([KEEP, REFLECT]), 0, sample)
    assert out.converged.tolist() == [True, False] and sched.active_rows.tolist() == [1]
    # t=1: the reveal step reveals all three of row 1; t=2 reflect: row 0 now "prefers" [MASK] everywhere, but
    # it is done: frozen, nothing re-masked
    out = sched.step(torch.cat([KEEP, REVEAL]), 1, out.prev_sample)
    everywhere = _logits([1] * 6, mask=[9.0] * 6)
    out = sched.step(torch.cat([everywhere, KEEP]), 2, out.prev_sample)
    assert out.remasked[0].tolist() == [False] * 6 and out.prev_sample[0].tolist() == [1] * 6
    _, region = sched.finish(out.prev_sample)
    # row 1 re-masked 2, 3 and 5, but 5 came back as its source code 1: no edit there
    assert region.tolist() == [[False] * 6, [False, False, True, True, False, False]]
    assert sched.chosen is None  # finish ended the call


def test_a_call_stopped_mid_turn_never_returns_mask():
    sched = ReflectiveMaskingScheduler(codebook_size=K, num_turns=1, reveal_steps=2)
    out = sched.step(REFLECT, 0, sched.begin(SOURCE, REGION))
    # stopped after the reflect step: [MASK] at 2, 3 filled with the last pass's best codes (code 1, the
    # source's): re-masked, but nothing changed, so the edit region is empty
    final, region = sched.finish(out.prev_sample)
    assert final.tolist() == [[1] * 6] and not region.any()
    # no pass at all: the source's codes
    sched.begin(SOURCE)
    final, region = sched.finish(torch.full_like(SOURCE, M))
    assert final.tolist() == SOURCE.tolist() and not region.any()


def test_history_reference_records_each_sample_the_scheduler_steps_from():
    layout = TokenLayout(name="k8", text_vocab_size=10, mask_token_id=1, end_of_row_id=2, image_begin_id=3,
                         image_end_id=4, uncondition_id=5, answer_begin_id=6, answer_end_id=7, pad_token_id=0,
                         image_code_offset=10, codebook_size=K, system_prompt="")
    emb = torch.nn.Embedding(18, 2)
    with torch.no_grad():
        emb.weight.zero_()
        emb.weight[11] = torch.tensor([2.0, 0.0])  # code 1
        emb.weight[14] = torch.tensor([0.0, 4.0])  # code 4
    sched = ReflectiveMaskingScheduler(codebook_size=K, num_turns=1, reveal_steps=2)
    sample = sched.begin(SOURCE, REGION, history=HistoryRecorder(emb, layout, 1, 6, alpha=0.5))
    assert sched.history_embeddings(torch.tensor([0])).abs().sum() == 0  # nothing recorded yet
    out = sched.step(REFLECT, 0, sample)  # records the source: code 1 everywhere
    out = sched.step(REVEAL, 1, out.prev_sample)  # records [1 1 M M 1 1]
    sched.step(REVEAL, 2, out.prev_sample)  # records [1 1 4 M 1 1]
    # position 2: codes 1, 4 -> mean (1, 2), times alpha 0.5 -> (0.5, 1); position 3: code 1 once -> (1, 0);
    # the others: code 1 three times -> (1, 0)
    expected = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.5, 1.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]])
    torch.testing.assert_close(sched.history_embeddings(torch.tensor([0])), expected)
    sched.finish(SOURCE)
    assert ReflectiveMaskingScheduler(codebook_size=K).history_embeddings(torch.tensor([0])) is None


def test_regenerate_call_with_a_region_by_hand():
    sched = LuminaRegenerateScheduler(codebook_size=K, num_inference_steps=2, temperature=0.0)
    source, region = torch.tensor([[1, 2, 3, 4]]), torch.tensor([[False, True, True, False]])
    sample = sched.begin(source, region)
    assert sample.tolist() == [[1, M, M, 4]]  # [MASK] only inside the region
    # [MASK] at 100 is ignored (the codes are normalised alone); 0 and 3 prefer code 7 but stay the source's
    logits = _logits([7, 5, 6, 7], strength=[9.0, 5.0, 2.0, 9.0], mask=[100.0] * 4)
    # t=0: 2 masked -> floor(2 cos(pi/4)) = 1 left: reveal the more confident, position 1 -> code 5
    out = sched.step(logits, 0, sample)
    assert out.prev_sample.tolist() == [[1, 5, M, 4]] and not out.converged.item()
    out = sched.step(logits, 1, out.prev_sample)
    assert out.prev_sample.tolist() == [[1, 5, 6, 4]] and out.converged.item()
    final, edit_region = sched.finish(out.prev_sample)
    assert final.tolist() == [[1, 5, 6, 4]] and edit_region.tolist() == region.tolist()
    # without a region every position starts masked; the edit region is what changed (position 0 kept its 1)
    sched = LuminaRegenerateScheduler(codebook_size=K, num_inference_steps=1, temperature=0.0)
    sample = sched.begin(source)
    assert sample.tolist() == [[M] * 4]
    final, edit_region = sched.finish(sched.step(_logits([1, 5, 6, 7]), 0, sample).prev_sample)
    assert final.tolist() == [[1, 5, 6, 7]] and edit_region.tolist() == [[False, True, True, True]]


@pytest.mark.parametrize("clamp, reveals", [(0, [1, 0, 1, 0]), (1, [1, 0, 0, 1])])
def test_regenerate_lumina_clamp(clamp, reveals):
    # 2 masked over 4 steps: masked after each step floor(2 cos(pi/2 (s+1)/4)) = 1, 1, 0, 0 -> reveals 1, 0, 1, 0;
    # with the clamp at 1 the third step keeps 1 masked: 1, 1, 1, 0 -> reveals 1, 0, 0, 1
    sched = LuminaRegenerateScheduler(codebook_size=K, num_inference_steps=4, temperature=0.0,
                                      min_masked_until_last=clamp)
    sample, got = sched.begin(torch.tensor([[1, 2]])), []
    for t in sched.timesteps:
        out = sched.step(_logits([3, 4]), t, sample)
        got.append(int(out.revealed.sum()))
        sample = out.prev_sample
    assert got == reveals


def test_budget_and_cache_refresh_schedule():
    sched = ReflectiveMaskingScheduler(codebook_size=K, num_turns=3, reveal_steps=2)
    assert sched.num_inference_steps == 9  # 3 turns x (1 reflect + 2 reveal)
    sched.set_timesteps(num_turns=5)
    assert sched.num_turns == 5 and sched.timesteps.tolist() == list(range(15))
    # the reflect steps (t % 3 == 0) decide at every position: they rebuild the cache
    assert [sched.needs_full_forward(t) for t in range(7)] == [True, False, False, True, False, False, True]
    regen = LuminaRegenerateScheduler(codebook_size=K, num_inference_steps=12)
    regen.set_timesteps(7)
    assert regen.num_inference_steps == 7 and regen.timesteps.tolist() == list(range(7))
    regen.set_timesteps()
    assert regen.num_inference_steps == 12
    assert [regen.needs_full_forward(t) for t in range(9)] == [True, False, False, False, True, False, False, False, True]
    regen3 = LuminaRegenerateScheduler(codebook_size=K, kv_cache_refresh_every=3)
    assert [regen3.needs_full_forward(t) for t in range(4)] == [True, False, False, True]


# Each sampler takes only its own options; one of the other's is refused with one line naming it.
REFLECTIVE_ONLY = {"num_turns": 2, "reveal_steps": 2, "remask_margin": 0.5, "held_code_bias": 1.0,
                   "max_remask_fraction": 0.5}
REGENERATE_ONLY = {"kv_cache_refresh_every": 2}


@pytest.mark.parametrize("option", sorted(REFLECTIVE_ONLY))
def test_the_regenerate_sampler_refuses_each_reflective_option(option):
    with pytest.raises(ValueError, match=f"^{option} is not an option of the regenerate sampler "
                                         r"\(it takes num_inference_steps, temperature, kv_cache_refresh_every\)$"):
        LuminaRegenerateScheduler(codebook_size=K).for_call(**{option: REFLECTIVE_ONLY[option]})


@pytest.mark.parametrize("option", sorted(REGENERATE_ONLY))
def test_the_reflective_sampler_refuses_each_regenerate_option(option):
    with pytest.raises(ValueError, match=f"^{option} is not an option of the reflective sampler"):
        ReflectiveMaskingScheduler(codebook_size=K).for_call(**{option: REGENERATE_ONLY[option]})


def test_for_call_sets_only_the_call_and_leaves_the_scheduler_as_it_was():
    sched = ReflectiveMaskingScheduler(codebook_size=K, num_turns=3, reveal_steps=2)
    call = sched.for_call(reveal_steps=1, num_turns=None, held_code_bias=2.0)
    # a copy with the call's settings: 3 turns x (1 reflect + 1 reveal) = 6 steps
    assert call is not sched and call.config.reveal_steps == 1 and call.config.held_code_bias == 2.0
    assert call.num_inference_steps == 6 and sched.config.reveal_steps == 2 and sched.num_inference_steps == 9
    # a step budget of 7 at 3 steps per turn: 7 // 3 = 2 whole turns
    assert sched.for_call(num_inference_steps=7).num_turns == 2
    regen = LuminaRegenerateScheduler(codebook_size=K, num_inference_steps=12)
    assert regen.for_call(num_inference_steps=5, temperature=None).num_inference_steps == 5
    assert regen.for_call(kv_cache_refresh_every=2).needs_full_forward(2)


def test_scheduler_errors_name_the_culprit():
    with pytest.raises(ValueError, match="num_turns and reveal_steps must be >= 1, got 0, 2"):
        ReflectiveMaskingScheduler(codebook_size=K, num_turns=0)
    with pytest.raises(ValueError, match="num_turns and reveal_steps must be >= 1, got 3, 0"):
        ReflectiveMaskingScheduler(codebook_size=K, reveal_steps=0)
    with pytest.raises(ValueError, match=r"expected logits over 8 codes \+ \[MASK\], got last dim 5"):
        ReflectiveMaskingScheduler(codebook_size=K).step(torch.zeros(1, 6, 5), 0, SOURCE)


# ---- each control reaches the rule (what the mutation run showed was not pinned) --------------------------------
def test_caller_frozen_positions_during_a_call():
    sched = ReflectiveMaskingScheduler(codebook_size=K, num_turns=1, reveal_steps=1)
    sample = sched.begin(SOURCE, REGION)
    frozen = torch.tensor([[False, False, True, False, False, False]])
    out = sched.step(REFLECT, 0, sample, frozen=frozen)  # 2 is frozen, 5 outside the region: only 3
    assert out.remasked[0].nonzero().flatten().tolist() == [3]
    # a frozen [MASK] is not revealed either: freeze 3 now
    out = sched.step(REVEAL, 1, out.prev_sample, frozen=torch.tensor([[False, False, False, True, False, False]]))
    assert out.prev_sample.tolist() == [[1, 1, 1, M, 1, 1]] and not out.revealed.any()


def test_reflective_config_margin_cap_temperature_and_return_dict():
    # margin 4: [MASK] 8 vs code 1 at 5 is 3 nats (after the softmax, the same 3 nats): not enough
    sched = ReflectiveMaskingScheduler(codebook_size=K, num_turns=1, reveal_steps=1, remask_margin=4.0)
    assert not sched.step(REFLECT, 0, SOURCE).remasked.any()
    # cap 0.2 of 6 positions = int(1.2) = 1 (ties between 2, 3, 5 go to the first): only 2
    sched = ReflectiveMaskingScheduler(codebook_size=K, num_turns=1, reveal_steps=1, max_remask_fraction=0.2)
    assert sched.step(REFLECT, 0, SOURCE).remasked[0].nonzero().flatten().tolist() == [2]
    # a reflect step never reveals, a reveal step never re-masks
    with_mask = torch.tensor([[1, 1, M, 1, 1, 1]])
    sched = ReflectiveMaskingScheduler(codebook_size=K, num_turns=1, reveal_steps=1)
    assert sched.step(KEEP, 0, with_mask).prev_sample.tolist() == with_mask.tolist()
    out = sched.step(REFLECT, 1, with_mask)
    assert not out.remasked.any() and out.prev_sample.tolist() == [[1] * 6]
    assert isinstance(sched.step(KEEP, 0, SOURCE, return_dict=False), tuple)
    # temperature 1 samples the reveals (flat logits: codes spread over all 8), temperature 0 takes the argmax (0)
    flat, masked = torch.zeros(1, 64, K + 1), torch.full((1, 64), M)
    masked[0, 0] = 1  # one held code so a reveal step has something to schedule from
    for temperature, n_codes in ((1.0, K), (0.0, 1)):
        sched = ReflectiveMaskingScheduler(codebook_size=K, num_turns=1, reveal_steps=1, temperature=temperature)
        codes = sched.step(flat, 1, masked, generator=torch.Generator().manual_seed(0)).prev_sample[0, 1:]
        assert len(codes.unique()) == n_codes, temperature


def test_each_row_reveals_on_its_own_schedule():
    sched = ReflectiveMaskingScheduler(codebook_size=K, num_turns=1, reveal_steps=2)
    two = _logits([1] * 6, mask=[8.0, 8.0, -5.0, -5.0, -5.0, -5.0])  # row 0 re-masks 2 positions
    four = _logits([1] * 6, mask=[8.0, 8.0, 8.0, 8.0, -5.0, -5.0])  # row 1 re-masks 4
    out = sched.step(torch.cat([two, four]), 0, SOURCE.repeat(2, 1))
    # 2 -> floor(2 * 0.70711) = 1 left: reveal 1; 4 -> floor(2.83) = 2 left: reveal 2
    out = sched.step(torch.cat([KEEP, KEEP]), 1, out.prev_sample)
    assert out.revealed.sum(-1).tolist() == [1, 2]


def test_a_turn_resumed_mid_way_schedules_from_what_is_masked_now():
    # no reflect step seen (a fresh scheduler): 2 masked -> reveal 1 at the first of 2 reveal steps
    for bias in (0.0, 1.0):
        sched = ReflectiveMaskingScheduler(codebook_size=K, num_turns=1, reveal_steps=2, held_code_bias=bias)
        out = sched.step(REVEAL, 1, torch.tensor([[1, 1, M, M, 1, 1]]))
        assert out.prev_sample.tolist() == [[1, 1, 4, M, 1, 1]], bias


def test_held_code_bias_reaches_the_last_code_and_names_a_shape_change():
    # held code 7 (the last code) at position 0; the reveal prefers 6 by 1 nat; a bias of 2 brings 7 back
    source = torch.tensor([[7, 1]])
    sched = ReflectiveMaskingScheduler(codebook_size=K, num_turns=1, reveal_steps=1, held_code_bias=2.0)
    out = sched.step(_logits([7, 1], mask=[9.0, -5.0]), 0, source)
    near = _logits([6, 1])
    near[0, 0, 7] = 4.0
    assert sched.step(near, 1, out.prev_sample).prev_sample.tolist() == [[7, 1]]
    with pytest.raises(ValueError, match=r"sample \(1, 3\) does not match this turn's \(1, 2\)"):
        sched.step(_logits([1, 1, 1]), 1, torch.tensor([[M, 1, 1]]))


def test_reflective_budget_in_steps():
    sched = ReflectiveMaskingScheduler(codebook_size=K, num_turns=3, reveal_steps=2)
    sched.set_timesteps(7)  # 7 steps at 3 per turn: 7 // 3 = 2 whole turns
    assert (sched.num_turns, sched.num_inference_steps) == (2, 6)
    sched.set_timesteps(1)  # less than a turn: still one
    assert (sched.num_turns, sched.num_inference_steps) == (1, 3)
    sched.set_timesteps(7, num_turns=4)  # num_turns wins
    assert sched.num_turns == 4
    with pytest.raises(ValueError, match="num_inference_steps must be >= 1, got 0"):
        sched.set_timesteps(0)


def test_finish_fills_mask_with_the_last_pass_best_codes():
    # the last pass prefers [MASK] at 2 and 3 and, among codes, code 7 there: the filled codes are 7, not the
    # source's 1
    logits = _logits([1, 1, 7, 7, 1, 1], strength=[5.0, 5.0, 6.0, 6.0, 5.0, 5.0], mask=[-5.0, -5.0, 8.0, 8.0, -5.0, -5.0])
    for sched in (ReflectiveMaskingScheduler(codebook_size=K), LuminaRegenerateScheduler(codebook_size=K)):
        sample = sched.begin(SOURCE, REGION)
        sched.step(logits, 0, sample)
        final, _ = sched.finish(torch.tensor([[1, 1, M, M, 1, 1]]))
        assert final.tolist() == [[1, 1, 7, 7, 1, 1]], type(sched).__name__


def test_regenerate_region_caller_frozen_rows_and_restarts():
    sched = LuminaRegenerateScheduler(codebook_size=K, num_inference_steps=2, temperature=0.0)
    source = torch.tensor([[1, 2, 3, 4], [1, 2, 3, 4]])
    region = torch.tensor([[False, True, True, False], [True, True, True, True]])
    sample = sched.begin(source, region)
    # position 2 of row 0 keeps the source's 3 after the call: still in the edit region (it was regenerated)
    logits = torch.cat([_logits([7, 5, 3, 7], strength=[9.0, 5.0, 2.0, 9.0])] * 2)
    frozen = torch.tensor([[False, False, False, False], [False, False, False, True]])  # row 1: 3 stays masked
    out = sched.step(logits, 0, sample, frozen=frozen)
    # row 0: 2 masked -> 1 left: reveal position 1; row 1: 4 masked -> floor(4 * 0.70711) = 2 left: reveal the
    # two most confident of 0, 1, 2 (3 is frozen): 0 (9.0) and 1 (5.0)
    assert out.prev_sample.tolist() == [[1, 5, M, 4], [7, 5, M, M]] and out.converged.tolist() == [False, False]
    out = sched.step(logits, 1, out.prev_sample, frozen=frozen)
    assert out.prev_sample.tolist() == [[1, 5, 3, 4], [7, 5, 3, M]] and out.converged.tolist() == [True, False]
    final, edit_region = sched.finish(out.prev_sample)
    assert edit_region.tolist() == region.tolist() and final[1, 3] != M
    # a new call at t=0 schedules from its own masked count (2, not the 4 of the call before): reveal 1
    sched.begin(torch.tensor([[1, 2, 3, 4]]), torch.tensor([[False, True, True, False]]))
    assert int(sched.step(logits[:1], 0, torch.tensor([[1, M, M, 4]])).revealed.sum()) == 1
    # resumed at t=1 with no t=0 seen: schedule from what is masked now (1 of 2 steps left: reveal all)
    fresh = LuminaRegenerateScheduler(codebook_size=K, num_inference_steps=2, temperature=0.0)
    assert int(fresh.step(logits[:1], 1, torch.tensor([[1, M, M, 4]])).revealed.sum()) == 2


def test_regenerate_confidence_is_normalised_over_the_codes_of_each_position():
    # position 0: code 0 at 5, the rest -5 -> p(code 0) ~ 1; position 1: code 1 at 6, the rest 5.5 -> p ~ 0.19.
    # Over the codes position 0 is the more confident (normalising over positions would pick position 1).
    logits = torch.full((1, 2, K + 1), -5.0)
    logits[0, 0, 0] = 5.0
    logits[0, 1, :K] = 5.5
    logits[0, 1, 1] = 6.0
    sched = LuminaRegenerateScheduler(codebook_size=K, num_inference_steps=2, temperature=0.0)
    out = sched.step(logits, 0, torch.full((1, 2), M))  # 2 masked -> 1 left: reveal one
    assert out.prev_sample.tolist() == [[0, M]]


def test_regenerate_sampling_follows_its_generator_and_temperature():
    flat = torch.zeros(1, 64, K + 1)
    runs = []
    for seed in (0, 0, 1):
        sched = LuminaRegenerateScheduler(codebook_size=K, num_inference_steps=1, temperature=1.0)
        runs.append(sched.step(flat, 0, torch.full((1, 64), M), generator=torch.Generator().manual_seed(seed)).prev_sample)
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2]) and len(runs[0].unique()) == K


def test_regenerate_records_history():
    layout = TokenLayout(name="k8", text_vocab_size=10, mask_token_id=1, end_of_row_id=2, image_begin_id=3,
                         image_end_id=4, uncondition_id=5, answer_begin_id=6, answer_end_id=7, pad_token_id=0,
                         image_code_offset=10, codebook_size=K, system_prompt="")
    emb = torch.nn.Embedding(18, 2)
    with torch.no_grad():
        emb.weight.zero_()
        emb.weight[12] = torch.tensor([3.0, 1.0])  # code 2
    sched = LuminaRegenerateScheduler(codebook_size=K, num_inference_steps=2, temperature=0.0)
    sample = sched.begin(torch.tensor([[2, 2]]), torch.tensor([[False, True]]), history=HistoryRecorder(emb, layout, 1, 2))
    sched.step(_logits([2, 2]), 0, sample)  # records [2, M]: position 0 holds code 2, position 1 nothing
    torch.testing.assert_close(sched.history_embeddings(torch.tensor([0])), torch.tensor([[[3.0, 1.0], [0.0, 0.0]]]))


def test_timesteps_on_the_requested_device_and_tuple_outputs():
    for sched in (ReflectiveMaskingScheduler(codebook_size=K), LuminaRegenerateScheduler(codebook_size=K)):
        sched.set_timesteps(6, device="meta")
        assert sched.timesteps.device.type == "meta", type(sched).__name__
    out = LuminaRegenerateScheduler(codebook_size=K, num_inference_steps=1).step(
        _logits([1, 2]), 0, torch.full((1, 2), M), return_dict=False)
    assert isinstance(out, tuple) and out[0].tolist() == [[1, 2]]

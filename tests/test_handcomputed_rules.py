"""The sampling rules against values worked out by hand (each literal's arithmetic is in its comment).

Masking schedule (``rm_edit.schedules``), the re-mask rule with all its controls at once
(``rm_edit.reflective``) and History Reference (``rm_edit.history``). Nothing here calls the code under
test to get an expected value.
"""

import math

import pytest
import torch

from rm_edit.history import (
    HistoryRecorder,
    HistoryState,
    code_embeddings,
    history_embedding,
    history_of_states,
    scatter_offsets,
    update_history,
)
from rm_edit.layout import TokenLayout
from rm_edit.reflective import choose_remask, choose_reveal, gumbel_noise, reflective_step, remask_scores
from rm_edit.schedules import cosine_mask_ratio, masked_after_step, reveal_count, sample_mask_ratio


# ---- masking schedule: still masked after step s of T = floor(n * cos(pi/2 * (s+1)/T)), 0 after the last ----
# 64 tokens / 16 steps. cos(pi/32) = 0.99518 -> 64 * 0.99518 = 63.69 -> 63 (round would give 64: nothing
# revealed on the first pass); cos(2pi/32) = 0.98079 -> 62.77 -> 62; cos(3pi/32) = 0.95694 -> 61.24 -> 61;
# 0.92388 -> 59.13 -> 59; 0.88192 -> 56.44 -> 56; 0.83147 -> 53.21 -> 53; 0.77301 -> 49.47 -> 49;
# 0.70711 -> 45.25 -> 45; 0.63439 -> 40.60 -> 40 (round: 41); 0.55557 -> 35.56 -> 35 (round: 36);
# 0.47140 -> 30.17 -> 30; 0.38268 -> 24.49 -> 24; 0.29028 -> 18.58 -> 18 (round: 19); 0.19509 -> 12.49 -> 12;
# 0.09802 -> 6.27 -> 6; last step -> 0.
MASKED_64_16 = [63, 62, 61, 59, 56, 53, 49, 45, 40, 35, 30, 24, 18, 12, 6, 0]
SCHEDULES = {
    (64, 16): MASKED_64_16,
    # cos(pi/8) = 0.92388 -> 9.24 -> 9; cos(pi/4) = 0.70711 -> 7.07 -> 7; cos(3pi/8) = 0.38268 -> 3.83 -> 3
    (10, 4): [9, 7, 3, 0],
    # cos(pi/6) = 0.86603 -> 6.06 -> 6; cos(pi/3) = 0.5 -> 3.5 -> 3 (round: 4)
    (7, 3): [6, 3, 0],
    # cos(pi/16) = 0.98079 -> 98.08 -> 98; 0.92388 -> 92; 0.83147 -> 83; 0.70711 -> 70.71 -> 70 (round: 71);
    # 0.55557 -> 55.56 -> 55; 0.38268 -> 38; 0.19509 -> 19.51 -> 19 (round: 20)
    (100, 8): [98, 92, 83, 70, 55, 38, 19, 0],
    # cos(pi/4) = 0.70711 -> 1.41 -> 1
    (2, 2): [1, 0],
    (5, 1): [0],  # one step reveals everything
}


@pytest.mark.parametrize("n, steps", sorted(SCHEDULES))
def test_masked_after_step_by_hand(n, steps):
    got = [int(masked_after_step(torch.tensor(n), s, steps)) for s in range(steps)]
    assert got == SCHEDULES[(n, steps)]


def test_reveal_counts_for_64_tokens_in_16_steps():
    # Successive differences of MASKED_64_16 from 64: 64-63, 63-62, 62-61, 61-59, 59-56, ... 6-0; they sum to 64.
    expected = [1, 1, 1, 2, 3, 3, 4, 4, 5, 5, 5, 6, 6, 6, 6, 6]
    n0, masked, got = torch.tensor([64]), torch.tensor([64]), []
    for s in range(16):
        k = reveal_count(n0, masked, s, 16)
        got.append(int(k))
        masked = masked - k
    assert got == expected and sum(expected) == 64 and int(masked) == 0


def test_schedule_is_per_row_and_never_asks_for_a_negative_reveal():
    n0 = torch.tensor([64, 10, 7])
    # step 2 of 16 / of 4 are different questions; here all rows share T = 4: 64*0.38268 = 24.49 -> 24,
    # 10 -> 3 (see above), 7 * 0.38268 = 2.68 -> 2.
    assert masked_after_step(n0, 2, 4).tolist() == [24, 3, 2]
    # Fewer masked than the schedule wants (60 < 63 after step 0 of 16): reveal 0, not -3; 64 masked: reveal 1.
    assert reveal_count(torch.tensor([64, 64]), torch.tensor([60, 64]), 0, 16).tolist() == [0, 1]


@pytest.mark.parametrize("step", [-1, 4, 5])
def test_schedule_rejects_a_step_outside_the_run(step):
    with pytest.raises(ValueError, match=f"step {step} outside \\[0, 4\\)"):
        masked_after_step(torch.tensor(8), step, 4)


def test_cosine_mask_ratio_by_hand():
    # cos(0) = 1, cos(pi/6) = sqrt(3)/2 = 0.8660254, cos(pi/4) = 0.7071068, cos(pi/2) = 0
    for r, expected in ((0.0, 1.0), (1 / 3, 0.8660254), (0.5, 0.7071068), (1.0, 0.0)):
        assert cosine_mask_ratio(r) == pytest.approx(expected, abs=1e-7)
        assert float(cosine_mask_ratio(torch.tensor(r))) == pytest.approx(expected, abs=1e-6)


def test_training_ratios_are_the_cosine_of_uniform_draws():
    # The same seed's uniforms u give ratios cos(pi/2 * u), one per sample.
    u = torch.rand(5, generator=torch.Generator().manual_seed(7))
    ratios = sample_mask_ratio(5, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(ratios, torch.cos(u * math.pi / 2))


# ---- the re-mask rule: margin, frozen, region and cap in one call ------------------------------------------
K = 4  # codes 0..3, [MASK] = 4


def _scored(held, mask_minus_code):
    """State ``held`` and log-probs whose log p(MASK) - log p(held code) is exactly ``mask_minus_code``."""
    n = len(held)
    lp = torch.full((1, n, K + 1), -8.0)
    for i, (code, d) in enumerate(zip(held, mask_minus_code)):
        if code != K:
            lp[0, i, code] = -2.0
            lp[0, i, K] = -2.0 + d  # exact in binary: d is a multiple of 1/4
    return lp, torch.tensor([held])


# position:      0     1     2     3     4     5     6     7
HELD = [0, 1, 2, 3, 0, 1, K, 2]
SCORES = [3.0, 2.5, 2.0, 1.5, 0.5, 1.0, 0.0, 0.75]  # position 6 holds [MASK]: never re-masked
FROZEN = torch.tensor([[True] + [False] * 7])  # position 0
REGION = torch.tensor([[True, False] + [True] * 6])  # everything but position 1


def test_remask_scores_by_hand():
    lp, state = _scored(HELD, SCORES)
    got = remask_scores(lp, state)[0].tolist()
    assert got[:6] == SCORES[:6] and got[7] == 0.75 and got[6] == float("-inf")


def test_remask_with_margin_frozen_region_and_cap_together():
    lp, state = _scored(HELD, SCORES)
    # margin 0.5: scores strictly above -> {0, 1, 2, 3, 5, 7} (4 sits exactly on the margin: kept)
    assert choose_remask(lp, state, margin=0.5)[0].nonzero().flatten().tolist() == [0, 1, 2, 3, 5, 7]
    # frozen drops 0, the region drops 1 -> {2, 3, 5, 7}
    free = choose_remask(lp, state, margin=0.5, frozen=FROZEN, region=REGION)
    assert free[0].nonzero().flatten().tolist() == [2, 3, 5, 7]
    # cap 0.35 of 8 positions = int(2.8) = 2, taken from what frozen and region allow: the two highest of
    # {2: 2.0, 3: 1.5, 5: 1.0, 7: 0.75} -> {2, 3}. (Capping first would pick {0, 1}, then drop both: nothing.)
    capped = choose_remask(lp, state, margin=0.5, max_fraction=0.35, frozen=FROZEN, region=REGION)
    assert capped[0].nonzero().flatten().tolist() == [2, 3]
    # cap 0.5 of 8 = 4 -> all of {2, 3, 5, 7}; cap 1.0 means no cap
    for fraction in (0.5, 1.0, None):
        got = choose_remask(lp, state, margin=0.5, max_fraction=fraction, frozen=FROZEN, region=REGION)
        assert got[0].nonzero().flatten().tolist() == [2, 3, 5, 7], fraction
    # cap 0.1 of 8 = int(0.8) = 0 -> nothing
    assert not choose_remask(lp, state, margin=0.5, max_fraction=0.1, frozen=FROZEN, region=REGION).any()


def test_remask_margin_is_strict_and_zero_by_default():
    lp, state = _scored([0, 1, 2], [0.0, 0.25, -0.25])
    # default margin 0: only 0.25 > 0 (a tie p(MASK) = p(code) keeps)
    assert choose_remask(lp, state).tolist() == [[False, True, False]]
    # margin 0.25: 0.25 is not > 0.25; margin -0.5: all three
    assert not choose_remask(lp, state, margin=0.25).any()
    assert choose_remask(lp, state, margin=-0.5).all()


def test_remask_cap_ties_go_to_the_earlier_position_and_rows_are_capped_apart():
    lp, state = _scored([0, 0, 0, 0], [1.0, 2.0, 2.0, 1.0])
    # cap 0.25 of 4 = 1: positions 1 and 2 tie at 2.0 -> the earlier, 1
    assert choose_remask(lp, state, max_fraction=0.25).tolist() == [[False, True, False, False]]
    lp2, state2 = _scored([0, 0, 0, 0], [0.25, 0.5, 0.75, 3.0])
    both = choose_remask(torch.cat([lp, lp2]), torch.cat([state, state2]), max_fraction=0.5)
    # cap 2 per row: row 0 {1, 2} (2.0, 2.0), row 1 {2, 3} (0.75, 3.0)
    assert both.tolist() == [[False, True, True, False], [False, False, True, True]]


def test_reflective_step_with_every_control():
    lp, state = _scored(HELD, SCORES)
    lp[0, 6, 3] = -0.5  # the [MASK] position's best code is 3
    d = reflective_step(lp, state, margin=0.5, max_remask_fraction=0.35, frozen=FROZEN, region=REGION)
    # re-mask {2, 3} (see above); reveal position 6 as code 3; keep the other held codes
    assert d.state.tolist() == [[0, 1, K, K, 0, 1, 3, 2]]
    assert d.remasked[0].nonzero().flatten().tolist() == [2, 3]
    assert d.revealed[0].nonzero().flatten().tolist() == [6]
    assert d.kept[0].nonzero().flatten().tolist() == [0, 1, 4, 5, 7]
    # remask=False / reveal=False switch each half off
    assert reflective_step(lp, state, remask=False).state.tolist() == [[0, 1, 2, 3, 0, 1, 3, 2]]
    off = reflective_step(lp, state, reveal=False, margin=0.5, frozen=FROZEN, region=REGION)
    assert off.state.tolist() == [[0, 1, K, K, 0, K, K, K]] and not off.revealed.any()
    # a frozen [MASK] position is not revealed
    frozen6 = torch.zeros(1, 8, dtype=torch.bool)
    frozen6[0, 6] = True
    assert reflective_step(lp, state, remask=False, frozen=frozen6).state[0, 6] == K


def test_reflective_step_names_a_shape_mismatch():
    with pytest.raises(ValueError, match=r"log_probs \(1, 3, 5\) do not match state \(1, 4\)"):
        reflective_step(torch.zeros(1, 3, K + 1), torch.zeros(1, 4, dtype=torch.long))


def test_reveal_most_confident_first_by_hand():
    # three [MASK] positions; best codes 2 (log p -0.1), 0 (-1.5), 1 (-0.7); one held code at position 3
    lp = torch.full((1, 4, K + 1), -9.0)
    lp[0, 0, 2], lp[0, 1, 0], lp[0, 2, 1], lp[0, 3, 3] = -0.1, -1.5, -0.7, -0.1
    lp[0, :, K] = 0.0  # [MASK] most likely everywhere: never a reveal's code
    state = torch.tensor([[K, K, K, 3]])
    reveal, codes = choose_reveal(lp, state, num_to_reveal=2)
    assert reveal.tolist() == [[True, False, True, False]] and codes[0, :3].tolist() == [2, 0, 1]
    only = choose_reveal(lp, state, num_to_reveal=2, candidates=torch.tensor([[False, True, True, True]]))[0]
    assert only.tolist() == [[False, True, True, False]]
    assert choose_reveal(lp, state)[0].tolist() == [[True, True, True, False]]


def test_gumbel_noise_is_minus_log_minus_log_uniform():
    u = torch.rand(2, 3, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(gumbel_noise((2, 3), torch.Generator().manual_seed(5)), -torch.log(-torch.log(u)))
    with pytest.raises(ValueError, match="got 1 generators for a batch of 2"):
        gumbel_noise((2, 3), [torch.Generator()])


# ---- History Reference ----------------------------------------------------------------------------------------
TINY = TokenLayout(
    name="tiny", text_vocab_size=10, mask_token_id=1, end_of_row_id=2, image_begin_id=3, image_end_id=4,
    uncondition_id=5, answer_begin_id=6, answer_end_id=7, pad_token_id=0, image_code_offset=10, codebook_size=3,
    system_prompt="",
)
MASK = TINY.mask_code  # 3


def _embedding():
    """Codes 0, 1, 2 -> (4, 0), (0, 5), (10, 10): the last code's embedding is what a clamped [MASK] looks up."""
    emb = torch.nn.Embedding(13, 2)
    with torch.no_grad():
        emb.weight.zero_()
        emb.weight[10] = torch.tensor([4.0, 0.0])
        emb.weight[11] = torch.tensor([0.0, 5.0])
        emb.weight[12] = torch.tensor([10.0, 10.0])
    return emb


def test_empty_history_has_the_call_shape_and_device():
    h = HistoryState.empty(2, 3, 4, device="meta")
    assert tuple(h.total.shape) == (2, 3, 4) and tuple(h.weight.shape) == (2, 3, 1)
    assert h.total.device.type == h.weight.device.type == "meta"


def test_code_embeddings_flag_mask_positions():
    e, holds = code_embeddings(_embedding(), TINY, torch.tensor([[0, MASK, 2]]))
    assert holds.tolist() == [[True, False, True]]
    assert e.tolist() == [[[4.0, 0.0], [10.0, 10.0], [10.0, 10.0]]]  # [MASK] looks up the clamped code 2


def test_history_skips_mask_states_whose_embedding_is_not_zero():
    emb, hist = _embedding(), HistoryState.empty(1, 3, 2)
    # position 0: code 0, [MASK], code 1; position 1: [MASK] throughout; position 2: code 2, [MASK], [MASK]
    for state in ([0, MASK, 2], [MASK, MASK, MASK], [1, MASK, MASK]):
        hist = update_history(hist, *code_embeddings(emb, TINY, torch.tensor([state])), decay=0.5)
    # position 0: total = 0.25 * (4, 0) + (0, 5) = (1, 5), weight = 0.25 + 1 = 1.25 -> mean (0.8, 4.0)
    # position 1: nothing recorded -> total 0, weight 0 -> zero offset (not the (10, 10) of the clamped code)
    # position 2: total = 0.25 * (10, 10) = (2.5, 2.5), weight 0.25 -> mean (10, 10)
    torch.testing.assert_close(hist.total[0], torch.tensor([[1.0, 5.0], [0.0, 0.0], [2.5, 2.5]]))
    torch.testing.assert_close(hist.weight[0, :, 0], torch.tensor([1.25, 0.0, 0.25]))
    # alpha 0.5 halves the means
    torch.testing.assert_close(history_embedding(hist, alpha=0.5)[0], torch.tensor([[0.4, 2.0], [0.0, 0.0], [5.0, 5.0]]))


def test_history_default_decay_is_a_plain_mean():
    emb, hist = _embedding(), HistoryState.empty(1, 1, 2)
    for code in (0, 1, MASK, 1):
        hist = update_history(hist, *code_embeddings(emb, TINY, torch.tensor([[code]])))
    # (4, 0) + (0, 5) + (0, 5) over 3 recorded states = (4/3, 10/3); alpha defaults to 1
    torch.testing.assert_close(history_embedding(hist)[0, 0], torch.tensor([4 / 3, 10 / 3]))


@pytest.mark.parametrize("decay", [0.0, -0.5, 1.01])
def test_history_rejects_a_decay_outside_0_1(decay):
    with pytest.raises(ValueError, match=f"decay must be in \\(0, 1\\], got {decay}"):
        update_history(HistoryState.empty(1, 1, 2), torch.zeros(1, 1, 2), torch.ones(1, 1, dtype=torch.bool), decay)
    with pytest.raises(ValueError, match=f"decay must be in \\(0, 1\\], got {decay}"):
        HistoryRecorder(_embedding(), TINY, 1, 1, decay=decay)


# The sequence of states of test_history_skips_mask_states_whose_embedding_is_not_zero, as (B, N, T), and
# its hand-worked means at decay 0.5: (0.8, 4.0), zero, (10, 10).
STATES = torch.tensor([[[0, MASK, 1], [MASK, MASK, MASK], [2, MASK, MASK]]])
MEANS = torch.tensor([[[0.8, 4.0], [0.0, 0.0], [10.0, 10.0]]])


def test_history_of_states_defaults_and_device():
    # decay 1 by default: position 0 holds codes 0 then 1 -> ((4, 0) + (0, 5)) / 2 = (2, 2.5)
    hist = history_of_states(_embedding(), TINY, torch.tensor([[[0, MASK, 1]]]))
    torch.testing.assert_close(history_embedding(hist), torch.tensor([[[2.0, 2.5]]]))
    meta = history_of_states(torch.nn.Embedding(13, 2, device="meta"), TINY, STATES.to("meta"))
    assert meta.total.device.type == "meta"


def test_history_of_states_is_the_recorded_history():
    hist = history_of_states(_embedding(), TINY, STATES, decay=0.5)
    torch.testing.assert_close(hist.weight[0, :, 0], torch.tensor([1.25, 0.0, 0.25]))
    torch.testing.assert_close(history_embedding(hist), MEANS)


def test_history_reference_records_each_sample_and_gives_the_rows_asked_for():
    ref = HistoryRecorder(_embedding(), TINY, batch=2, positions=3, alpha=0.5, decay=0.5)
    for t in range(3):  # row 1 holds code 1 at every position, every step: its mean is (0, 5)
        ref.record(torch.cat([STATES[..., t], torch.ones(1, 3, dtype=torch.long)]))
    torch.testing.assert_close(ref.embeddings(torch.tensor([0])), 0.5 * MEANS)
    torch.testing.assert_close(ref.embeddings(torch.tensor([1, 0])),
                               torch.cat([torch.tensor([[[0.0, 2.5]] * 3]), 0.5 * MEANS]))
    assert HistoryRecorder(_embedding(), TINY, 1, 3, alpha=0.0).embeddings(torch.tensor([0])) is None


def test_scatter_offsets_place_rows_at_their_sequence_positions():
    ref = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    out = scatter_offsets(ref, torch.tensor([[3, 1]]), seq_len=5)
    assert out.tolist() == [[[0.0, 0.0], [3.0, 4.0], [0.0, 0.0], [1.0, 2.0], [0.0, 0.0]]]


# ---- what the mutation run (README "Developing") showed was not pinned ------------------------------------------
def test_lumina_clamp_keeps_one_masked_until_the_last_step():
    # 2 tokens / 4 steps: 2 * 0.92388 = 1.85 -> 1; 2 * 0.70711 = 1.41 -> 1; 2 * 0.38268 = 0.77 -> 0; last -> 0.
    assert [int(masked_after_step(torch.tensor(2), s, 4)) for s in range(4)] == [1, 1, 0, 0]
    # min_masked=1 (Lumina-DiMOO): the 0 before the last step becomes 1; the last step still reveals all.
    assert [int(masked_after_step(torch.tensor(2), s, 4, min_masked=1)) for s in range(4)] == [1, 1, 1, 0]
    # reveal_count passes it on: 1 masked at step 2 -> reveal 1 - 0 = 1 by default, 1 - 1 = 0 with the clamp
    assert int(reveal_count(torch.tensor(2), torch.tensor(1), 2, 4)) == 1
    assert int(reveal_count(torch.tensor(2), torch.tensor(1), 2, 4, min_masked=1)) == 0


def test_rule_keeps_the_inputs_device():
    """Nothing is created on the CPU behind the caller's back (the 'meta' device stands for a GPU here)."""
    lp, state = _scored(HELD, SCORES)
    lp, state = lp.to("meta"), state.to("meta")
    d = reflective_step(lp, state, num_to_reveal=1, margin=0.5, max_remask_fraction=0.35, frozen=FROZEN.to("meta"),
                        region=REGION.to("meta"), temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert {t.device.type for t in (d.state, d.remasked, d.revealed, d.kept)} == {"meta"}
    assert gumbel_noise((2, 3), device="meta").device.type == "meta"
    assert gumbel_noise((2, 3), torch.Generator(), device="meta").device.type == "meta"
    assert sample_mask_ratio(3, device="meta").device.type == "meta"


def test_gumbel_noise_stays_finite_at_the_ends_of_the_uniform(monkeypatch):
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.tensor([0.0, 1.0]))
    g = gumbel_noise((2,))
    # u = 0 is clamped to 1e-20: -log(-log(1e-20)) = -log(46.0517) = -3.8298;
    # u = 1 to 1 - 1e-7, which float32 rounds to 1 - 2^-23 = 0.99999988: -log(1.1921e-7) = 15.9424
    torch.testing.assert_close(g, torch.tensor([-3.8298, 15.9424]), atol=1e-3, rtol=0)


def test_per_row_generators_give_each_row_its_own_stream():
    both = gumbel_noise((2, 3), [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)])
    rows = [torch.rand(3, generator=torch.Generator().manual_seed(s)) for s in (1, 2)]
    torch.testing.assert_close(both, -torch.log(-torch.log(torch.stack(rows))))


def test_temperature_sampling_is_the_gumbel_max_of_the_tempered_distribution():
    lp = torch.log_softmax(torch.randn(2, 5, K + 1, generator=torch.Generator().manual_seed(0)), -1)
    state = torch.full((2, 5), K)
    temperature = 0.5
    reveal, codes = choose_reveal(lp, state, num_to_reveal=2, temperature=temperature,
                                  generator=torch.Generator().manual_seed(9))
    # The same draws, in the documented order: Gumbel noise for the codes, then for the confidences.
    g = torch.Generator().manual_seed(9)
    g_codes = -torch.log(-torch.log(torch.rand(2, 5, K, generator=g)))
    g_conf = -torch.log(-torch.log(torch.rand(2, 5, generator=g)))
    expected_codes = (lp[..., :K] / temperature + g_codes).argmax(-1)
    confidence = lp[..., :K].gather(-1, expected_codes[..., None])[..., 0] + temperature * g_conf
    top2 = confidence.topk(2, dim=-1).indices
    expected_reveal = torch.zeros(2, 5, dtype=torch.bool).scatter(1, top2, True)
    assert torch.equal(codes, expected_codes) and torch.equal(reveal, expected_reveal)
    # reflective_step hands temperature and generator through unchanged
    d = reflective_step(lp, state, num_to_reveal=2, temperature=temperature, generator=torch.Generator().manual_seed(9))
    assert torch.equal(d.revealed, expected_reveal) and torch.equal(d.state[d.revealed], expected_codes[expected_reveal])


def test_reflective_step_default_margin_is_zero():
    lp, state = _scored([0, 1], [0.25, 0.0])  # 0.25 > 0 re-masks, a tie keeps
    assert reflective_step(lp, state).remasked.tolist() == [[True, False]]


def test_cap_ties_are_broken_by_position_even_in_long_rows():
    # 64 equal scores (long enough for an unstable sort to reorder ties): cap 0.25 -> the first 16 positions
    lp, state = _scored([0] * 64, [1.0] * 64)
    assert choose_remask(lp, state, max_fraction=0.25)[0].nonzero().flatten().tolist() == list(range(16))
    reveal, _ = choose_reveal(torch.zeros(1, 64, K + 1), torch.full((1, 64), K), num_to_reveal=16)
    assert reveal[0].nonzero().flatten().tolist() == list(range(16))

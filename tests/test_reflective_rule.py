"""Every branch and control of the Reflective Masking rule, on hand-built distributions."""

import math

import torch

from rm_edit.reflective import choose_remask, choose_reveal, gumbel_noise, reflective_step

K = 4
M = K  # [MASK] in code space


def dist(*rows):
    """rows of K+1 probabilities -> log-probs (1, N, K+1)."""
    return torch.tensor(rows, dtype=torch.float).log()[None]


def test_reveal_keep_remask_branches():
    lp = dist(
        [0.1, 0.6, 0.1, 0.1, 0.1],  # masked -> reveal argmax code 1
        [0.1, 0.1, 0.5, 0.1, 0.2],  # holds 2, p(M)=0.2 < p(2) -> keep
        [0.3, 0.1, 0.1, 0.1, 0.4],  # holds 1, p(M)=0.4 > p(1)=0.1 -> re-mask
        [0.05, 0.05, 0.05, 0.05, 0.8],  # masked, MASK most likely -> still revealed (argmax over codes only)
    )
    state = torch.tensor([[M, 2, 1, M]])
    d = reflective_step(lp, state)
    assert d.state.tolist() == [[1, 2, M, 0]]
    assert d.revealed.tolist() == [[True, False, False, True]]
    assert d.remasked.tolist() == [[False, False, True, False]]
    assert d.kept.tolist() == [[False, True, False, False]]


def test_equal_probability_keeps():
    lp = dist([0.1, 0.4, 0.05, 0.05, 0.4])
    assert reflective_step(lp, torch.tensor([[1]])).state.item() == 1


def test_remasked_position_is_not_revealed_in_same_step():
    lp = dist([0.1, 0.05, 0.05, 0.05, 0.75])
    d = reflective_step(lp, torch.tensor([[0]]))
    assert d.state.item() == M and not d.revealed.any()


def test_margin():
    lp = dist([0.1, 0.3, 0.1, 0.1, 0.4])  # log(0.4/0.3) = 0.29
    assert choose_remask(lp, torch.tensor([[1]]), margin=0.2).item()
    assert not choose_remask(lp, torch.tensor([[1]]), margin=0.3).item()


def test_max_fraction_keeps_most_confident_remasks():
    lp = dist(*[[0.7 - p, 0.1, 0.1, 0.1, p] for p in (0.4, 0.5, 0.6, 0.45)])  # all prefer MASK over code 0
    state = torch.zeros(1, 4, dtype=torch.long)
    assert choose_remask(lp, state).all()
    capped = choose_remask(lp, state, max_fraction=0.5)
    assert capped.tolist() == [[False, True, True, False]]


def test_frozen_and_region():
    lp = dist(*[[0.1, 0.1, 0.1, 0.1, 0.6]] * 3)
    state = torch.tensor([[0, 1, 2]])
    frozen = torch.tensor([[True, False, False]])
    region = torch.tensor([[True, True, False]])
    assert choose_remask(lp, state, frozen=frozen, region=region).tolist() == [[False, True, False]]
    # frozen masked positions are not revealed either
    d = reflective_step(lp, torch.tensor([[M, M, 0]]), frozen=torch.tensor([[True, False, False]]))
    assert d.state[0, 0] == M and d.state[0, 1] != M


def test_num_to_reveal_by_confidence_per_row():
    lp = dist([0.9, 0.02, 0.02, 0.02, 0.04], [0.2, 0.5, 0.1, 0.1, 0.1], [0.1, 0.1, 0.7, 0.05, 0.05])
    state = torch.full((1, 3), M)
    reveal, codes = choose_reveal(lp, state, num_to_reveal=2)
    assert reveal.tolist() == [[True, False, True]] and codes.tolist() == [[0, 1, 2]]
    two = torch.cat([lp, lp]), torch.full((2, 3), M)
    reveal, _ = choose_reveal(*two, num_to_reveal=torch.tensor([1, 3]))
    assert reveal.sum(-1).tolist() == [1, 3]


def test_temperature_sampling_is_reproducible_and_varies():
    lp = torch.full((1, 200, K + 1), math.log(1 / (K + 1)))
    state = torch.full((1, 200), M)
    a = choose_reveal(lp, state, temperature=1.0, generator=torch.Generator().manual_seed(3))[1]
    b = choose_reveal(lp, state, temperature=1.0, generator=torch.Generator().manual_seed(3))[1]
    c = choose_reveal(lp, state, temperature=1.0, generator=torch.Generator().manual_seed(4))[1]
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.unique().tolist()) == set(range(K))  # never samples [MASK]
    greedy = choose_reveal(lp, state)[1]
    assert (greedy == 0).all()


def test_per_row_generators_match_single_rows():
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    both = gumbel_noise((2, 7), gens)
    one = gumbel_noise((1, 7), [torch.Generator().manual_seed(2)])
    torch.testing.assert_close(both[1:], one)

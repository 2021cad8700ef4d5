"""On-policy Reflective Masking states (rm_edit.training.rollouts): a rollout keeps every pass's input with the
states its positions held before, the buffer samples them, and training with them resumes exactly."""

import json

import pytest
import torch
from safetensors.torch import load_file

from rm_edit.training.rollouts import RolloutBuffer, RolloutConfig, pad_history, reflective_rollout
from rm_edit.training.train_mdm import train
from tests.test_training_mdm import _cfg, _weights, codes  # noqa: F401  (the tiny world's fixture)

K = 4  # codes 0..3, [MASK] = 4


def test_pad_history_puts_nothing_recorded_before_the_oldest_state():
    h = torch.tensor([[[7, 8]]])
    assert pad_history(h, 4).tolist() == [[[-1, -1, 7, 8]]]
    with pytest.raises(ValueError, match="3 states does not fit 2"):
        pad_history(torch.zeros(1, 1, 3, dtype=torch.long), 2)


def _editor(index, state, history):
    """A model that re-masks code 1 (wrong: the target is 3), reveals [MASK] as 3 and keeps every other code."""
    logits = torch.full((*state.shape, K + 1), -10.0)
    held = state.clamp(max=K - 1)
    logits.scatter_(-1, held.unsqueeze(-1), 5.0)
    logits[..., K] = torch.where(state == 1, 10.0, -10.0)  # p(MASK) > p(1): re-mask
    logits[..., 3] = torch.where(state == K, 5.0, logits[..., 3])  # a masked position reveals 3
    return logits


def test_a_rollout_keeps_each_pass_input_with_what_its_positions_held_before():
    # Source [0, 1, 2], target [0, 3, 2]. Pass 1 (reflect) sees the source and re-masks position 1; pass 2
    # (reveal) sees [0, M, 2] and writes 3; pass 3 (reflect) sees [0, 3, 2], re-masks nothing: fixed point.
    cfg = RolloutConfig(every=1, num_turns=2, reveal_steps=1)
    index, state, history = reflective_rollout(_editor, torch.tensor([5]), torch.tensor([[0, 1, 2]]), K, cfg)
    assert index.tolist() == [5, 5, 5]
    assert state.tolist() == [[0, 1, 2], [0, K, 2], [0, 3, 2]]
    none = [-1, -1, -1, -1]
    # history (N, T) per state, oldest first, T = 2 turns x (1 + 1) passes
    assert history[0].tolist() == [none, none, none]
    assert history[1].tolist() == [[-1, -1, -1, 0], [-1, -1, -1, 1], [-1, -1, -1, 2]]
    assert history[2].tolist() == [[-1, -1, 0, 0], [-1, -1, 1, K], [-1, -1, 2, 2]]


def test_a_reflect_only_rollout_keeps_the_whole_states_the_model_judged():
    cfg = RolloutConfig(every=1, num_turns=2, reveal_steps=1, reflect_only=True)
    _, state, history = reflective_rollout(_editor, torch.tensor([5]), torch.tensor([[0, 1, 2]]), K, cfg)
    assert state.tolist() == [[0, 1, 2], [0, 3, 2]]  # the source, then the revealed edit (the reveal pass's input left out)
    assert history[1, 1].tolist() == [-1, -1, 1, K]  # still every pass the position went through


def test_the_buffer_overwrites_its_oldest_states_and_samples_what_it_holds():
    buf = RolloutBuffer(capacity=2, positions=1, history_len=1)
    assert len(buf) == 0
    buf.add(torch.tensor([1, 2, 3]), torch.tensor([[10], [20], [30]]), torch.tensor([[[1]], [[2]], [[3]]]))
    assert len(buf) == 2 and sorted(buf.index.tolist()) == [2, 3]  # 1 was overwritten by 3
    index, state, history = buf.sample(20, torch.Generator().manual_seed(0))
    assert set(index.tolist()) <= {2, 3} and (state[:, 0] == index * 10).all() and (history[:, 0, 0] == index).all()


def test_buffer_rows_come_first_with_oracle_labels_and_sampler_histories_are_padded():
    from rm_edit.training.train_mdm import with_on_policy_rows
    from rm_edit.training.trajectories import KEEP, MASK, REVEAL, CorruptedTargets

    sampler_rows = CorruptedTargets(torch.tensor([[1, 1, 1]]), torch.tensor([[1, 1, 1]]), torch.tensor([[KEEP] * 3]),
                                    torch.tensor([[[-1, 0], [-1, 1], [-1, 2]]]))
    on_policy = (torch.tensor([7]), torch.tensor([[0, K, 1]]), torch.full((1, 3, 3), 2))
    rows = with_on_policy_rows(sampler_rows, on_policy, torch.tensor([[0, 3, 2]]), K)
    # kept 0 is right (keep), [MASK] reveals the target's 3, the held 1 is wrong (target 2): re-mask it
    assert rows.state.tolist() == [[0, K, 1], [1, 1, 1]]
    assert rows.labels.tolist() == [[0, 3, K], [1, 1, 1]]
    assert rows.kind.tolist() == [[KEEP, REVEAL, MASK], [KEEP] * 3]
    assert rows.history[1].tolist() == [[-1, -1, 0], [-1, -1, 1], [-1, -1, 2]]


def test_training_with_rollouts_resumes_with_its_buffer_to_the_same_weights(codes, tmp_path):  # noqa: F811
    kw = dict(objective="reflective", states="sampler", history=True, changed_weight=5.0, steps=10, save_every=100,
              batch_size=8, rollouts={"every": 3, "start": 1, "rows": 2, "fraction": 0.5, "num_turns": 2,
                                      "reveal_steps": 2})
    full = train(_cfg(codes, tmp_path / "a", **kw), progress=False)
    train(_cfg(codes, tmp_path / "b", stop_after=4, **kw), progress=False)
    checkpoint = tmp_path / "b" / "run" / "checkpoint"
    assert json.loads((checkpoint / "training_state.json").read_text())["step"] == 4
    held, _ = load_file(str(checkpoint / "training_state.safetensors"))["extra.rollout_counters"].tolist()
    assert held > 0  # the step-3 rollout's states, restored on resume (the later draws pick among them)
    resumed = train(_cfg(codes, tmp_path / "b", **kw), progress=False)
    a, r = _weights(full), _weights(resumed)
    for k in a:
        torch.testing.assert_close(a[k], r[k], atol=1e-5, rtol=1e-4)


def test_rollouts_are_refused_without_sampler_states_or_with_an_edit_type_no_example_has(codes, tmp_path):  # noqa: F811
    with pytest.raises(ValueError, match="rollouts need the reflective objective on sampler states"):
        train(_cfg(codes, tmp_path, rollouts={"every": 2}), progress=False)
    with pytest.raises(ValueError, match=r"rollouts edit_types \['fix'\]: no training example has one"):
        train(_cfg(codes, tmp_path / "b", objective="reflective", states="sampler", steps=2,
                   rollouts={"every": 1, "start": 0, "edit_types": ["fix"]}), progress=False)

import pytest
import torch

from rm_edit.schedulers import LuminaRegenerateScheduler, ReflectiveMaskingScheduler

K = 8


def _logits_preferring(target, remask_at=()):
    """Logits whose argmax code is ``target`` everywhere and which prefer [MASK] at ``remask_at``."""
    n = target.shape[-1]
    logits = torch.full((1, n, K + 1), -5.0)
    logits.scatter_(-1, target.view(1, n, 1), 5.0)
    for i in remask_at:
        logits[0, i, K] = 8.0
    return logits


def test_reflective_turn_remasks_then_reveals_then_converges():
    sched = ReflectiveMaskingScheduler(codebook_size=K, num_turns=3, reveal_steps=2)
    sched.set_timesteps()
    assert sched.num_inference_steps == 9
    source = torch.zeros(1, 6, dtype=torch.long)
    target = torch.tensor([0, 0, 3, 3, 0, 0])
    state = source
    out = sched.step(_logits_preferring(source[0], remask_at=(2, 3)), 0, state)
    assert out.remasked.tolist() == [[False, False, True, True, False, False]] and not out.converged.item()
    state = out.prev_sample
    out = sched.step(_logits_preferring(target), 1, state)  # cosine: 2 masked -> floor(2 cos(pi/4)) = 1 left
    assert out.revealed.sum().item() == 1
    out = sched.step(_logits_preferring(target), 2, out.prev_sample)
    assert out.prev_sample.tolist() == [target.tolist()]
    out = sched.step(_logits_preferring(target), 3, out.prev_sample)  # reflect: nothing to re-mask
    assert out.converged.item() and not out.remasked.any()


def test_reflective_region_confines_remasks():
    sched = ReflectiveMaskingScheduler(codebook_size=K)
    state = torch.zeros(1, 4, dtype=torch.long)
    region = torch.tensor([[False, True, False, False]])
    out = sched.step(_logits_preferring(state[0], remask_at=(0, 1, 2)), 0, state, region=region)
    assert out.remasked.tolist() == [[False, True, False, False]]


def test_regenerate_follows_cosine_schedule_and_never_remasks():
    sched = LuminaRegenerateScheduler(codebook_size=K, num_inference_steps=4)
    n = 16
    state = torch.full((1, n), K)
    g = torch.Generator().manual_seed(0)
    # floor(16 cos(pi/2 (s+1)/4)): 16 * 0.92388 = 14.78 -> 14, 16 * 0.70711 = 11.31 -> 11, 16 * 0.38268 = 6.12 -> 6, 0
    for t, expected_masked in zip(sched.timesteps, [14, 11, 6, 0]):
        logits = torch.randn(1, n, K + 1, generator=torch.Generator().manual_seed(int(t)))
        prev = state
        out = sched.step(logits, t, state, generator=g)
        state = out.prev_sample
        assert (state[prev != K] == prev[prev != K]).all()  # revealed tokens stay
        assert (state == K).sum().item() == expected_masked
    assert out.converged.item() and (state < K).all()


def test_scheduler_save_load_round_trip(tmp_path):
    for cls, kw in ((ReflectiveMaskingScheduler, dict(num_turns=5, reveal_steps=3, remask_margin=0.5)),
                    (LuminaRegenerateScheduler, dict(num_inference_steps=12, temperature=0.7))):
        sched = cls(codebook_size=K, **kw)
        sched.save_pretrained(tmp_path / cls.__name__)
        again = cls.from_pretrained(tmp_path / cls.__name__)
        strip = lambda c: {k: v for k, v in c.items() if not k.startswith('_')}  # noqa: E731
        assert strip(again.config) == strip(sched.config)
        assert again.num_inference_steps == sched.num_inference_steps


def test_held_code_bias_tilts_reveals_back_to_the_code_held_before_the_remask():
    source = torch.tensor([[1, 1, 1, 1]])
    near_tie = torch.full((1, 4, K + 1), -5.0)
    near_tie[0, :, 2] = 1.0  # the model's argmax code at a re-masked position ...
    near_tie[0, :, 1] = 0.0  # ... beats the held code by 1 nat
    decisive = near_tie.clone()
    decisive[0, :, 2] = 4.0  # a confident edit: 4 nats ahead
    for bias, logits, expected in ((0.0, near_tie, 2), (2.0, near_tie, 1), (2.0, decisive, 2)):
        sched = ReflectiveMaskingScheduler(codebook_size=K, num_turns=1, reveal_steps=1, held_code_bias=bias)
        out = sched.step(_logits_preferring(source[0], remask_at=(0, 3)), 0, source)
        out = sched.step(logits, 1, out.prev_sample)
        assert out.prev_sample.tolist() == [[expected, 1, 1, expected]], (bias, expected)


def test_held_code_bias_rejects_a_negative_value():
    with pytest.raises(ValueError, match="held_code_bias"):
        ReflectiveMaskingScheduler(codebook_size=K, held_code_bias=-1.0)

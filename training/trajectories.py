"""Training states and oracle labels, in code space (K = [MASK]), as pure functions of (source, target).

* :func:`vanilla_corruption` - Lumina-DiMOO's objective: mask a cos(r pi/2) fraction of the target.
* :func:`reflective_trajectory` - Reflective Masking post-training: states a reflective sampler meets
  (the source's codes in the edit region, the model's own wrong samples, masks), each position labelled by
  the oracle action: masked -> target (reveal), wrong -> [MASK] (mask), correct -> itself (keep); plus the
  simulated History Reference a position would carry in that state.
* :func:`sampler_states` - the three passes of a reflective edit as the scheduler runs them (reflect on
  the source, reveal what it re-masked, confirm the result), each perturbed by the mistakes a
  not-yet-perfect model makes, with exactly the History Reference the sampler has recorded by then.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rm_edit.schedules import sample_mask_ratio

REVEAL, MASK, KEEP = 0, 1, 2


@dataclass(frozen=True)
class TrajectoryConfig:
    p_source_start: float = 0.4  # P(state = the untouched source): the first reflect step of an edit
    p_source_wrong: float = 0.6  # P(a changed position still shows the source's code) otherwise
    max_native_wrong: float = 0.3  # positions where the model's own sample is wrong: up to this fraction used
    p_random_wrong: float = 0.02  # uniform-noise codes, for robustness
    max_mask_unchanged: float = 0.3  # unchanged positions are masked with at most this probability
    p_history: float = 0.8  # P(a position's simulated history is recorded)
    # Exact sampler states (the grid world's sampler meets these, so train on them as they are):
    p_reveal_exact: float = 0.0  # P(state = target with exactly the changed positions masked): the reveal step
    p_target_exact: float = 0.0  # P(state = the finished target): the converging reflect step (all keep)


@dataclass
class CorruptedTargets:
    state: torch.Tensor  # (B, N) code-space input at the target positions
    labels: torch.Tensor  # (B, N) code-space labels (K = [MASK])
    kind: torch.Tensor  # (B, N) REVEAL / MASK / KEEP, or -1 for "no loss"
    history: torch.Tensor | None = None  # (B, N, 2) codes held earlier (older, newer), -1 = none


def _uniform(shape, generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device)


def oracle_labels(state: torch.Tensor, target: torch.Tensor, mask_code: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The Reflective Masking oracle at every position: (labels, kind). [MASK] -> the target's code (reveal), a
    wrong code -> [MASK] (mask), a right code -> itself (keep)."""
    is_mask = state == mask_code
    wrong = ~is_mask & (state != target)
    labels = torch.where(wrong, torch.full_like(target, mask_code), target)
    return labels, torch.where(is_mask, REVEAL, torch.where(wrong, MASK, KEEP))


def vanilla_corruption(target: torch.Tensor, codebook_size: int, generator: torch.Generator | None = None) -> CorruptedTargets:
    """Mask each row's target with ratio cos(r pi/2), r ~ U(0, 1) (at least one position); loss on masked only."""
    b, n = target.shape
    ratio = sample_mask_ratio(b, generator, device=target.device)
    scores = _uniform((b, n), generator, target.device)
    k = (ratio * n).ceil().clamp(min=1).long()
    ranks = scores.argsort(-1).argsort(-1)
    masked = ranks < k.unsqueeze(-1)
    state = torch.where(masked, torch.full_like(target, codebook_size), target)
    kind = torch.where(masked, torch.full_like(target, REVEAL), torch.full_like(target, -1))
    return CorruptedTargets(state, target.clone(), kind)


def reflective_trajectory(
    source: torch.Tensor,
    target: torch.Tensor,
    codebook_size: int,
    native: torch.Tensor | None = None,
    config: TrajectoryConfig = TrajectoryConfig(),
    generator: torch.Generator | None = None,
    with_history: bool = False,
) -> CorruptedTargets:
    """One state per row from a simulated reflective trajectory, with oracle labels.

    source, target: (B, N) codes; native: (B, N) the model's own samples for these targets (-1 = none).
    """
    b, n = target.shape
    dev = target.device
    K = codebook_size
    u = lambda *shape: _uniform(shape, generator, dev)  # noqa: E731
    changed = source != target
    if native is None:
        native = torch.full_like(target, -1)
    native_wrong = (native >= 0) & (native != target)

    state = target.clone()
    # Changed positions still showing the source's code (not yet re-masked).
    show_source = changed & (u(b, 1) < config.p_source_wrong) & (u(b, n) < 0.9)
    state = torch.where(show_source, source, state)
    # The model's own mistakes elsewhere.
    use_native = native_wrong & (u(b, n) < u(b, 1) * config.max_native_wrong)
    state = torch.where(use_native, native, state)
    noise = torch.randint(0, K, (b, n), generator=generator, device=dev)
    use_noise = (u(b, n) < config.p_random_wrong) & (noise != target)
    state = torch.where(use_noise, noise, state)
    # Masks: dense in the edit region (re-masked, not yet revealed), sparse elsewhere.
    r_changed = u(b, 1)
    r_unchanged = u(b, 1) * config.max_mask_unchanged
    masked = torch.where(changed, u(b, n) < r_changed, u(b, n) < r_unchanged)
    # The first reflect step of an edit: exactly the source, nothing masked.
    source_start = u(b, 1) < config.p_source_start
    state = torch.where(source_start, source, torch.where(masked, torch.full_like(state, K), state))
    # Rows that are exactly the reveal step's input, or exactly the finished edit (not already a source start).
    pick = u(b, 1)
    reveal_exact = ~source_start & (pick < config.p_reveal_exact)
    target_exact = ~source_start & ~reveal_exact & (pick < config.p_reveal_exact + config.p_target_exact)
    state = torch.where(reveal_exact, torch.where(changed, torch.full_like(state, K), target), state)
    state = torch.where(target_exact, target, state)

    labels, kind = oracle_labels(state, target, K)
    history = (
        _simulated_history(source, target, state, native_wrong, native, changed, K, config, u) if with_history else None
    )
    if history is not None:  # the sampler's first pass (the untouched source) has recorded nothing yet
        history = torch.where(source_start.unsqueeze(-1), torch.full_like(history, -1), history)
    return CorruptedTargets(state, labels, kind, history)


def _simulated_history(source, target, state, native_wrong, native, changed, K, config, u) -> torch.Tensor:
    """Codes a position held before reaching ``state``: (older, newer) slots, -1 = none.

    A masked position usually held a wrong code that was re-masked (the source's in the edit region, else
    the model's own sample): the code History Reference must keep it from replaying. A held code has held
    itself; a corrected position may remember the wrong code it replaced.
    """
    b, n = target.shape
    none = torch.full_like(target, -1)
    past_wrong = torch.where(changed, source, torch.where(native_wrong, native, none))
    is_mask = state == K
    recorded = u(b, n) < config.p_history
    newer = torch.where(recorded, torch.where(is_mask, past_wrong, state), none)
    corrected = ~is_mask & (state == target) & (past_wrong >= 0) & (u(b, n) < 0.3) & recorded
    older = torch.where(corrected, past_wrong, none)
    return torch.stack([older, newer], dim=-1)


@dataclass(frozen=True)
class SamplerStatesConfig:
    """Mix and perturbations of :func:`sampler_states` (fractions are per row unless noted)."""

    p_reflect: float = 0.35  # the first pass: the source exactly, nothing recorded yet
    p_reveal: float = 0.35  # the reveal pass; the rest are confirm passes
    p_false_remask: float = 0.5  # reveal rows whose re-masked set also covers unchanged cells ...
    max_false_remask: float = 0.3  # ... up to this fraction of them (shape cells first: grounding mistakes)
    p_missed: float = 0.2  # reveal rows where some changed cells still show the source's code
    max_wrong: float = 0.5  # confirm rows: up to this fraction of changed cells hold a wrong code
    p_noise: float = 0.3  # confirm rows with a few (5%) random wrong codes elsewhere
    background_codes: int = 0  # codes below this are plain background cells (wrong re-masks prefer shapes)


def sampler_states(
    source: torch.Tensor,
    target: torch.Tensor,
    codebook_size: int,
    config: SamplerStatesConfig = SamplerStatesConfig(),
    generator: torch.Generator | None = None,
) -> CorruptedTargets:
    """One state per row from the reflective sampler's own passes, oracle labels and recorded history.

    * reflect: state = the source, history empty (the scheduler records a state after the pass that saw it);
    * reveal: the source with the changed cells masked (plus, in some rows, wrongly re-masked unchanged
      cells, and changed cells the reflect pass missed), history = the source;
    * confirm: the target with some changed cells wrong (the source's code or a random one) and, in some
      rows, random wrong codes elsewhere; history = the source, then the reveal pass's state.

    The history comes back as (B, N, 2) codes held (older, newer), -1 = nothing recorded.
    """
    b, n = target.shape
    dev = target.device
    K = codebook_size
    u = lambda *shape: _uniform(shape, generator, dev)  # noqa: E731
    changed = source != target
    none = torch.full_like(target, -1)
    mask = torch.full_like(target, K)
    random_codes = torch.randint(0, K, (b, n), generator=generator, device=dev)

    pick = u(b, 1)
    reflect = pick < config.p_reflect
    reveal = ~reflect & (pick < config.p_reflect + config.p_reveal)
    confirm = ~reflect & ~reveal

    # Reveal pass: what the reflect pass re-masked.
    on_shape = (source >= config.background_codes).float()
    false_rate = (u(b, 1) < config.p_false_remask) * u(b, 1) * config.max_false_remask
    false_remask = ~changed & (u(b, n) * (1.0 - 0.5 * on_shape) < false_rate)
    missed = changed & (u(b, 1) < config.p_missed) & (u(b, n) < 0.3)
    remasked = (changed & ~missed) | false_remask
    reveal_state = torch.where(remasked, mask, source)

    # Confirm pass: what the reveal pass drew.
    wrong = changed & (u(b, n) < u(b, 1) * config.max_wrong)
    wrong_code = torch.where(u(b, n) < 0.5, source, random_codes)
    noise = ~changed & (u(b, 1) < config.p_noise) & (u(b, n) < 0.05)
    confirm_state = torch.where(wrong, wrong_code, torch.where(noise, random_codes, target))
    reveal_seen = torch.where(remasked, none, source)  # masked cells record nothing

    state = torch.where(reflect, source, torch.where(reveal, reveal_state, confirm_state))
    older = torch.where(confirm, source, none)
    newer = torch.where(reflect, none, torch.where(reveal, source, reveal_seen))
    labels, kind = oracle_labels(state, target, K)
    return CorruptedTargets(state, labels, kind, torch.stack([older, newer], dim=-1))

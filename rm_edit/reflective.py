"""The Reflective Masking rule as pure tensor functions.

Everything here works in *code space*: ``state`` (B, N) holds an image code in ``[0, K)`` or ``K`` for
[MASK], and ``log_probs`` (B, N, K + 1) is the model's distribution over the K codes then [MASK].
Per position (the seed's rule):

* reveal: the position is [MASK] -> the most likely code (argmax over codes, or a Gumbel sample);
* re-mask: it holds a code ``c`` and ``p(MASK) > p(c)`` -> [MASK];
* keep: otherwise.

The controls a sampler needs (how many to reveal, a re-mask margin, a cap on re-masks, frozen positions, a
region outside which nothing is re-masked, temperature) are keyword arguments with neutral defaults, so the
defaults are exactly the seed's rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

Generators = torch.Generator | Sequence[torch.Generator] | None


@dataclass
class ReflectiveDecision:
    """The outcome of one step: the new state and what happened at each position."""

    state: torch.Tensor  # (B, N) new code-space state
    remasked: torch.Tensor  # (B, N) held a code, now [MASK]
    revealed: torch.Tensor  # (B, N) was [MASK], now a code
    kept: torch.Tensor  # (B, N) held a code and still holds it


def gumbel_noise(shape: torch.Size | tuple, generator: Generators = None, device=None) -> torch.Tensor:
    """Standard Gumbel noise; ``generator`` may be one generator or one per batch row (reproducible batches)."""
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
        u = torch.stack([torch.rand(shape[1:], generator=g, device=g.device) for g in generator])
    else:
        gen_device = generator.device if generator is not None else device
        u = torch.rand(shape, generator=generator, device=gen_device)
    u = u.to(device) if device is not None else u
    u = u.clamp(1e-20, 1.0 - 1e-7)  # keep both logs finite
    return -torch.log(-torch.log(u))


def generators_on(generator: Generators, device: torch.device | str) -> Generators:
    """``generator`` (one, or one per row) as generators on ``device``, so random draws happen where the
    sampler's tensors live (no host noise copied over every step).

    A generator already on ``device``'s type is returned as it is (a CPU run draws exactly as before); any other
    seeds a new ``device`` generator with one draw from it, so a seeded call stays reproducible on that device.
    """
    device = torch.device(device)
    if generator is None:
        return None
    if isinstance(generator, (list, tuple)):
        return [generators_on(g, device) for g in generator]
    if generator.device.type == device.type:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))  # a host draw, once per call
    return torch.Generator(device=device).manual_seed(seed)


def _top_k_mask(scores: torch.Tensor, candidates: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Per row, the ``k[row]`` highest-scoring candidate positions (ties broken by position)."""
    scores = scores.masked_fill(~candidates, float("-inf"))
    order = scores.argsort(dim=-1, descending=True, stable=True)
    ranks = order.argsort(dim=-1)
    return candidates & (ranks < k.unsqueeze(-1))


def remask_scores(log_probs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """log p(MASK) - log p(current code): positive where the rule re-masks; -inf at [MASK] positions."""
    mask_code = log_probs.shape[-1] - 1
    is_masked = state == mask_code
    current = torch.gather(log_probs, -1, state.clamp(max=mask_code).unsqueeze(-1)).squeeze(-1)
    scores = log_probs[..., mask_code] - current
    return scores.masked_fill(is_masked, float("-inf"))


def choose_remask(
    log_probs: torch.Tensor,
    state: torch.Tensor,
    *,
    margin: float = 0.0,
    max_fraction: float | None = None,
    frozen: torch.Tensor | None = None,
    region: torch.Tensor | None = None,
) -> torch.Tensor:
    """Positions to re-mask: held codes with ``log p(MASK) - log p(code) > margin``.

    max_fraction caps the re-masked positions per row (the most confident re-masks win); ``frozen``
    positions and positions outside ``region`` are never re-masked.
    """
    scores = remask_scores(log_probs, state)
    remask = scores > margin
    if frozen is not None:
        remask &= ~frozen
    if region is not None:
        remask &= region
    if max_fraction is not None and max_fraction < 1.0:
        cap = torch.full(state.shape[:1], int(max_fraction * state.shape[-1]), device=state.device)
        remask = _top_k_mask(scores, remask, cap)
    return remask


def choose_reveal(
    log_probs: torch.Tensor,
    state: torch.Tensor,
    *,
    num_to_reveal: torch.Tensor | int | None = None,
    candidates: torch.Tensor | None = None,
    temperature: float = 0.0,
    generator: Generators = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which [MASK] positions to reveal and with which code: ``(reveal (B, N) bool, codes (B, N) long)``.

    Codes are the argmax over image codes ([MASK] excluded) at temperature 0, else a Gumbel-max sample of
    ``softmax(log p / temperature)``. With ``num_to_reveal`` only that many per row are revealed, the most
    confident first (confidence = log p(code) + temperature * Gumbel, as in MaskGIT / Lumina-DiMOO).
    """
    mask_code = log_probs.shape[-1] - 1
    code_log_probs = log_probs[..., :mask_code]
    if temperature > 0:
        noise = gumbel_noise(code_log_probs.shape, generator, device=log_probs.device)
        codes = (code_log_probs / temperature + noise).argmax(-1)
    else:
        codes = code_log_probs.argmax(-1)
    masked = state == mask_code
    if candidates is not None:
        masked &= candidates
    if num_to_reveal is None:
        return masked, codes
    confidence = torch.gather(code_log_probs, -1, codes.unsqueeze(-1)).squeeze(-1)
    if temperature > 0:
        confidence = confidence + temperature * gumbel_noise(confidence.shape, generator, device=log_probs.device)
    k = torch.as_tensor(num_to_reveal, device=state.device).expand(state.shape[0])
    return _top_k_mask(confidence, masked, k), codes


def reflective_step(
    log_probs: torch.Tensor,
    state: torch.Tensor,
    *,
    remask: bool = True,
    reveal: bool = True,
    num_to_reveal: torch.Tensor | int | None = None,
    margin: float = 0.0,
    max_remask_fraction: float | None = None,
    frozen: torch.Tensor | None = None,
    region: torch.Tensor | None = None,
    temperature: float = 0.0,
    generator: Generators = None,
) -> ReflectiveDecision:
    """Apply the rule to every position from one forward pass's ``log_probs``.

    Re-mask decisions look at held codes and reveals at positions already masked, so a position re-masked
    in this step is revealed only after the model has seen it masked (in a later pass): revealing it from
    the same pass would just return the code it was judged on.
    """
    if log_probs.shape[:-1] != state.shape:
        raise ValueError(f"log_probs {tuple(log_probs.shape)} do not match state {tuple(state.shape)}")
    mask_code = log_probs.shape[-1] - 1
    was_masked = state == mask_code
    remasked = (
        choose_remask(log_probs, state, margin=margin, max_fraction=max_remask_fraction, frozen=frozen, region=region)
        if remask
        else torch.zeros_like(was_masked)
    )
    if reveal:
        revealed, codes = choose_reveal(
            log_probs, state, num_to_reveal=num_to_reveal, candidates=None if frozen is None else ~frozen,
            temperature=temperature, generator=generator,
        )
    else:
        revealed, codes = torch.zeros_like(was_masked), state
    new_state = torch.where(revealed, codes, state)
    new_state = torch.where(remasked, torch.full_like(state, mask_code), new_state)
    kept = ~was_masked & ~remasked
    return ReflectiveDecision(new_state, remasked, revealed, kept)

"""Samplers as diffusers schedulers (``set_timesteps`` / ``step``), both in code space.

* :class:`ReflectiveMaskingScheduler` edits from the source's codes: turns of one *reflect* step (keep or
  re-mask every held code) then ``reveal_steps`` *reveal* steps (the re-masked positions come back, most
  confident first, on a cosine schedule), until a fixed point (a reflect step that re-masks nothing with
  nothing masked) or ``num_turns``. ``held_code_bias`` (nats, default 0) tilts each reveal toward the code the
  position held before its re-mask: a re-mask the model was unsure of then costs nothing outside the edit.
* :class:`LuminaRegenerateScheduler` is Lumina-DiMOO's MaskGIT sampler: all [MASK] start, every step samples
  all masked positions and keeps the ``floor(N0 cos(pi/2 (s+1)/T))`` least confident masked.

``model_output`` is the logits over the K image codes then [MASK], (B, N, K + 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput

from .reflective import Generators, reflective_step
from .schedules import reveal_count


@dataclass
class MaskedSchedulerOutput(BaseOutput):
    prev_sample: torch.Tensor  # (B, N) code-space state after the step
    remasked: torch.Tensor  # (B, N) bool
    revealed: torch.Tensor  # (B, N) bool
    kept: torch.Tensor  # (B, N) bool
    converged: torch.Tensor  # (B,) bool: this row reached a fixed point (or finished)


class ReflectiveMaskingScheduler(SchedulerMixin, ConfigMixin):
    config_name = "scheduler_config.json"
    order = 1

    @register_to_config
    def __init__(
        self,
        codebook_size: int = 256,
        num_turns: int = 3,
        reveal_steps: int = 2,
        remask_margin: float = 0.0,
        max_remask_fraction: float = 1.0,
        temperature: float = 0.0,
        held_code_bias: float = 0.0,
    ):
        if num_turns < 1 or reveal_steps < 1:
            raise ValueError(f"num_turns and reveal_steps must be >= 1, got {num_turns}, {reveal_steps}")
        if held_code_bias < 0:
            raise ValueError(f"held_code_bias must be >= 0, got {held_code_bias}")
        self.set_timesteps(num_turns)

    @property
    def steps_per_turn(self) -> int:
        return 1 + self.config.reveal_steps

    def set_timesteps(self, num_turns: int | None = None, device: str | torch.device | None = None) -> None:
        """A budget of ``num_turns`` turns of ``1 + reveal_steps`` steps (the loop may stop earlier)."""
        self.num_turns = num_turns or self.config.num_turns
        self.num_inference_steps = self.num_turns * self.steps_per_turn
        self.timesteps = torch.arange(self.num_inference_steps, device=device)
        self._turn_masked = None
        self._held = None  # the codes held just before this turn's re-masks

    def is_reflect_step(self, timestep: int) -> bool:
        return int(timestep) % self.steps_per_turn == 0

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        *,
        frozen: torch.Tensor | None = None,
        region: torch.Tensor | None = None,
        generator: Generators = None,
        return_dict: bool = True,
    ) -> MaskedSchedulerOutput | tuple:
        t = int(timestep)
        mask_code = self.config.codebook_size
        if model_output.shape[-1] != mask_code + 1:
            raise ValueError(f"expected logits over {mask_code} codes + [MASK], got last dim {model_output.shape[-1]}")
        log_probs = model_output.float().log_softmax(-1)
        c = self.config
        if self.is_reflect_step(t):
            decision = reflective_step(
                log_probs, sample, reveal=False, margin=c.remask_margin, max_remask_fraction=c.max_remask_fraction,
                frozen=frozen, region=region,
            )
            self._turn_masked = (decision.state == mask_code).sum(-1)
            self._held = sample.clone()
            converged = self._turn_masked == 0
        else:
            k = t % self.steps_per_turn - 1
            n_masked = (sample == mask_code).sum(-1)
            if self._turn_masked is None:  # resumed mid-turn: schedule from what is masked now
                self._turn_masked = n_masked
            count = reveal_count(self._turn_masked, n_masked, k, c.reveal_steps)
            if c.held_code_bias and self._held is not None:
                log_probs = self._tilt_to_held(log_probs, sample, c.held_code_bias)
            decision = reflective_step(
                log_probs, sample, remask=False, num_to_reveal=count, frozen=frozen,
                temperature=c.temperature, generator=generator,
            )
            converged = torch.zeros_like(n_masked, dtype=torch.bool)
        out = (decision.state, decision.remasked, decision.revealed, decision.kept, converged)
        return MaskedSchedulerOutput(*out) if return_dict else out

    def _tilt_to_held(self, log_probs: torch.Tensor, sample: torch.Tensor, bias: float) -> torch.Tensor:
        """Add ``bias`` to log p(held code) at masked positions that held a code before this turn."""
        mask_code = self.config.codebook_size
        held = self._held
        if held.shape != sample.shape:
            raise ValueError(f"sample {tuple(sample.shape)} does not match this turn's {tuple(held.shape)}")
        tilt = ((sample == mask_code) & (held != mask_code)).to(log_probs.dtype) * bias
        return log_probs.scatter_add(-1, held.clamp(max=mask_code - 1).unsqueeze(-1), tilt.unsqueeze(-1))


class LuminaRegenerateScheduler(SchedulerMixin, ConfigMixin):
    """Lumina-DiMOO's sampler (the baseline): regenerate the whole target from all [MASK]."""

    config_name = "scheduler_config.json"
    order = 1

    @register_to_config
    def __init__(self, codebook_size: int = 256, num_inference_steps: int = 64, temperature: float = 1.0):
        self.set_timesteps(num_inference_steps)

    def set_timesteps(self, num_inference_steps: int | None = None, device: str | torch.device | None = None) -> None:
        self.num_inference_steps = num_inference_steps or self.config.num_inference_steps
        self.timesteps = torch.arange(self.num_inference_steps, device=device)
        self._initial_masked = None

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        *,
        frozen: torch.Tensor | None = None,
        generator: Generators = None,
        return_dict: bool = True,
        **_: object,
    ) -> MaskedSchedulerOutput | tuple:
        t = int(timestep)
        mask_code = self.config.codebook_size
        # Like Lumina-DiMOO, normalise over the K codes only: [MASK] is never a class for this sampler.
        codes = model_output[..., :mask_code].float().log_softmax(-1)
        log_probs = torch.cat([codes, torch.full_like(codes[..., :1], float("-inf"))], dim=-1)
        n_masked = (sample == mask_code).sum(-1)
        if t == 0 or self._initial_masked is None:
            self._initial_masked = n_masked
        count = reveal_count(self._initial_masked, n_masked, t, self.num_inference_steps)
        decision = reflective_step(
            log_probs, sample, remask=False, num_to_reveal=count, frozen=frozen,
            temperature=self.config.temperature, generator=generator,
        )
        converged = (decision.state != mask_code).all(-1)
        out = (decision.state, decision.remasked, decision.revealed, decision.kept, converged)
        return MaskedSchedulerOutput(*out) if return_dict else out

"""Samplers as diffusers schedulers (``set_timesteps`` / ``step``), both in code space.

* :class:`ReflectiveMaskingScheduler` edits from the source's codes: turns of one *reflect* step (keep or
  re-mask every held code) then ``reveal_steps`` *reveal* steps (the re-masked positions come back, most
  confident first, on a cosine schedule), until a fixed point (a reflect step that re-masks nothing with
  nothing masked) or ``num_turns``. ``held_code_bias`` (nats, default 0) tilts each reveal toward the code the
  position held before its re-mask: a re-mask the model was unsure of then costs nothing outside the edit.
* :class:`LuminaRegenerateScheduler` is Lumina-DiMOO's MaskGIT sampler: all [MASK] start, every step samples
  all masked positions and keeps the ``floor(N0 cos(pi/2 (s+1)/T))`` least confident masked.

``model_output`` is the logits over the K image codes then [MASK], (B, N, K + 1).

A sampling call (the pipeline's loop) goes ``begin`` -> ``step`` per timestep -> ``finish``: between them the
scheduler owns the call's state (the user region, rows at their fixed point, the positions chosen for the
edit, History Reference, when the model's key/value cache must be rebuilt), so a loop does not branch on the
strategy. ``step`` alone (without ``begin``) is the plain rule on what it is given.

Each sampler names the options a call may set (``call_options``, the pipeline's keywords; the CLI reads them
too) and :meth:`~CodeSpaceEditScheduler.for_call` refuses any other with a one-line error naming it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput

from .history import HistoryRecorder
from .reflective import Generators, reflective_step
from .schedules import reveal_count

REGENERATE_STEPS = 16  # the regenerate sampler's steps when a call swaps it in (Lumina's 64 for 1,024 codes, scaled)


@dataclass
class MaskedSchedulerOutput(BaseOutput):
    prev_sample: torch.Tensor  # (B, N) code-space state after the step
    remasked: torch.Tensor  # (B, N) bool
    revealed: torch.Tensor  # (B, N) bool
    kept: torch.Tensor  # (B, N) bool
    converged: torch.Tensor  # (B,) bool: this row reached a fixed point (or finished)


class CodeSpaceEditScheduler(SchedulerMixin, ConfigMixin):
    """What both samplers share: the state of one sampling call over (B, N) code-space samples."""

    config_name = "scheduler_config.json"
    order = 1
    strategy = ""  # the pipeline's ``strategy=`` name of this sampler
    # The options a call may set (pipeline keywords): ``timestep_options`` go to ``set_timesteps``, the others
    # override the config of the same name for one call.
    call_options: tuple[str, ...] = ()
    timestep_options: tuple[str, ...] = ("num_inference_steps",)

    @classmethod
    def swapped_in(cls, codebook_size: int) -> "CodeSpaceEditScheduler":
        """The scheduler a call's ``strategy=`` puts in place of another sampler."""
        return cls(codebook_size=codebook_size)

    @classmethod
    def refuse_other_options(cls, names) -> None:
        """One-line ValueError naming the first of ``names`` this sampler does not take."""
        other = [n for n in names if n not in cls.call_options]
        if other:
            raise ValueError(f"{other[0]} is not an option of the {cls.strategy} sampler (it takes "
                             f"{', '.join(cls.call_options)})")

    def for_call(self, **options) -> "CodeSpaceEditScheduler":
        """This scheduler with one call's ``options`` (None: the scheduler's own) and its timesteps set; a copy
        when a setting changes, so a call's settings never stick. Options of another sampler are refused."""
        given = {k: v for k, v in options.items() if v is not None}
        self.refuse_other_options(given)
        overrides = {k: v for k, v in given.items() if k not in self.timestep_options}
        scheduler = type(self).from_config(self.config, **overrides) if overrides else self
        scheduler.set_timesteps(**{k: given.get(k) for k in self.timestep_options})
        return scheduler

    def begin(self, source: torch.Tensor, region: torch.Tensor | None = None,
              history: HistoryRecorder | None = None) -> torch.Tensor:
        """Start a call on the source codes (B, N); ``region`` (B, N) bool: only there may codes change.
        Returns the first sample."""
        b, n = source.shape
        self.source, self.region, self.history = source, region, history
        # Everything stays on the source's device (the transformer's): a step never copies to the host.
        self.done = torch.zeros(b, dtype=torch.bool, device=source.device)  # rows at their fixed point: frozen
        self._done_rows: tuple[bool, ...] | None = (False,) * b  # host copy of ``done``; None: to be read
        self.chosen = torch.zeros(b, n, dtype=torch.bool, device=source.device)  # positions re-masked at least once
        self.last_output: torch.Tensor | None = None
        return self._first_sample(source, region)

    def _end_call(self) -> None:
        self.source = self.region = self.history = self.done = self.chosen = self.last_output = None
        self._done_rows = None

    def _mark_done(self, converged: torch.Tensor) -> None:
        """Rows that reached their fixed point; their host copy is read (one sync) only when next asked for."""
        self.done |= converged
        self._done_rows = None

    def _host_done(self) -> tuple[bool, ...]:
        if self._done_rows is None:
            self._done_rows = tuple(self.done.tolist())  # the loop's one read per reflect step
        return self._done_rows

    def _first_sample(self, source: torch.Tensor, region: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def edit_region(self, final: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def finished(self) -> bool:
        return all(self._host_done())

    @property
    def active_row_list(self) -> tuple[int, ...]:
        """Indices of the rows the next forward pass needs (host-side: no device read unless ``done`` changed)."""
        return tuple(i for i, done in enumerate(self._host_done()) if not done)

    @property
    def active_rows(self) -> torch.Tensor:
        """:attr:`active_row_list` as a (CPU) tensor."""
        return torch.tensor(self.active_row_list, dtype=torch.long)

    def history_embeddings(self, rows: torch.Tensor) -> torch.Tensor | None:
        return None if self.history is None else self.history.embeddings(rows)

    def _call_frozen(self, frozen: torch.Tensor | None, shape: torch.Size) -> torch.Tensor | None:
        """Positions this step must not touch: finished rows (during a call) and what the caller froze."""
        if self.done is None:
            return frozen
        rows = self.done[:, None].expand(shape)
        return rows if frozen is None else rows | frozen

    def _record(self, model_output: torch.Tensor, sample: torch.Tensor) -> None:
        if self.done is not None:
            self.last_output = model_output
            if self.history is not None:
                self.history.record(sample)

    def finish(self, sample: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """End the call: ``(final codes, edit region)``, both (B, N). A call stopped mid-turn fills [MASK]
        with the last pass's best codes (the source's when no pass ran): the output never holds [MASK]."""
        mask_code = self.config.codebook_size
        final = sample
        if (sample == mask_code).any():
            out = self.last_output
            best = out[..., :mask_code].argmax(-1) if out is not None else self.source
            final = torch.where(sample == mask_code, best, sample)
        region = self.edit_region(final)
        self._end_call()
        return final, region


class ReflectiveMaskingScheduler(CodeSpaceEditScheduler):
    strategy = "reflective"
    call_options = ("num_turns", "num_inference_steps", "reveal_steps", "temperature", "remask_margin",
                    "held_code_bias", "max_remask_fraction")
    timestep_options = ("num_inference_steps", "num_turns")

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
        self._end_call()
        self.set_timesteps()

    @property
    def steps_per_turn(self) -> int:
        return 1 + self.config.reveal_steps

    def set_timesteps(self, num_inference_steps: int | None = None, device: str | torch.device | None = None,
                      num_turns: int | None = None) -> None:
        """A budget of ``num_turns`` turns (default: the config's) of ``1 + reveal_steps`` steps; the loop may
        stop earlier. ``num_inference_steps`` (when ``num_turns`` is not given; ``num_turns`` wins) is a budget
        in steps: the most whole turns that fit in it, at least one (e.g. 9 steps at 2 reveal steps: 9 // 3 = 3)."""
        if num_turns is None and num_inference_steps is not None:
            if num_inference_steps < 1:
                raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
            num_turns = max(1, num_inference_steps // self.steps_per_turn)
        self.num_turns = num_turns or self.config.num_turns
        self.num_inference_steps = self.num_turns * self.steps_per_turn
        self.timesteps = torch.arange(self.num_inference_steps, device=device)
        self._turn_masked = None
        self._held = None  # the codes held just before this turn's re-masks

    def is_reflect_step(self, timestep: int) -> bool:
        return int(timestep) % self.steps_per_turn == 0

    def needs_full_forward(self, timestep: int) -> bool:
        """Every reflect step decides at every position, so it rebuilds the key/value cache."""
        return self.is_reflect_step(timestep)

    def _first_sample(self, source: torch.Tensor, region: torch.Tensor | None) -> torch.Tensor:
        return source.clone()

    def edit_region(self, final: torch.Tensor) -> torch.Tensor:
        """(B, N) what the edit changed: the positions it re-masked whose code ended other than the source's. A
        code re-masked and written back as it was is no edit (the model reconsidered and kept it), as in the
        regenerate sampler's region; ``chosen`` keeps every re-masked position."""
        return self.chosen & (final != self.source)

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
        self._record(model_output, sample)
        frozen = self._call_frozen(frozen, sample.shape)
        region = region if region is not None else self.region
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
        if self.done is not None:
            self.chosen |= decision.remasked
            if self.is_reflect_step(t):  # only a reflect step can reach a fixed point
                self._mark_done(converged)
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


class LuminaRegenerateScheduler(CodeSpaceEditScheduler):
    """Lumina-DiMOO's sampler (the baseline): regenerate the whole target from all [MASK] (with a region:
    only the region, the rest stays the source's)."""

    strategy = "regenerate"
    call_options = ("num_inference_steps", "temperature", "kv_cache_refresh_every")

    @register_to_config
    def __init__(self, codebook_size: int = 256, num_inference_steps: int = 64, temperature: float = 1.0,
                 min_masked_until_last: int = 0, kv_cache_refresh_every: int = 4):
        # min_masked_until_last: keep at least this many masked until the last step (Lumina-DiMOO clamps to 1).
        # kv_cache_refresh_every: with the key/value cache, rebuild it every this many steps.
        if kv_cache_refresh_every < 1:
            raise ValueError(f"kv_cache_refresh_every must be >= 1, got {kv_cache_refresh_every}")
        self._end_call()
        self.set_timesteps(num_inference_steps)

    @classmethod
    def swapped_in(cls, codebook_size: int) -> "LuminaRegenerateScheduler":
        return cls(codebook_size=codebook_size, num_inference_steps=REGENERATE_STEPS)

    def set_timesteps(self, num_inference_steps: int | None = None, device: str | torch.device | None = None) -> None:
        """``num_inference_steps`` steps (default: the config's)."""
        self.num_inference_steps = num_inference_steps or self.config.num_inference_steps
        self.timesteps = torch.arange(self.num_inference_steps, device=device)
        self._initial_masked = None

    def needs_full_forward(self, timestep: int) -> bool:
        """Every ``kv_cache_refresh_every``-th step rebuilds the key/value cache."""
        return int(timestep) % self.config.kv_cache_refresh_every == 0

    def _first_sample(self, source: torch.Tensor, region: torch.Tensor | None) -> torch.Tensor:
        start = torch.full_like(source, self.config.codebook_size)
        return start if region is None else torch.where(region, start, source)

    def edit_region(self, final: torch.Tensor) -> torch.Tensor:
        """(B, N) what was regenerated: the region when given, else every code that changed."""
        return (final != self.source) if self.region is None else self.region.clone()

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        *,
        frozen: torch.Tensor | None = None,
        generator: Generators = None,
        return_dict: bool = True,
    ) -> MaskedSchedulerOutput | tuple:
        t = int(timestep)
        mask_code = self.config.codebook_size
        self._record(model_output, sample)
        if self.region is not None:
            frozen = ~self.region if frozen is None else frozen | ~self.region
        frozen = self._call_frozen(frozen, sample.shape)
        # Like Lumina-DiMOO, normalise over the K codes only: [MASK] is never a class for this sampler.
        codes = model_output[..., :mask_code].float().log_softmax(-1)
        log_probs = torch.cat([codes, torch.full_like(codes[..., :1], float("-inf"))], dim=-1)
        n_masked = (sample == mask_code).sum(-1)
        if t == 0 or self._initial_masked is None:
            self._initial_masked = n_masked
        count = reveal_count(self._initial_masked, n_masked, t, self.num_inference_steps,
                             self.config.min_masked_until_last)
        decision = reflective_step(
            log_probs, sample, remask=False, num_to_reveal=count, frozen=frozen,
            temperature=self.config.temperature, generator=generator,
        )
        # A row that revealed everything still runs to the last step: the step count is the budget asked for.
        converged = (decision.state != mask_code).all(-1)
        out = (decision.state, decision.remasked, decision.revealed, decision.kept, converged)
        return MaskedSchedulerOutput(*out) if return_dict else out


STRATEGIES = {cls.strategy: cls for cls in (ReflectiveMaskingScheduler, LuminaRegenerateScheduler)}


def scheduler_for_strategy(strategy: str | None, current: CodeSpaceEditScheduler,
                           codebook_size: int) -> CodeSpaceEditScheduler:
    """``current``, or for a ``strategy`` it is not, that sampler as a call swaps it in."""
    if strategy is None:
        return current
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {sorted(STRATEGIES)}, got {strategy!r}")
    cls = STRATEGIES[strategy]
    return current if isinstance(current, cls) else cls.swapped_in(codebook_size)

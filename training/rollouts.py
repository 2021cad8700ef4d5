"""On-policy Reflective Masking states: the model's own reflective edits of training examples.

:func:`~.trajectories.sampler_states` perturbs the sampler's passes with mistakes of a *simulated* model (the
source's code, a random code). A trained model makes other mistakes: on a Sudoku board a plausible digit that
conflicts three cells away. Every ``every`` steps the model being trained edits ``rows`` training examples with
the reflective scheduler (:class:`rm_edit.schedulers.ReflectiveMaskingScheduler`, as inference runs it), and
each pass's input state is kept with the states the position held before it (History Reference's input: the
model's own rejected codes). Training rows drawn from this buffer are labelled by the same oracle as every other
state (:func:`~.trajectories.oracle_labels`): masked -> target, wrong -> [MASK], right -> itself. DAgger's idea
(train on the states the learner's own policy visits), for the re-mask decisions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from rm_edit.schedulers import ReflectiveMaskingScheduler


@dataclass(frozen=True)
class RolloutConfig:
    every: int = 0  # run one rollout every this many steps (0: never; off-policy states only)
    start: int = 100  # the first step a rollout runs at (the model should re-mask something by then)
    rows: int = 16  # training examples edited per rollout
    fraction: float = 0.5  # of each batch's rows drawn from the buffer once it holds states
    capacity: int = 4096  # states kept (the oldest are overwritten)
    num_turns: int = 3
    reveal_steps: int = 8
    remask_margin: float = 0.0
    temperature: float = 1.0  # reveal sampling temperature (0: greedy, the policy the tuned sampler runs)
    reflect_only: bool = False  # keep only the reflect passes' inputs: whole boards the model must judge
    edit_types: list | None = None  # roll out examples of these edit types only (None: all)

    def __post_init__(self):
        if self.every < 0 or self.rows < 1 or self.capacity < 1 or not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"bad rollouts config {self}: every >= 0, rows >= 1, capacity >= 1, 0 <= fraction <= 1")

    @property
    def history_len(self) -> int:
        """The most states a pass can have recorded before it (every earlier pass of the call)."""
        return self.num_turns * (1 + self.reveal_steps)


class RolloutBuffer:
    """A ring of on-policy states: the training example each came from, its (N,) code state and the (N, T) codes
    its positions held at earlier passes (oldest first; -1 = nothing recorded)."""

    def __init__(self, capacity: int, positions: int, history_len: int):
        self.capacity, self.history_len = capacity, history_len
        self.index = torch.zeros(capacity, dtype=torch.long)
        self.state = torch.zeros(capacity, positions, dtype=torch.long)
        self.history = torch.full((capacity, positions, history_len), -1, dtype=torch.long)
        self.counters = torch.zeros(2, dtype=torch.long)  # (states held, next slot): saved with the run

    def __len__(self) -> int:
        return int(self.counters[0])

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The buffer as named tensors, saved and restored in place with a training checkpoint."""
        return {"rollout_index": self.index, "rollout_state": self.state, "rollout_history": self.history,
                "rollout_counters": self.counters}

    def add(self, index: torch.Tensor, state: torch.Tensor, history: torch.Tensor) -> None:
        """Write the rows in order from the next slot on, wrapping around (more rows than slots: the last ones)."""
        n = min(len(index), self.capacity)
        index, state, history = index[-n:], state[-n:], history[-n:]
        slots = (int(self.counters[1]) + torch.arange(n)) % self.capacity
        self.index[slots], self.state[slots], self.history[slots] = index, state, history
        self.counters[1] = (int(self.counters[1]) + n) % self.capacity
        self.counters[0] = min(len(self) + n, self.capacity)

    def sample(self, m: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pick = torch.randint(0, len(self), (m,), generator=generator)
        return self.index[pick], self.state[pick], self.history[pick]


def pad_history(history: torch.Tensor, length: int) -> torch.Tensor:
    """(B, N, T) histories to (B, N, ``length``) with nothing recorded (-1) before the oldest state: the padded
    steps add nothing, and under decay what came after them decays exactly as before."""
    b, n, t = history.shape
    if t > length:
        raise ValueError(f"history of {t} states does not fit {length}")
    return torch.cat([history.new_full((b, n, length - t), -1), history], dim=-1)


@torch.no_grad()
def reflective_rollout(
    predict: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor],
    index: torch.Tensor,
    source: torch.Tensor,
    codebook_size: int,
    cfg: RolloutConfig,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Edit ``source`` (R, N) with the reflective scheduler; return every pass's input, (index, state, history).

    ``predict(index, state, history)`` gives logits (R, N, K + 1) over the codes and [MASK] for those rows, with
    ``history`` (R, N, T) the codes held at earlier passes (None before the first). A row at its fixed point stops
    contributing (its further passes would repeat its last state)."""
    scheduler = ReflectiveMaskingScheduler(codebook_size=codebook_size, num_turns=cfg.num_turns,
                                           reveal_steps=cfg.reveal_steps, remask_margin=cfg.remask_margin,
                                           temperature=cfg.temperature)
    sample = scheduler.begin(source.clone())
    seen: list[torch.Tensor] = []
    kept_index, kept_state, kept_history = [], [], []

    def keep(rows: torch.Tensor, state: torch.Tensor, history: torch.Tensor | None) -> None:
        history = state.new_full((*state.shape, 0), -1) if history is None else history
        kept_index.append(index[rows])
        kept_state.append(state[rows])
        kept_history.append(pad_history(history[rows], cfg.history_len))

    for t in scheduler.timesteps.tolist():
        if scheduler.finished:
            break
        history = torch.stack(seen, -1) if seen else None
        if not cfg.reflect_only or scheduler.is_reflect_step(t):
            keep(scheduler.active_rows, sample, history)
        logits = predict(index, sample, history)
        next_sample = scheduler.step(logits, t, sample, generator=generator).prev_sample
        seen.append(sample)
        sample = next_sample
    if not scheduler.finished:  # the finished boards: what one more turn would reflect on
        keep(scheduler.active_rows, sample, torch.stack(seen, -1))
    scheduler.finish(sample)
    return torch.cat(kept_index), torch.cat(kept_state), torch.cat(kept_history)

"""Learning-rate schedules and the time-budget plan.

Two schedules, both ending at ``lr * lr_decay_factor``:

* ``step`` (the paper): multiply by ``lr_decay_factor`` every ``lr_decay_steps`` steps;
* ``cosine``: from ``lr`` down to ``lr * lr_decay_factor`` along half a cosine over ``steps``.

With ``--time-budget`` the run's length is not known in advance: :func:`plan_steps` turns the
steps per second measured after a warm-up, and the measured cost of a validation and of a
checkpoint, into the number of steps that end within the budget; the schedule is then stretched
to that length (``step``: the decay steps keep their share of the run).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

#: Steps after the start (or a resume) at which a time-budgeted run measures its speed and plans.
PLAN_AFTER_STEPS = 20
#: Steps left out of that measurement: the first ones select kernels (and compile).
WARMUP_STEPS = 3
#: Share of the remaining budget kept back for timing noise.
SAFETY = 0.05


def make_scheduler(
    optimizer: torch.optim.Optimizer, kind: str, decay_steps: int, decay_factor: float, total: Callable[[], int]
) -> torch.optim.lr_scheduler.LRScheduler:
    """The schedule ``kind``; ``total()`` gives the run's current length (it may be planned later)."""
    if kind == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=decay_steps, gamma=decay_factor)
    if kind == "cosine":

        def factor(step: int) -> float:
            progress = min(step, total()) / max(total(), 1)
            return decay_factor + (1.0 - decay_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    raise ValueError(f"unknown learning-rate schedule {kind!r}; use step or cosine")


def plan_steps(
    remaining_s: float,
    steps_per_s: float,
    *,
    val_every: int,
    val_s: float,
    checkpoint_every: int,
    checkpoint_s: float,
    final_s: float,
) -> int:
    """How many more steps fit in ``remaining_s`` seconds, counting the validations and
    checkpoints they bring (every ``val_every`` / ``checkpoint_every`` steps; 0: none) and the
    ``final_s`` seconds of the end (last validation, checkpoint and weights)."""
    if steps_per_s <= 0 or not math.isfinite(steps_per_s):
        return 0
    usable = remaining_s * (1.0 - SAFETY) - final_s
    per_step = 1.0 / steps_per_s
    if val_every > 0:
        per_step += val_s / val_every
    if checkpoint_every > 0:
        per_step += checkpoint_s / checkpoint_every
    return max(0, math.floor(usable / per_step))


def stretched_decay_steps(decay_steps: int, steps: int, planned: int) -> int:
    """``decay_steps`` moved so that it keeps its share of a run of ``steps`` in one of ``planned``."""
    return max(1, round(planned * decay_steps / max(steps, 1)))

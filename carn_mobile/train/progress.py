"""What a training run shows while it runs: a rich progress bar, or plain status lines.

The bar (rank 0 only) shows step, loss, last validation PSNR, steps/s and ETA. Without
a terminal, or with ``--no-progress``, there is no bar and a line is printed at every
validation instead, which reads well in a batch job's log file.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..console import make_console


def format_eta(seconds: float) -> str:
    """``3d 04:05:06`` / ``04:05:06`` / ``--:--:--`` for unknown."""
    if seconds != seconds or seconds == float("inf") or seconds < 0:
        return "--:--:--"
    s = int(round(seconds))
    days, s = divmod(s, 86400)
    text = f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{days}d {text}" if days else text


class StepTimer:
    """Steps per second over the last ``window`` training steps.

    A step lasts from the previous :meth:`lap` (or :meth:`reset`) to this one, so waiting
    for data counts; call :meth:`reset` after validations and checkpoints to leave them out.
    """

    def __init__(self, window: int = 50) -> None:
        self._durations: deque[float] = deque(maxlen=window)
        self._mark = time.perf_counter()

    def reset(self) -> None:
        self._mark = time.perf_counter()

    def lap(self) -> float:
        """Record one step ending now; returns its duration in seconds."""
        now = time.perf_counter()
        d = now - self._mark
        self._durations.append(d)
        self._mark = now
        return d

    @property
    def steps_per_s(self) -> float:
        total = sum(self._durations)
        return len(self._durations) / total if total > 0 else float("nan")


class TrainProgress:
    """Context manager around the bar; a no-op on ranks other than 0."""

    def __init__(self, total: int, start: int, enabled: bool, active: bool = True, console: Console | None = None):
        self.console = console or make_console(stderr=True)
        self.active = active  # False on ranks other than 0: show nothing at all
        self.bar_on = active and enabled and self.console.is_terminal
        self.total = total
        self._bar: Progress | None = None
        self._task: Any = None
        self._start = start

    def __enter__(self) -> TrainProgress:
        if self.bar_on:
            self._bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("PSNR {task.fields[psnr]}"),
                TextColumn("{task.fields[speed]} steps/s"),
                TextColumn("ETA {task.fields[eta]}"),
                TimeElapsedColumn(),
                console=self.console,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(
                "train", total=self.total, completed=self._start, loss="-", psnr="-", speed="-", eta="--:--:--"
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None

    def update(self, step: int, loss: float | None, psnr: float | None, steps_per_s: float) -> None:
        if self._bar is None:
            return
        eta = (self.total - step) / steps_per_s if steps_per_s == steps_per_s and steps_per_s > 0 else float("nan")
        fields: dict[str, Any] = {"speed": f"{steps_per_s:.2f}" if steps_per_s == steps_per_s else "-"}
        fields["eta"] = format_eta(eta)
        if loss is not None:
            fields["loss"] = f"{loss:.4f}"
        if psnr is not None:
            fields["psnr"] = f"{psnr:.2f}"
        self._bar.update(self._task, completed=step, **fields)

    def print(self, text: str) -> None:
        """A status line above the bar (or on its own without one); only rank 0 prints."""
        if self.active:
            self.console.print(text, markup=False)

"""What every runner provides: load an artifact in its own runtime and call it on an LR array."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np

#: A loaded artifact: float32 (1, 3, H, W) in [0, 1] -> float32 (1, 3, sH, sW), a fresh array.
LoadedArtifact = Callable[[np.ndarray], np.ndarray]


class RunnerUnavailable(RuntimeError):
    """The runtime cannot run on this machine (e.g. Core ML predict outside macOS)."""


class Runner(ABC):
    """Runs artifacts in one runtime (onnxruntime, the lite interpreter, ExecuTorch, Core ML).

    Subclasses set the class attributes and implement :meth:`load`, decorate themselves with
    :func:`carn_mobile.runtimes.register_runner` and are listed in
    :data:`carn_mobile.runtimes.runners.RUNNER_MODULES`; an export target names the runners
    of its artifacts (``Target.runners``).
    """

    #: Registry name, e.g. ``"onnxruntime"``.
    name: ClassVar[str]
    #: pip extra that installs the runtime.
    extra: ClassVar[str] = "export"

    def unavailable_reason(self) -> str | None:
        """``None`` when this runner can run here, else why not (shown to the user verbatim)."""
        return None

    @abstractmethod
    def load(self, path: str | Path) -> LoadedArtifact:
        """Load ``path`` and return a callable running it.

        Raises :class:`RunnerUnavailable` when the runtime cannot run here, a
        ``MissingDependencyError`` when its package is missing, and any other exception when
        the artifact itself cannot be loaded (which parity reports as a failure).
        """

    def versions(self) -> dict[str, str | None]:
        """Versions of the runtime packages, for manifests and reports."""
        return {}

    def describe(self) -> str | None:
        """What this runner is, where its name does not say it (``carn-info --environment``)."""
        return None


def as_model_input(lr: np.ndarray) -> np.ndarray:
    """Check an LR batch against the contract and return it C-contiguous float32.

    Contiguity matters: ExecuTorch's Python runtime ignores strides and silently computes
    garbage from a permuted view.
    """
    arr = np.asarray(lr)
    if arr.ndim != 4 or arr.shape[0] != 1 or arr.shape[1] != 3:
        raise ValueError(f"lr must be shaped (1, 3, H, W), got {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)

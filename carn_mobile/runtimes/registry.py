"""Runner registry: name -> runner, discovered from the ``runner_*.py`` modules of this package."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import numpy as np

from ..plugins import import_modules_with_prefix
from .base import Runner

_RUNNERS: dict[str, Runner] = {}
_discovered = False

R = TypeVar("R", bound=type[Runner])


def register_runner(cls: R) -> R:
    """Class decorator: make ``cls`` available to parity and the CLI under ``cls.name``."""
    if cls.name in _RUNNERS and type(_RUNNERS[cls.name]) is not cls:
        raise ValueError(f"runner {cls.name!r} is registered twice")
    _RUNNERS[cls.name] = cls()
    return cls


def _discover() -> None:
    # Importing a runner module never imports its runtime (that happens in load), so
    # discovery is cheap and works without any optional dependency installed.
    global _discovered
    if _discovered:
        return
    import_modules_with_prefix(__name__.rpartition(".")[0], Path(__file__).parent, "runner_")
    _discovered = True


def list_runners() -> list[str]:
    """Names of every registered runner, sorted."""
    _discover()
    return sorted(_RUNNERS)


def get_runner(name: str) -> Runner:
    """The runner registered as ``name``; ``ValueError`` naming the known ones otherwise."""
    _discover()
    try:
        return _RUNNERS[name]
    except KeyError:
        raise ValueError(f"unknown runner {name!r}; known runners: {', '.join(list_runners())}") from None


def runners_for_target(target: str) -> list[Runner]:
    """Runners able to execute ``target``'s artifacts, best first (highest priority)."""
    _discover()
    found = [r for r in _RUNNERS.values() if r.target == target]
    return sorted(found, key=lambda r: (-r.priority, r.name))


def runner_for_path(path: str | Path) -> Runner:
    """The preferred runner for an artifact, chosen by its suffix (``.onnx``, ``.ptl``...)."""
    _discover()
    suffix = Path(path).suffix.lower()
    found = sorted((r for r in _RUNNERS.values() if r.suffix == suffix), key=lambda r: (-r.priority, r.name))
    if not found:
        known = ", ".join(sorted({r.suffix for r in _RUNNERS.values()}))
        raise ValueError(f"no runner for {Path(path).name!r}: unknown suffix {suffix!r} (known: {known})")
    return found[0]


def run(artifact: str | Path, lr: np.ndarray) -> np.ndarray:
    """Run an exported artifact once: ``lr`` (1, 3, H, W) float32 in [0, 1] -> ``sr``.

    Loads the artifact on every call; load once with ``runner_for_path(p).load(p)`` to run
    many inputs.
    """
    return runner_for_path(artifact).load(artifact)(lr)

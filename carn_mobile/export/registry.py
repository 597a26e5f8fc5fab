"""Target registry: name -> adapter, from the modules listed in :data:`TARGET_MODULES`.

A target owns everything that is decided per format: its artifact suffix, the runners that
execute its artifacts (best first), and the backend name under which ``carn-bench`` and
``carn-upscale`` run them. So adding a target is one adapter module, one runner module, one
line here, one line in :data:`carn_mobile.runtimes.registry.RUNNER_MODULES` and an optional
extra in ``pyproject.toml``; the CLI, parity, manifests, bench and upscale follow from it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TypeVar

import numpy as np

from ..runtimes import Runner, get_runner
from .base import Target

#: Modules of this package that define targets (imported by name: a missing one fails loudly).
TARGET_MODULES = (
    "target_onnx",
    "target_coreml",
    "target_lite",
    "target_executorch",
)

_TARGETS: dict[str, Target] = {}
_loaded = False

T = TypeVar("T", bound=type[Target])


def register_target(cls: T) -> T:
    """Class decorator: make ``cls`` an export target under ``cls.name``."""
    if cls.name in _TARGETS and type(_TARGETS[cls.name]) is not cls:
        raise ValueError(f"target {cls.name!r} is registered twice")
    _TARGETS[cls.name] = cls()
    return cls


def _load() -> None:
    # Target modules import their converters lazily, so this works without any extra installed.
    global _loaded
    if not _loaded:
        for module in TARGET_MODULES:
            importlib.import_module(f"{__package__}.{module}")
        _loaded = True


def list_targets() -> list[str]:
    """Names of every export target, in their listing order."""
    _load()
    return [t.name for t in sorted(_TARGETS.values(), key=lambda t: (t.rank, t.name))]


def get_target(name: str) -> Target:
    """The target called ``name``; ``ValueError`` naming the known targets otherwise."""
    _load()
    try:
        return _TARGETS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown target {name!r}; known targets: {', '.join(list_targets())}, all") from None


def target_for_path(path: str | Path) -> Target:
    """The target whose artifacts end like ``path`` (``.onnx``, ``.mlpackage``...)."""
    _load()
    suffix = Path(path).suffix.lower()
    for name in list_targets():
        if _TARGETS[name].suffix == suffix:
            return _TARGETS[name]
    known = ", ".join(_TARGETS[n].suffix for n in list_targets())
    raise ValueError(f"no runner for {Path(path).name!r}: unknown suffix {suffix!r} (known: {known})")


def runners_for_target(name: str) -> list[Runner]:
    """The runners able to execute ``name``'s artifacts, best first."""
    return [get_runner(r) for r in get_target(name).runners]


def runner_for_path(path: str | Path) -> Runner:
    """The preferred runner for an artifact, chosen by its suffix."""
    return runners_for_target(target_for_path(path).name)[0]


def artifact_backends() -> dict[str, str]:
    """``carn-bench`` / ``carn-upscale`` backend name -> the target whose artifacts it runs."""
    _load()
    return {_TARGETS[n].backend: n for n in list_targets() if _TARGETS[n].backend}  # type: ignore[misc]


def run(artifact: str | Path, lr: np.ndarray) -> np.ndarray:
    """Run an exported artifact once: ``lr`` (1, 3, H, W) float32 in [0, 1] -> ``sr``.

    Loads the artifact on every call; load once with ``runner_for_path(p).load(p)`` to run
    many inputs.
    """
    return runner_for_path(artifact).load(artifact)(lr)

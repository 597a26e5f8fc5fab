"""Target registry: name -> adapter, from the modules listed in :data:`TARGET_MODULES`.

A target owns everything that is decided per format: its artifact suffix, the runners that
execute its artifacts (best first), and the backend name under which ``carn-bench`` and
``carn-upscale`` run them. So adding a target is one adapter module, one runner module, one
line here, one line in :data:`carn_mobile.runtimes.registry.RUNNER_MODULES` and an optional
extra in ``pyproject.toml``; the CLI, parity, manifests, bench and upscale follow from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import numpy as np

from ..registry import Registry
from ..runtimes import Runner, get_runner
from .base import Target

#: Modules of this package that define targets (imported by name: a missing one fails loudly).
TARGET_MODULES = (
    "target_onnx",
    "target_ort",
    "target_coreml",
    "target_lite",
    "target_executorch",
    "target_web",
    "target_litert",
)

_TARGETS: Registry[Target] = Registry("target", __package__, TARGET_MODULES, order=lambda t: (t.rank, t.name))

T = TypeVar("T", bound=type[Target])


def register_target(cls: T) -> T:
    """Class decorator: make ``cls`` an export target under ``cls.name``."""
    return _TARGETS.register(cls)


def list_targets() -> list[str]:
    """Names of every export target, in their listing order."""
    return _TARGETS.names()


def get_target(name: str) -> Target:
    """The target called ``name``; ``ValueError`` naming the known targets otherwise."""
    return _TARGETS.get(name.lower(), known_suffix=", all")


def target_for_path(path: str | Path) -> Target:
    """The target whose artifacts end like ``path`` (``.onnx``, ``.mlpackage``...)."""
    suffix = Path(path).suffix.lower()
    targets = [get_target(name) for name in list_targets()]
    for target in targets:
        if target.suffix == suffix:
            return target
    known = ", ".join(t.suffix for t in targets)
    raise ValueError(f"no runner for {Path(path).name!r}: unknown suffix {suffix!r} (known: {known})")


def runners_for_target(name: str) -> list[Runner]:
    """The runners able to execute ``name``'s artifacts, best first."""
    return [get_runner(r) for r in get_target(name).runners]


def runner_for_path(path: str | Path) -> Runner:
    """The preferred runner for an artifact, chosen by its suffix."""
    return runners_for_target(target_for_path(path).name)[0]


def artifact_backends() -> dict[str, str]:
    """``carn-bench`` / ``carn-upscale`` backend name -> the target whose artifacts it runs."""
    targets = [get_target(name) for name in list_targets()]
    return {t.backend: t.name for t in targets if t.backend}


def run(artifact: str | Path, lr: np.ndarray) -> np.ndarray:
    """Run an exported artifact once: ``lr`` (1, 3, H, W) float32 in [0, 1] -> ``sr``.

    Loads the artifact on every call; load once with ``runner_for_path(p).load(p)`` to run
    many inputs.
    """
    return runner_for_path(artifact).load(artifact)(lr)

"""Runner registry: name -> runner, from the modules listed in :data:`RUNNER_MODULES`.

The list is explicit (as timm lists its model modules): a renamed or missing module fails
loudly at the first lookup instead of silently dropping a runtime. Which runner executes which
artifacts is the export target's decision (``Target.runners``), not the runner's.
"""

from __future__ import annotations

import importlib
from typing import TypeVar

from .base import Runner

#: Modules of this package that define runners; importing one registers its runner. Importing a
#: runner module never imports its runtime (that happens in ``load``), so this is cheap and works
#: without any optional dependency installed.
RUNNER_MODULES = (
    "runner_onnxruntime",
    "runner_lite",
    "runner_executorch",
    "runner_coreml",
    "runner_coreml_reference",
)

_RUNNERS: dict[str, Runner] = {}
_loaded = False

R = TypeVar("R", bound=type[Runner])


def register_runner(cls: R) -> R:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if cls.name in _RUNNERS and type(_RUNNERS[cls.name]) is not cls:
        raise ValueError(f"runner {cls.name!r} is registered twice")
    _RUNNERS[cls.name] = cls()
    return cls


def _load() -> None:
    global _loaded
    if not _loaded:
        for module in RUNNER_MODULES:
            importlib.import_module(f"{__package__}.{module}")
        _loaded = True


def list_runners() -> list[str]:
    """Names of every registered runner, sorted."""
    _load()
    return sorted(_RUNNERS)


def get_runner(name: str) -> Runner:
    """The runner registered as ``name``; ``ValueError`` naming the known ones otherwise."""
    _load()
    try:
        return _RUNNERS[name]
    except KeyError:
        raise ValueError(f"unknown runner {name!r}; known runners: {', '.join(list_runners())}") from None

"""Runner registry: name -> runner, from the modules listed in :data:`RUNNER_MODULES`.

The list is explicit (as timm lists its model modules): a renamed or missing module fails
loudly at the first lookup instead of silently dropping a runtime. Which runner executes which
artifacts is the export target's decision (``Target.runners``), not the runner's.
"""

from __future__ import annotations

from typing import TypeVar

from ..plugins import PluginRegistry
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
    "runner_web_page",
    "runner_litert",
    "runner_qnn",
)

_RUNNERS: PluginRegistry[Runner] = PluginRegistry("runner", __package__, RUNNER_MODULES, order=lambda r: r.name)

R = TypeVar("R", bound=type[Runner])


def register_runner(cls: R) -> R:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    return _RUNNERS.register(cls)


def list_runners() -> list[str]:
    """Names of every registered runner, sorted."""
    return _RUNNERS.names()


def get_runner(name: str) -> Runner:
    """The runner registered as ``name``; ``ValueError`` naming the known ones otherwise."""
    return _RUNNERS.get(name)

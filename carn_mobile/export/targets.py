"""Target registry (name -> adapter, from the modules listed in :data:`TARGET_MODULES`) and the
one rule for which runner opens an artifact here (:func:`open_artifact`).

A target owns everything that is decided per format: its artifact suffix, the runners that
execute its artifacts (best first), and the backend name under which ``carn-bench`` and
``carn-upscale`` run them. So adding a target is one adapter module, one runner module, one
line here, one line in :data:`carn_mobile.runtimes.runners.RUNNER_MODULES` and an optional
extra in ``pyproject.toml``; the CLI, the gate, manifests, bench and upscale follow from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from ..parity import one_line
from ..plugins import PluginRegistry
from ..runtimes import LoadedArtifact, Runner, RunnerUnavailable, get_runner
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
    "target_qnn",
)

_TARGETS: PluginRegistry[Target] = PluginRegistry("target", __package__, TARGET_MODULES,
                                                  order=lambda t: (t.rank, t.name))

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
    """The target whose files end like ``path`` (``.onnx``, ``.qnn.onnx``, ``.mlpackage``...): the
    longest matching suffix among the targets' artifact suffixes and ``Target.opens``."""
    name = Path(path).name.lower()
    targets = [get_target(n) for n in list_targets()]
    owned = sorted(((s, t) for t in targets for s in (t.suffix, *t.opens)), key=lambda pair: -len(pair[0]))
    for suffix, target in owned:
        if name.endswith(suffix):
            return target
    known = ", ".join(dict.fromkeys(s for s, _ in owned))
    raise ValueError(f"no runner for {Path(path).name!r}: unknown suffix {Path(path).suffix!r} (known: {known})")


def runners_for_target(name: str) -> list[Runner]:
    """The runners able to execute ``name``'s artifacts, best first."""
    return [get_runner(r) for r in get_target(name).runners]


def usable_runners(target: Target) -> tuple[list[Runner], str | None]:
    """The runners of ``target`` able to run here, best first, and why the others cannot."""
    usable, reasons = [], []
    for runner in (get_runner(r) for r in target.runners):
        reason = runner.unavailable_reason()
        if reason is None:
            usable.append(runner)
        else:
            reasons.append(reason)
    if not target.runners:
        reasons.append(f"no runner is registered for target {target.name!r}")
    return usable, "; ".join(reasons) or None


@dataclass
class OpenedArtifact:
    """An artifact loaded in its runtime: call it on an LR array; :meth:`close` (or ``with``) frees it."""

    runner: Runner
    run: LoadedArtifact
    #: Runners tried first that could not load it here, each with why.
    skipped: list[str] = field(default_factory=list)

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        return self.run(lr)

    def close(self) -> None:
        close = getattr(self.run, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> OpenedArtifact:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class ArtifactLoadError(RuntimeError):
    """A runner that can run here failed to load the artifact (corrupt or not what it claims)."""

    def __init__(self, runner: Runner, path: str | Path, error: BaseException) -> None:
        super().__init__(f"{runner.name} cannot load {Path(path).name}: {one_line(error)}")
        self.runner = runner


def open_artifact(path: str | Path, target: Target | None = None,
                  runners: Sequence[Runner] | None = None) -> OpenedArtifact:
    """Load ``path`` in its runtime, by the one runner rule: the target's runners best first, the
    first available here, then the next when one cannot run it here after all (``RunnerUnavailable``
    at load, e.g. a page that cannot be served offline).

    ``target`` defaults to the one owning the suffix; ``runners`` replaces its list (tests). Raises
    ``RunnerUnavailable`` saying why none can run it here, ``ImportError`` for a missing runtime
    package, and :class:`ArtifactLoadError` when the artifact itself cannot be loaded.
    """
    target = target or target_for_path(path)
    if runners is None:
        candidates, why_not = usable_runners(target)
    else:
        candidates, why_not = list(runners), None
    if not candidates:
        raise RunnerUnavailable(f"cannot run {Path(path).name} here: {why_not}")
    skipped: list[str] = []
    for runner in candidates:
        try:
            return OpenedArtifact(runner, runner.load(path), skipped)
        except RunnerUnavailable as exc:
            skipped.append(f"{runner.name}: {one_line(exc)}")
        except ImportError:
            raise
        except Exception as exc:
            raise ArtifactLoadError(runner, path, exc) from exc
    raise RunnerUnavailable(f"cannot run {Path(path).name} here: {'; '.join(skipped)}")


def artifact_backends() -> dict[str, str]:
    """``carn-bench`` / ``carn-upscale`` backend name -> the target whose artifacts it runs."""
    targets = [get_target(name) for name in list_targets()]
    return {t.backend: t.name for t in targets if t.backend}


def run(artifact: str | Path, lr: np.ndarray) -> np.ndarray:
    """Run an exported artifact once: ``lr`` (1, 3, H, W) float32 in [0, 1] -> ``sr``.

    Loads the artifact on every call; ``open_artifact(p)`` loads it once to run many inputs.
    """
    with open_artifact(artifact) as opened:
        return opened(lr)

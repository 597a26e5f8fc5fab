"""Target registry: name -> adapter, discovered from the ``target_*.py`` modules of this package."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from ..plugins import import_modules_with_prefix
from .base import Target

_TARGETS: dict[str, Target] = {}
_discovered = False

T = TypeVar("T", bound=type[Target])


def register_target(cls: T) -> T:
    """Class decorator: make ``cls`` an export target under ``cls.name``."""
    if cls.name in _TARGETS and type(_TARGETS[cls.name]) is not cls:
        raise ValueError(f"target {cls.name!r} is registered twice")
    _TARGETS[cls.name] = cls()
    return cls


def _discover() -> None:
    # Target modules import their converters lazily, so this works without any extra installed.
    global _discovered
    if _discovered:
        return
    import_modules_with_prefix(__name__.rpartition(".")[0], Path(__file__).parent, "target_")
    _discovered = True


def list_targets() -> list[str]:
    """Names of every export target, in their listing order."""
    _discover()
    return [t.name for t in sorted(_TARGETS.values(), key=lambda t: (t.rank, t.name))]


def get_target(name: str) -> Target:
    """The target called ``name``; ``ValueError`` naming the known targets otherwise."""
    _discover()
    try:
        return _TARGETS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown target {name!r}; known targets: {', '.join(list_targets())}, all") from None


def target_for_suffix(suffix: str) -> Target:
    """The target writing artifacts with ``suffix`` (e.g. ``.pte``)."""
    _discover()
    for target in _TARGETS.values():
        if target.suffix == suffix.lower():
            return target
    raise ValueError(f"no export target writes {suffix!r} artifacts")

"""A registry of named plug-in objects whose modules are listed by name (as timm lists its models).

Listing the modules explicitly, instead of discovering files, makes a renamed or missing module
fail loudly at the first lookup rather than silently dropping what it defined.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
C = TypeVar("C", bound=type)


class PluginRegistry(Generic[T]):
    """Instances of registered classes by their ``name``; the listed ``modules`` register them on import."""

    def __init__(self, kind: str, package: str, modules: tuple[str, ...], order: Callable[[T], object]) -> None:
        self.kind, self.package, self.modules, self.order = kind, package, modules, order
        self._items: dict[str, T] = {}
        self._loaded = False

    def register(self, cls: C) -> C:
        """Class decorator: register an instance of ``cls`` under ``cls.name``."""
        name = cls.name  # type: ignore[attr-defined]
        if name in self._items and type(self._items[name]) is not cls:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = cls()
        return cls

    def _load(self) -> None:
        if not self._loaded:
            for module in self.modules:
                importlib.import_module(f"{self.package}.{module}")
            self._loaded = True

    def names(self) -> list[str]:
        """Every registered name, in the registry's order."""
        self._load()
        return [item.name for item in sorted(self._items.values(), key=self.order)]

    def get(self, name: str, known_suffix: str = "") -> T:
        """The item called ``name``; ``ValueError`` naming the known ones otherwise."""
        self._load()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(self.names()) + known_suffix
            raise ValueError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}") from None

"""Name -> builder registry for the model zoo (one place to look a model up by name)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers a builder under ``name`` (lower-case, unique)."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name.lower()
        if key in _BUILDERS:
            raise ValueError(f"model {name!r} is registered twice")
        _BUILDERS[key] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    """Names of every registered model builder, sorted."""
    return sorted(_BUILDERS)


def build_model(name: str, **overrides) -> nn.Module:
    """Build a registered model by name; keyword overrides go to its config.

    Raises ``ValueError`` naming the known models when ``name`` is unknown.
    """
    try:
        builder = _BUILDERS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None
    model = builder(**overrides)
    model.arch = name.lower()  # remembered for reports, manifests and saved weights
    return model

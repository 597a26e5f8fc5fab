"""Import optional dependencies where they are used, with an error that names the pip extra."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingDependencyError(ImportError):
    """An optional package is not installed; the message says which extra provides it."""


class UnsupportedPlatformError(MissingDependencyError):
    """The package is installed but cannot do the job on this platform (e.g. coremltools'
    Linux aarch64 wheel, which has no native libraries); ``--target all`` skips such a target."""


def install_hint(extra: str) -> str:
    """How to install an optional extra, for error messages (carn-mobile installs from its checkout)."""
    return f'pip install "carn-mobile[{extra}]" (from a checkout of the repository: pip install ".[{extra}]")'


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming ``extra``.

    ``purpose`` completes the sentence "... is needed for <purpose>".
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        hint = install_hint(extra)
        raise MissingDependencyError(
            f"{top} is needed for {purpose} but cannot be imported ({exc}); install it with: {hint}"
        ) from exc


def version_of(distribution: str) -> str | None:
    """Installed version of a distribution, or ``None`` when it is absent."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None

"""Plug-in discovery shared by the export-target and runtime registries."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path


def import_modules_with_prefix(package: str, folder: Path, prefix: str) -> None:
    """Import every module ``<package>.<prefix>*`` found in ``folder`` (they register themselves)."""
    for info in pkgutil.iter_modules([str(folder)]):
        if info.name.startswith(prefix):
            importlib.import_module(f"{package}.{info.name}")

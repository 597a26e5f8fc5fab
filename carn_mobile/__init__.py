"""carn-mobile: CARN and CARN-M super-resolution, from PyTorch to phones."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from . import upscale as upscale


def __getattr__(name: str) -> Any:
    # ``carn_mobile.upscale(...)`` without importing torch on ``import carn_mobile``: the
    # subpackage loads on first access and is itself callable (see carn_mobile/upscale).
    if name == "upscale":
        import importlib

        return importlib.import_module(".upscale", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

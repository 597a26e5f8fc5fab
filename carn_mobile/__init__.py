"""carn-mobile: CARN and CARN-M super-resolution, from PyTorch to phones."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def upscale(image: Any, scale: int = 4, model: Any = "carn-m", **options: Any) -> Any:
    """Super-resolve ``image`` (a Pillow image, NumPy array or path) by ``scale``; same kind back.

    A thin front for :func:`carn_mobile.upscaling.upscale` (see it for every option). It
    imports the upscaler, and with it torch, on first call, so ``import carn_mobile`` stays light.
    """
    from .upscaling.api import upscale as _upscale

    return _upscale(image, scale, model, **options)

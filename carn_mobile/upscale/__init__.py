"""Upscale real images with CARN / CARN-M: files, Pillow images and arrays, with exact tiling.

``carn_mobile.upscale`` is both this package and the function: calling the module runs
:func:`carn_mobile.upscale.api.upscale`::

    import carn_mobile
    big = carn_mobile.upscale(Image.open("photo.jpg"), scale=4)   # PIL in, PIL out
    path = carn_mobile.upscale("photo.jpg", scale=2)             # writes photo_x2.jpg

Modules: :mod:`.receptive_field` (how far a pixel sees), :mod:`.tiling` (exact tiles),
:mod:`.memory` (activation estimate, automatic tile size), :mod:`.imageio` (real files),
:mod:`.backends` (inference engines), :mod:`.api` (:class:`Upscaler`, :func:`upscale`),
:mod:`.batch` (files, folders and globs for the ``carn-upscale`` command).
"""

from __future__ import annotations

import inspect
import sys
import types

from .api import ApproximateTilingWarning, TilePlan, Upscaler, UpscaleReport, upscale
from .backends import Backend, TorchBackend, available_backends, create_backend
from .imageio import ImageData, ImageError, ImageTooLargeError, read_image, write_image
from .receptive_field import ReceptiveField, receptive_field

__all__ = [
    "ApproximateTilingWarning",
    "Backend",
    "ImageData",
    "ImageError",
    "ImageTooLargeError",
    "ReceptiveField",
    "TilePlan",
    "TorchBackend",
    "UpscaleReport",
    "Upscaler",
    "available_backends",
    "create_backend",
    "read_image",
    "receptive_field",
    "upscale",
    "write_image",
]


class _CallableModule(types.ModuleType):
    """Lets ``carn_mobile.upscale(image, ...)`` work although ``upscale`` is a subpackage.

    Importing a subpackage always binds it as an attribute of its parent, so the function
    could not keep the name; instead the module itself forwards calls to the function.
    """

    def __call__(self, *args, **kwargs):
        return upscale(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
__signature__ = inspect.signature(upscale)

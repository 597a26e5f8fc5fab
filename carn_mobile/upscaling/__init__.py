"""Upscale real images with CARN / CARN-M: files, Pillow images and arrays, with exact tiling.

``carn_mobile.upscale(image, scale=...)`` (a plain function at the package top) calls
:func:`carn_mobile.upscaling.api.upscale`::

    import carn_mobile
    big = carn_mobile.upscale(Image.open("photo.jpg"), scale=4)   # PIL in, PIL out
    path = carn_mobile.upscale("photo.jpg", scale=2)             # writes photo_x2.jpg

Modules: :mod:`.receptive_field` (how far a pixel sees), :mod:`.tiling` (exact tiles),
:mod:`.memory` (activation estimate, automatic tile size), :mod:`.image` (the pixel type),
:mod:`.image_read` / :mod:`.image_write` / :mod:`.png16` (real files), :mod:`.backends`
(inference engines), :mod:`.api` (:class:`Upscaler`, :func:`upscale`), :mod:`.batch` (files,
folders and globs for the ``carn-upscale`` command), :mod:`.video` / :mod:`.video_io` /
:mod:`.stages` (clips and frame streams; PyAV is imported only when a video is touched).
"""

from __future__ import annotations

from .api import ApproximateTilingWarning, TilePlan, Upscaler, UpscaleReport, upscale
from .backends import Backend, TorchBackend, available_backends, create_backend
from .image import ImageData, ImageError, ImageTooLargeError
from .image_read import read_image
from .image_write import write_image
from .receptive_field import ReceptiveField, receptive_field
from .video import VideoOptions, VideoReport, upscale_frames, upscale_video, upscale_video_file

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
    "VideoOptions",
    "VideoReport",
    "available_backends",
    "create_backend",
    "read_image",
    "receptive_field",
    "upscale",
    "upscale_frames",
    "upscale_video",
    "upscale_video_file",
    "write_image",
]


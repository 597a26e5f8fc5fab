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


def upscale_frames(frames: Any, scale: int = 4, model: Any = "carn-m", **options: Any) -> Any:
    """Upscale an iterable of frames (arrays or Pillow images) lazily; the same kind comes out.

    A thin front for :func:`carn_mobile.upscaling.video.upscale_frames`.
    """
    from .upscaling.video import upscale_frames as _upscale_frames

    return _upscale_frames(frames, scale, model, **options)


def upscale_video(src: Any, output: Any = None, scale: int = 4, model: Any = "carn-m", **options: Any) -> Any:
    """Upscale a video file (audio and subtitles copied); returns its report. Needs the ``video`` extra.

    A thin front for :func:`carn_mobile.upscaling.video.upscale_video`.
    """
    from .upscaling.video import upscale_video as _upscale_video

    return _upscale_video(src, output, scale, model, **options)

"""MATLAB-compatible bicubic resizing in pure NumPy.

The super-resolution literature builds its low-resolution inputs with MATLAB's
``imresize(img, 1/s, 'bicubic')``. Models are trained and evaluated on those exact
pixels, so a "close enough" bicubic (PIL, OpenCV, torch) shifts the reported PSNR.
This module reproduces MATLAB's algorithm step by step:

* cubic convolution kernel with ``a = -0.5`` (Keys);
* when shrinking, antialiasing stretches the kernel by ``1/scale`` and scales it by
  ``scale``, so every output pixel averages ``4/scale`` input pixels;
* output pixel ``x`` (1-based) is centred on input coordinate
  ``u = x/scale + 0.5*(1 - 1/scale)``;
* ``ceil(kernel_width) + 2`` taps starting at ``floor(u - kernel_width/2)``, weights
  normalised to sum to one for every output pixel;
* taps that fall outside the image take the nearest edge pixel (replicated border);
  this is what reproduces the reference LR files of Set5/Set14, whereas a mirrored
  border changes pixels within two rows/columns of the edge;
* the two dimensions are resized one after the other (the one with the smaller scale
  first, rows on a tie) and, for ``uint8`` input, the intermediate image is rounded
  and saturated to ``uint8`` after each pass, because MATLAB keeps the class.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["imresize", "modcrop", "bicubic_downscale"]

# MATLAB's bicubic kernel is 4 input pixels wide before antialiasing.
_KERNEL_WIDTH = 4.0


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5, written as MATLAB writes it.

    The polynomial is kept in MATLAB's operation order so that the float64 weights,
    and therefore the rounding of borderline pixels, come out the same.
    """
    absx = np.abs(x)
    absx2 = absx * absx
    absx3 = absx2 * absx
    near = (1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1.0)
    far = (-0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0) * ((absx > 1.0) & (absx <= 2.0))
    return near + far


def _contributions(in_len: int, out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Taps and weights of a one-dimensional resize.

    Returns ``(indices, weights)``, both of shape ``(out_len, taps)``: output pixel
    ``i`` is ``sum_k weights[i, k] * input[indices[i, k]]`` (0-based indices).
    """
    antialias = scale < 1.0
    kernel_width = _KERNEL_WIDTH / scale if antialias else _KERNEL_WIDTH

    x = np.arange(1, out_len + 1, dtype=np.float64)
    # Centre of each output pixel in 1-based input coordinates.
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = int(math.ceil(kernel_width)) + 2
    idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]

    dist = u[:, None] - idx
    if antialias:
        # Stretch the kernel to act as a low-pass filter at the output sampling rate.
        weights = scale * _cubic(scale * dist)
    else:
        weights = _cubic(dist)
    weights = weights / weights.sum(axis=1, keepdims=True)

    # Out-of-range taps read the nearest edge pixel (replicated border); converting
    # from MATLAB's 1-based coordinates to 0-based indices at the same time.
    indices = np.clip(idx.astype(np.int64) - 1, 0, in_len - 1)

    # Drop tap columns that are zero for every output pixel (MATLAB does the same);
    # they contribute exact zeros, so this only saves work.
    keep = np.any(weights != 0.0, axis=0)
    return indices[:, keep], weights[:, keep]


def _round_uint8(x: np.ndarray) -> np.ndarray:
    """Round half up and saturate, as MATLAB's conversion of a double to uint8."""
    return np.clip(np.floor(x + 0.5), 0.0, 255.0)


def _resize_axis(img: np.ndarray, axis: int, scale: float, out_len: int, quantize: bool) -> np.ndarray:
    """Resize float64 ``img`` along ``axis`` (0 or 1) to ``out_len`` samples."""
    indices, weights = _contributions(img.shape[axis], out_len, scale)
    moved = np.moveaxis(img, axis, 0)
    # Broadcast each tap's weight over the remaining axes (width and channels).
    bshape = (out_len,) + (1,) * (moved.ndim - 1)
    # Accumulate tap by tap, left to right: a fixed summation order, like a plain C
    # loop, and no (out_len, taps, ...) temporary as a single gather would need.
    out = np.zeros((out_len,) + moved.shape[1:], dtype=np.float64)
    for k in range(indices.shape[1]):
        out += weights[:, k].reshape(bshape) * moved[indices[:, k]]
    if quantize:
        out = _round_uint8(out)
    return np.moveaxis(out, 0, axis)


def imresize(img: np.ndarray, scale: float) -> np.ndarray:
    """Resize like MATLAB's ``imresize(img, scale, 'bicubic')``.

    Args:
        img: ``H x W`` or ``H x W x C`` array, ``uint8`` or floating point.
        scale: positive resize factor applied to both height and width; below 1
            shrinks (with antialiasing), above 1 enlarges.

    Returns:
        An array of shape ``ceil(H*scale) x ceil(W*scale) [x C]``: ``uint8`` for
        ``uint8`` input (rounded and saturated after each of the two passes, as
        MATLAB does), otherwise ``float64`` with no rounding or clipping.

    Raises:
        TypeError: for dtypes other than ``uint8`` and floating point.
        ValueError: for a non-positive scale or an image that is not 2-D or 3-D.
    """
    img = np.asarray(img)
    if img.ndim not in (2, 3):
        raise ValueError(f"expected an HxW or HxWxC image, got shape {img.shape}")
    if img.dtype == np.uint8:
        quantize = True
    elif np.issubdtype(img.dtype, np.floating):
        quantize = False
    else:
        raise TypeError(f"expected uint8 or floating-point image, got dtype {img.dtype}")
    scale = float(scale)
    if not math.isfinite(scale) or scale <= 0.0:
        raise ValueError(f"scale must be a positive finite number, got {scale}")

    out_h = int(math.ceil(img.shape[0] * scale))
    out_w = int(math.ceil(img.shape[1] * scale))
    out = img.astype(np.float64)
    # Both factors are equal, so MATLAB's ordering rule (smaller scale first, rows on
    # a tie) always resizes the height first.
    out = _resize_axis(out, 0, scale, out_h, quantize)
    out = _resize_axis(out, 1, scale, out_w, quantize)
    return out.astype(np.uint8) if quantize else out


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop height and width down to multiples of ``scale``, keeping the top-left corner."""
    scale = int(scale)
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    img = np.asarray(img)
    if img.ndim < 2:
        raise ValueError(f"expected an image with at least 2 dimensions, got shape {img.shape}")
    h = img.shape[0] - img.shape[0] % scale
    w = img.shape[1] - img.shape[1] % scale
    return img[:h, :w, ...]


def bicubic_downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """Make the low-resolution image the SR benchmarks use: ``imresize(modcrop(hr, s), 1/s)``.

    Args:
        hr: ``uint8`` high-resolution image (``H x W x 3``; other channel counts work too).
        scale: integer downscaling factor, e.g. 2, 3 or 4.

    Returns:
        ``uint8`` array of shape ``(H//scale, W//scale, C)``.
    """
    hr = np.asarray(hr)
    if hr.dtype != np.uint8:
        raise TypeError(f"bicubic_downscale expects a uint8 image, got dtype {hr.dtype}")
    return imresize(modcrop(hr, scale), 1.0 / int(scale))

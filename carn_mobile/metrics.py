"""Super-resolution quality metrics as pure NumPy functions.

The conventions follow the evaluation code of the SR literature (CARN, EDSR, BasicSR):
images are ``uint8`` RGB, compared on the luma channel Y of MATLAB's ``rgb2ycbcr``
(BT.601, studio range, left unrounded), with ``scale`` pixels cropped from every
border. SSIM is Wang et al.'s (2004) reference formulation: 11x11 Gaussian window with
sigma 1.5, statistics over 'valid' positions only, mean of the SSIM map.

Every function is stateless and computes in float64.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from carn_mobile.imresize import modcrop

__all__ = [
    "rgb_to_y",
    "crop_border",
    "psnr",
    "ssim",
    "evaluate_pair",
    "to_uint8",
]

# BT.601 luma row of MATLAB's rgb2ycbcr, for R, G, B scaled to [0, 1]; the result
# is in 0..255 units with 16 as black and 235 as white.
_Y_COEFFS = np.array([65.481, 128.553, 24.966], dtype=np.float64)
_Y_OFFSET = 16.0

# SSIM constants of the reference implementation (K1 = 0.01, K2 = 0.03, L = 255).
_SSIM_C1 = (0.01 * 255.0) ** 2
_SSIM_C2 = (0.03 * 255.0) ** 2
_SSIM_WIN = 11
_SSIM_SIGMA = 1.5


def _check_same_shape(img1: np.ndarray, img2: np.ndarray) -> None:
    if img1.shape != img2.shape:
        raise ValueError(f"image shapes differ: {img1.shape} vs {img2.shape}")


def _check_image(img: np.ndarray) -> None:
    if img.ndim not in (2, 3):
        raise ValueError(f"expected an HxW or HxWxC image, got shape {img.shape}")


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """Luma Y of an RGB image, as MATLAB's ``rgb2ycbcr`` computes it before rounding.

    Args:
        img: ``H x W x 3`` RGB array, ``uint8`` or float with values in ``[0, 255]``.

    Returns:
        ``H x W`` float64 array in 0..255 units (16 for black, 235 for white), not
        rounded: the SR evaluation code measures on the unrounded Y.
    """
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {img.shape}")
    # MATLAB scales to [0, 1] first and applies the coefficients there.
    return (img.astype(np.float64) / 255.0) @ _Y_COEFFS + _Y_OFFSET


def crop_border(img: np.ndarray, border: int) -> np.ndarray:
    """Remove ``border`` pixels from each side of the first two (spatial) axes."""
    border = int(border)
    if border < 0:
        raise ValueError(f"border must be non-negative, got {border}")
    img = np.asarray(img)
    if border == 0:
        return img
    if 2 * border >= img.shape[0] or 2 * border >= img.shape[1]:
        raise ValueError(f"cannot crop {border} pixels from each side of an image of shape {img.shape}")
    return img[border:-border, border:-border, ...]


def _prepare(img1: np.ndarray, img2: np.ndarray, crop: int, y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Validate a pair, optionally convert to Y, crop, and return float64 copies."""
    img1 = np.asarray(img1)
    img2 = np.asarray(img2)
    _check_same_shape(img1, img2)
    _check_image(img1)
    # Y only makes sense for RGB; a single-channel image is already "the" channel.
    if y_channel and img1.ndim == 3 and img1.shape[2] == 3:
        a, b = rgb_to_y(img1), rgb_to_y(img2)
    else:
        a, b = img1.astype(np.float64), img2.astype(np.float64)
    return crop_border(a, crop), crop_border(b, crop)


def psnr(
    img1: np.ndarray,
    img2: np.ndarray,
    *,
    crop: int = 0,
    y_channel: bool = True,
    data_range: float = 255.0,
) -> float:
    """Peak signal-to-noise ratio in dB.

    Args:
        img1, img2: images of the same shape, ``H x W x 3`` RGB or ``H x W``, in
            0..255 units (usually ``uint8``).
        crop: pixels removed from every border before measuring.
        y_channel: measure on MATLAB's BT.601 luma instead of all channels (RGB input).
        data_range: peak signal value.

    Returns:
        ``10*log10(data_range**2 / MSE)``; ``inf`` for identical images.
    """
    a, b = _prepare(img1, img2, crop, y_channel)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return float("inf")
    return 10.0 * math.log10(data_range**2 / mse)


def _gaussian_1d(size: int = _SSIM_WIN, sigma: float = _SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian; its outer product is MATLAB's ``fspecial('gaussian')``."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """2-D 'valid' correlation of ``img`` (H x W) with the separable kernel ``g x g``."""
    n = g.size
    # Rows then columns; the window is symmetric, so correlation equals convolution.
    rows = sliding_window_view(img, n, axis=0) @ g
    return sliding_window_view(rows, n, axis=1) @ g


def _ssim_single(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two single-channel float64 images."""
    if a.shape[0] < _SSIM_WIN or a.shape[1] < _SSIM_WIN:
        raise ValueError(f"SSIM needs images of at least {_SSIM_WIN}x{_SSIM_WIN} pixels, got {a.shape}")
    g = _gaussian_1d()
    mu1 = _filter_valid(a, g)
    mu2 = _filter_valid(b, g)
    mu1_sq = mu1 * mu1
    mu2_sq = mu2 * mu2
    mu12 = mu1 * mu2
    sigma1_sq = _filter_valid(a * a, g) - mu1_sq
    sigma2_sq = _filter_valid(b * b, g) - mu2_sq
    sigma12 = _filter_valid(a * b, g) - mu12
    num = (2.0 * mu12 + _SSIM_C1) * (2.0 * sigma12 + _SSIM_C2)
    den = (mu1_sq + mu2_sq + _SSIM_C1) * (sigma1_sq + sigma2_sq + _SSIM_C2)
    return float(np.mean(num / den))


def ssim(img1: np.ndarray, img2: np.ndarray, *, crop: int = 0, y_channel: bool = True) -> float:
    """Structural similarity as in Wang et al.'s MATLAB reference (``ssim_index.m``).

    Args:
        img1, img2: images of the same shape, ``H x W x C`` or ``H x W``, in 0..255
            units (usually ``uint8``).
        crop: pixels removed from every border before measuring.
        y_channel: measure on MATLAB's BT.601 luma (RGB input). Otherwise each
            channel is measured separately and the results are averaged.

    Returns:
        Mean of the SSIM map (1.0 for identical images). The constants assume a
        0..255 data range.
    """
    a, b = _prepare(img1, img2, crop, y_channel)
    if a.ndim == 2:
        return _ssim_single(a, b)
    return float(np.mean([_ssim_single(a[..., c], b[..., c]) for c in range(a.shape[2])]))


def evaluate_pair(sr: np.ndarray, hr: np.ndarray, scale: int) -> tuple[float, float]:
    """PSNR and SSIM of a super-resolved image under the paper protocol.

    Both images are ``uint8`` RGB. ``hr`` may be the uncropped original: it is
    modcropped by ``scale`` when its size differs from ``sr``. The metrics are taken
    on the Y channel with ``scale`` pixels cropped from each border.

    Returns:
        ``(psnr_db, ssim)``.

    Raises:
        ValueError: if the shapes cannot be reconciled, or the inputs are not uint8.
    """
    sr = np.asarray(sr)
    hr = np.asarray(hr)
    if sr.dtype != np.uint8 or hr.dtype != np.uint8:
        raise ValueError(f"evaluate_pair expects uint8 images, got {sr.dtype} and {hr.dtype}")
    if hr.shape != sr.shape:
        cropped = modcrop(hr, scale)
        if cropped.shape != sr.shape:
            raise ValueError(
                f"SR shape {sr.shape} does not match HR shape {hr.shape} (modcropped by {scale}: {cropped.shape})"
            )
        hr = cropped
    return (
        psnr(sr, hr, crop=scale, y_channel=True),
        ssim(sr, hr, crop=scale, y_channel=True),
    )


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Quantise a float image in ``[0, 1]`` to ``uint8``: clamp, scale by 255, round half up."""
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    return np.floor(x * 255.0 + 0.5).astype(np.uint8)

"""A procedurally generated, natural-looking RGB test image (no third-party pixels).

It mixes what super-resolution finds hard and what it finds easy: smooth sky-like
gradients, soft shading, anti-aliased edges of solid shapes, fractal noise texture (grass,
rock) and fine periodic stripes. The picture is defined in continuous coordinates, so it
looks alike at every size, and it is fully deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np


def _value_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Smoothly interpolated random values on a ``cells`` x ``cells`` lattice, in [0, 1]."""
    grid = rng.random((cells + 1, cells + 1))
    y = np.linspace(0.0, cells, h, endpoint=False)[:, None]
    x = np.linspace(0.0, cells, w, endpoint=False)[None, :]
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = y - y0, x - x0
    fy, fx = fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)  # smoothstep: no lattice creases
    top = grid[y0, x0] * (1 - fx) + grid[y0, x0 + 1] * fx
    bottom = grid[y0 + 1, x0] * (1 - fx) + grid[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _fractal_noise(rng: np.random.Generator, h: int, w: int, octaves: int = 5) -> np.ndarray:
    out = np.zeros((h, w))
    amplitude, total = 1.0, 0.0
    for i in range(octaves):
        out += amplitude * _value_noise(rng, h, w, 2 ** (i + 2))
        total += amplitude
        amplitude *= 0.55
    return out / total


def _coverage(signed_distance: np.ndarray, pixel: float) -> np.ndarray:
    """Anti-aliased inside-ness from a signed distance (negative inside), one pixel wide."""
    return np.clip(0.5 - signed_distance / pixel, 0.0, 1.0)


def natural_test_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """An ``height x width x 3`` float32 RGB image in [0, 1]; the same for the same arguments."""
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    rng = np.random.default_rng(seed)
    y = (np.arange(height)[:, None] + 0.5) / height  # 0 at the top, 1 at the bottom
    x = (np.arange(width)[None, :] + 0.5) / width
    pixel = 1.0 / min(height, width)

    # Sky: blue to pale haze towards the horizon, with soft cloud noise.
    sky = np.stack(
        [0.35 + 0.45 * y, 0.55 + 0.35 * y, 0.85 + 0.1 * y], axis=-1
    ) * np.ones((1, width, 1))
    clouds = np.clip(_fractal_noise(rng, height, width, 4) * 1.6 - 0.7, 0.0, 1.0)[..., None]
    image = sky * (1 - 0.6 * clouds) + 0.95 * 0.6 * clouds

    # Ground below a wavy horizon: textured green-brown with fractal grass noise.
    horizon = 0.55 + 0.05 * np.sin(2 * np.pi * (1.3 * x + rng.random()))
    ground_mask = _coverage(horizon - y, pixel)[..., None]
    grass = _fractal_noise(rng, height, width, 5)[..., None]
    ground = np.concatenate([0.25 + 0.3 * grass, 0.4 + 0.35 * grass, 0.12 + 0.15 * grass], axis=-1)
    ground = ground * (0.75 + 0.25 * y[..., None])  # lighter towards the viewer
    image = image * (1 - ground_mask) + ground * ground_mask

    # A shaded disc (sun-lit ball) with a hard silhouette and a smooth highlight.
    cy, cx, r = 0.62, 0.3, 0.16
    sy, sx = height * pixel, width * pixel  # distances in units of the shorter side: a round disc
    dist = np.hypot((y - cy) * sy, (x - cx) * sx)
    ball = _coverage(dist - r, pixel)[..., None]
    spot = np.hypot((y - cy + 0.06) * sy, (x - cx + 0.06) * sx)
    light = np.clip(1.0 - spot / (1.3 * r), 0.0, 1.0)[..., None]
    ball_colour = np.array([0.75, 0.2, 0.15]) * (0.35 + 0.65 * light) + 0.25 * light**8
    image = image * (1 - ball) + ball_colour * ball

    # A rotated rectangle (a "house wall") with fine horizontal siding stripes.
    angle = 0.25
    u = (x - 0.7) * np.cos(angle) + (y - 0.55) * np.sin(angle)
    v = -(x - 0.7) * np.sin(angle) + (y - 0.55) * np.cos(angle)
    wall = _coverage(np.maximum(np.abs(u) - 0.15, np.abs(v) - 0.12), pixel)[..., None]
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * v / (3.2 * pixel))[..., None]
    wall_colour = np.array([0.85, 0.8, 0.65]) * (0.8 + 0.2 * stripes)
    image = image * (1 - wall) + wall_colour * wall

    # A thin dark diagonal line (a wire): a one-to-two pixel wide high-contrast edge.
    line = _coverage(np.abs((y - 0.1) - 0.35 * x) - 0.8 * pixel, pixel)[..., None]
    image = image * (1 - 0.8 * line) + 0.05 * 0.8 * line

    # Mild sensor-like noise so flat areas are not perfectly flat.
    image = image + rng.normal(0.0, 0.01, image.shape)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def natural_test_image_uint8(height: int, width: int, seed: int = 0) -> np.ndarray:
    """:func:`natural_test_image` rounded to uint8 RGB (for saving or viewing)."""
    return np.rint(natural_test_image(height, width, seed) * 255.0).astype(np.uint8)

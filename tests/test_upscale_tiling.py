"""Receptive field from the architecture, and tiled == untiled (max abs diff <= 1e-5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from carn_mobile.imresize import imresize
from carn_mobile.models import build_model, carn, carn_m
from carn_mobile.upscaling.api import ALPHA_OVERLAP, Upscaler
from carn_mobile.upscaling.backends import TorchBackend
from carn_mobile.upscaling.image import ImageData
from carn_mobile.upscaling.memory import MIN_AUTO_TILE, auto_tile, estimate_bytes
from carn_mobile.upscaling.receptive_field import receptive_field
from carn_mobile.upscaling.tiling import Tile, core_tile, plan_fixed_tiles, plan_tiles, run_tiled, split, split_fixed
from carn_mobile.weights import load_model

TOL = 1e-5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("carn-m", channels=8, groups=4).eval()


def _network(backend: TorchBackend):
    return lambda t: backend.run(np.ascontiguousarray(t.transpose(2, 0, 1)[None]))[0].transpose(1, 2, 0)


def _tiled_vs_full(backend: TorchBackend, lr: np.ndarray, tile: int, overlap: int | None = None) -> float:
    s = backend.scale
    ov = receptive_field(backend.config, s).overlap if overlap is None else overlap
    h, w = lr.shape[:2]
    full = run_tiled(_network(backend), lr, s, plan_tiles(h, w, None, ov), 3)
    tiled = run_tiled(_network(backend), lr, s, plan_tiles(h, w, tile, ov), 3)
    return float(np.abs(tiled - full).max())


# ----------------------------------------------------------------------------- receptive field


@pytest.mark.parametrize("builder", [carn, carn_m])
def test_receptive_field_numbers(builder):
    model = builder()
    got = {s: receptive_field(model, s) for s in (2, 3, 4)}
    # entry + 3 blocks x 3 units x 2 convs + first upsampler conv = 20 LR convs, then
    # x2: exit at HR (1/2); x3: exit (1/3); x4: second upsampler conv at 2x (1/2) + exit (1/4).
    assert {s: float(r.radius) for s, r in got.items()} == pytest.approx({2: 20.5, 3: 20 + 1 / 3, 4: 20.75})
    assert {s: r.lr_convs for s, r in got.items()} == {2: 20, 3: 20, 4: 20}
    assert {s: r.overlap for s, r in got.items()} == {2: 21, 3: 21, 4: 21}
    assert got[4].hr_conv_factors == (2, 4)


@pytest.mark.parametrize(
    "overrides",
    [{}, {"num_blocks": 2, "units_per_block": 1}, {"num_blocks": 1, "units_per_block": 4, "scales": (2, 3, 4, 8)}],
)
def test_overlap_is_ceil_of_radius(overrides):
    model = build_model("carn-m", channels=8, groups=4, **overrides)
    for s in model.scales:
        rf = receptive_field(model, s)
        assert rf.overlap == math.ceil(rf.radius)
        assert rf.margins[0] == rf.margins[1] == rf.overlap


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_receptive_field_is_tight(scale):
    """The gradient of one LR pixel's HR outputs reaches exactly ``overlap`` LR pixels each way."""
    model = load_model("carn-m").double()
    n, c = 2 * 21 + 9, 25
    x = torch.rand(1, 3, n, n, dtype=torch.float64, requires_grad=True)
    y = model(x, scale)
    # every HR pixel of LR pixel (c, c): all sub-pixel phases
    y[0, :, c * scale : (c + 1) * scale, c * scale : (c + 1) * scale].sum().backward()
    rows = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 3))).flatten()
    cols = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 2))).flatten()
    ov = receptive_field(model, scale).overlap
    assert (c - rows.min().item(), rows.max().item() - c) == (ov, ov)
    assert (c - cols.min().item(), cols.max().item() - c) == (ov, ov)


# ----------------------------------------------------------------------------- tile plans


@given(length=st.integers(1, 300), tile=st.integers(1, 300))
@settings(max_examples=60, deadline=None)
def test_split_covers_in_near_equal_parts(length, tile):
    parts = split(length, tile)
    assert parts[0][0] == 0 and parts[-1][1] == length
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))
    sizes = [b - a for a, b in parts]
    assert max(sizes) <= tile and max(sizes) - min(sizes) <= 1 and len(parts) == math.ceil(length / tile)


def test_plan_tiles_clips_to_the_image():
    tiles = plan_tiles(10, 25, 8, 3)
    assert len(tiles) == 2 * 4
    for t in tiles:
        assert 0 <= t.y0 <= t.core_y0 < t.core_y1 <= t.y1 <= 10
        assert 0 <= t.x0 <= t.core_x0 < t.core_x1 <= t.x1 <= 25
        assert t.core_y0 - t.y0 == min(3, t.core_y0) and t.y1 - t.core_y1 == min(3, 10 - t.core_y1)
    assert plan_tiles(10, 25, None, 3) == [Tile(0, 10, 0, 25, 0, 10, 0, 25)]


@given(length=st.integers(1, 400), box=st.integers(1, 160), overlap=st.integers(0, 40))
@settings(max_examples=200, deadline=None)
def test_fixed_boxes_keep_their_size_and_cover_with_the_fewest(length, box, overlap):
    if length < box or box <= 2 * overlap:
        with pytest.raises(ValueError, match=str(box)):
            split_fixed(length, box, overlap)
        return
    spans = split_fixed(length, box, overlap)
    assert spans[0][1] == 0 and spans[-1][2] == length
    assert all(a[2] == b[1] for a, b in zip(spans, spans[1:], strict=False))  # cores partition the side
    for b0, c0, c1 in spans:
        assert 0 <= b0 and b0 + box <= length and c0 < c1
        # each core sees `overlap` pixels around it inside its box, or the image border
        assert c0 - b0 >= overlap or b0 == 0
        assert b0 + box - c1 >= overlap or b0 + box == length
    assert len(spans) == max(1, math.ceil((length - 2 * overlap) / (box - 2 * overlap)))
    inner = [c1 - c0 for _, c0, c1 in spans[1:-1]]
    assert not inner or max(inner) - min(inner) <= 1


def test_fixed_plan_refuses_what_a_fixed_model_cannot_read():
    with pytest.raises(ValueError, match="image side of 100 px is smaller than the fixed tile of 128 px"):
        plan_fixed_tiles(100, 300, 128, 128, 21)
    with pytest.raises(ValueError, match="image side of 90 px is smaller than the fixed tile of 96 px"):
        plan_fixed_tiles(300, 90, 128, 96, 21)
    with pytest.raises(ValueError, match="fixed tile of 42 px leaves no core after an overlap of 21"):
        plan_fixed_tiles(300, 300, 42, 42, 21)
    assert plan_fixed_tiles(128, 128, 128, 128, 21) == [Tile(0, 128, 0, 128, 0, 128, 0, 128)]


def test_core_tile_keeps_boxes_inside_the_artifacts_side():
    assert core_tile(150, 90, None, 21, 64) == 22
    assert core_tile(150, 90, 10, 21, 64) == 10
    assert core_tile(60, 40, None, 21, 64) is None and core_tile(60, 40, 80, 21, None) is None
    with pytest.raises(ValueError, match="up to 40 leaves no core after an overlap of 21"):
        core_tile(150, 90, None, 21, 40)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_fixed_size_tiles_equal_untiled_shipped_model(scale):
    """Boxes of one size, shifted inward at the border, rebuild the whole-image output."""
    backend = TorchBackend(load_model("carn-m"), scale)
    lr = np.random.default_rng(scale).random((61, 95, 3), dtype=np.float32)
    full = run_tiled(_network(backend), lr, scale, plan_tiles(61, 95, None, 21), 3)
    tiles = plan_fixed_tiles(61, 95, 48, 56, 21)
    assert {(t.y1 - t.y0, t.x1 - t.x0) for t in tiles} == {(48, 56)} and len(tiles) == 4 * 4
    tiled = run_tiled(_network(backend), lr, scale, tiles, 3)
    assert np.abs(tiled - full).max() <= TOL
    short = run_tiled(_network(backend), lr, scale, plan_fixed_tiles(61, 95, 48, 56, 8), 3)
    assert np.abs(short - full).max() > 1e-3  # too little overlap: the seams show


# ----------------------------------------------------------------------------- equality


@given(
    h=st.integers(2, 40),
    w=st.integers(2, 40),
    tile=st.integers(3, 24),
    scale=st.sampled_from([2, 3, 4]),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=15, deadline=None)
def test_tiled_equals_untiled_random_sizes(h, w, tile, scale, seed):
    backend = TorchBackend(_tiny(), scale)
    lr = np.random.default_rng(seed).random((h, w, 3), dtype=np.float32)
    assert _tiled_vs_full(backend, lr, tile) <= TOL


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("size", [(29, 41), (19, 26)])
def test_tiled_equals_untiled_shipped_model(scale, size):
    backend = TorchBackend(load_model("carn-m"), scale)
    lr = np.random.default_rng(scale).random((*size, 3), dtype=np.float32)
    for tile in (7, 16):
        assert _tiled_vs_full(backend, lr, tile) <= TOL, tile


def test_upscaler_tiles_rgba_gray_and_16bit_exactly():
    rng = np.random.default_rng(7)
    model = _tiny(3)
    whole = Upscaler(3, model, tile=None)
    tiled = Upscaler(3, model, tile=6)
    for px, alpha in [
        (rng.random((23, 17, 3), dtype=np.float32), rng.random((23, 17), dtype=np.float32)),
        (rng.random((23, 17, 1), dtype=np.float32), None),
    ]:
        a, _ = whole.upscale_data(ImageData(px, alpha))
        b, report = tiled.upscale_data(ImageData(px, alpha))
        assert report.tiles == 12 and report.tile == 6 and not report.auto_tiled
        assert np.abs(a.pixels - b.pixels).max() <= TOL
        if alpha is not None:
            assert np.abs(a.alpha - b.alpha).max() <= 1e-12
            want = np.clip(imresize(alpha.astype(np.float64), 3), 0, 1)
            assert np.abs(a.alpha - want).max() <= 1e-6
    u16 = rng.integers(0, 65536, (15, 21, 3), dtype=np.uint16)
    a, _ = whole.upscale_data(ImageData(u16))
    b, _ = tiled.upscale_data(ImageData(u16))
    assert a.pixels.dtype == np.uint16 and np.abs(a.pixels.astype(int) - b.pixels.astype(int)).max() <= 1


def test_alpha_overlap_suffices_for_bicubic():
    alpha = np.random.default_rng(0).random((13, 11, 1), dtype=np.float32)
    fn = lambda t: imresize(t[..., 0].astype(np.float64), 4)[..., None].astype(np.float32)  # noqa: E731
    full = run_tiled(fn, alpha, 4, plan_tiles(13, 11, None, ALPHA_OVERLAP), 1)
    for tile in (1, 2, 5):
        tiled = run_tiled(fn, alpha, 4, plan_tiles(13, 11, tile, ALPHA_OVERLAP), 1)
        assert np.abs(tiled - full).max() <= 1e-6


# ----------------------------------------------------------------------------- automatic tiles


def test_auto_tile_respects_the_budget():
    cfg = carn_m().config
    assert auto_tile(cfg, 4, 180, 320, 21, 64 << 30) is None
    budget = 256 << 20
    t = auto_tile(cfg, 4, 180, 320, 21, budget)
    assert t is not None and MIN_AUTO_TILE <= t < 320
    assert estimate_bytes(cfg, 4, t + 42, t + 42) <= budget < estimate_bytes(cfg, 4, t + 43, t + 43)
    assert auto_tile(cfg, 4, 180, 320, 21, 1 << 20) == MIN_AUTO_TILE  # tiny budget: the floor


def test_upscaler_says_when_it_tiles_automatically():
    up = Upscaler(2, _tiny(), max_memory="1M")
    out, report = up.upscale_data(ImageData(np.zeros((60, 70, 3), np.uint8)))
    assert report.auto_tiled and report.tiles > 1
    assert any(n.startswith("tiling automatically") and "overlap 21" in n for n in report.notes)
    _, report = Upscaler(2, _tiny()).upscale_data(ImageData(np.zeros((60, 70, 3), np.uint8)))
    assert not report.auto_tiled and report.tiles == 1 and report.notes == []

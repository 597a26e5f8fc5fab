"""carn_mobile.train.patches: LR cache, aligned patches, augmentation, determinism, shards, clear errors."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from carn_mobile.imresize import bicubic_downscale
from carn_mobile.train import DataError, PatchBatches, TrainImages, scale_for_step
from carn_mobile.train import patches as patches_mod


def _write_images(folder: Path, sizes: list[tuple[int, int]], seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"img{i:02d}.png")
    return folder


def test_lr_images_are_the_matlab_bicubic(tmp_path) -> None:
    d = _write_images(tmp_path / "hr", [(50, 61), (64, 64)])
    images = TrainImages([d], (2, 3), patch_size=8)
    for im in images.images:
        for s in (2, 3):
            np.testing.assert_array_equal(im.lr[s], bicubic_downscale(im.hr, s))


def _nhwc(*batches):
    return tuple(b.permute(0, 2, 3, 1).numpy() for b in batches)


def _find(big: np.ndarray, patch: np.ndarray) -> list[tuple[int, int]]:
    p = patch.shape[0]
    return [
        (y, x)
        for y in range(big.shape[0] - p + 1)
        for x in range(big.shape[1] - p + 1)
        if np.array_equal(big[y : y + p, x : x + p], patch)
    ]


@pytest.mark.parametrize("augment", [False, True])
def test_patches_are_aligned_and_augmented_consistently(tmp_path, augment) -> None:
    d = _write_images(tmp_path / "hr", [(36, 45)])
    s, p = 3, 5
    images = TrainImages([d], (s,), patch_size=p)
    im = images.images[0]
    lr, hr = _nhwc(*images.pack().sample(np.random.default_rng(1), s, 24, augment))
    assert lr.shape == (24, p, p, 3) and hr.shape == (24, p * s, p * s, 3)
    seen = set()
    for a, b in zip(lr, hr, strict=True):
        # Undo each of the 8 flips/rotations: one of them puts both patches back in
        # place, and the HR patch sits at s times the LR position.
        hits = []
        for flip in (False, True):
            for k in range(4):
                la, hb = np.rot90(a, -k), np.rot90(b, -k)
                if flip:
                    la, hb = la[:, ::-1], hb[:, ::-1]
                for y, x in _find(im.lr[s], la):
                    if np.array_equal(im.hr[y * s : (y + p) * s, x * s : (x + p) * s], hb):
                        hits.append((flip, k))
        assert hits, "LR and HR patches do not match the same place and transform"
        seen.update(hits)
    if augment:
        assert len(seen) > 4  # several of the 8 transforms were drawn
    else:
        assert seen == {(False, 0)}


def test_batches_depend_only_on_seed_step_and_rank(tmp_path) -> None:
    d = _write_images(tmp_path / "hr", [(48, 48), (40, 56), (64, 40)])
    images = TrainImages([d], (2, 3, 4), patch_size=6)
    a = PatchBatches(images, 4, seed=7)
    b = PatchBatches(images, 4, seed=7)
    for step in (5, 0, 3, 5):  # any order: no hidden sampler state
        sa, la, ha = a[step]
        sb, lb, hb = b[step]
        assert sa == sb and la.equal(lb) and ha.equal(hb)
        assert la.shape == (4, 3, 6, 6) and ha.shape == (4, 3, 6 * sa, 6 * sa)
    other_rank = PatchBatches(images, 4, seed=7, rank=1)
    assert other_rank[5][0] == a[5][0]  # same scale on every rank ...
    assert not other_rank[5][1].equal(a[5][1])  # ... different patches
    assert not PatchBatches(images, 4, seed=8)[5][1].equal(a[5][1])


def _reference_patches(images: TrainImages, rng: np.random.Generator, scale: int, count: int, augment: bool):
    """A per-patch loop with numpy's flips and rotations, drawing the same numbers in the same order."""
    p = images.patch_size
    pool = images.eligible[scale]
    picks = pool[rng.integers(len(pool), size=count)]
    ys = rng.integers(0, np.array([images.images[i].lr[scale].shape[0] - p + 1 for i in picks]))
    xs = rng.integers(0, np.array([images.images[i].lr[scale].shape[1] - p + 1 for i in picks]))
    flips, turns = rng.integers(0, 2, size=count), rng.integers(0, 4, size=count)
    lrs, hrs = [], []
    for n, i in enumerate(picks):
        y, x = int(ys[n]), int(xs[n])
        lr = images.images[i].lr[scale][y : y + p, x : x + p]
        hr = images.images[i].hr[y * scale : (y + p) * scale, x * scale : (x + p) * scale]
        if augment:
            if flips[n]:
                lr, hr = lr[:, ::-1], hr[:, ::-1]
            lr, hr = np.rot90(lr, turns[n]), np.rot90(hr, turns[n])
        lrs.append(lr)
        hrs.append(hr)
    return np.stack(lrs), np.stack(hrs)


@pytest.mark.parametrize("augment", [False, True])
def test_the_batched_gather_equals_a_per_patch_loop(tmp_path, augment) -> None:
    # Different sizes (zero padding in the packed tensors) and non-square images, every scale.
    d = _write_images(tmp_path / "hr", [(60, 45), (37, 70), (48, 48)])
    images = TrainImages([d], (2, 3, 4), patch_size=7)
    packed = images.pack()
    for scale in (2, 3, 4):
        got = _nhwc(*packed.sample(np.random.default_rng(scale), scale, 40, augment))
        want = _reference_patches(images, np.random.default_rng(scale), scale, 40, augment)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)


def test_one_scale_per_step_drawn_uniformly() -> None:
    counts = Counter(scale_for_step(0, t, (2, 3, 4)) for t in range(3000))
    assert set(counts) == {2, 3, 4}
    assert all(900 < c < 1100 for c in counts.values())
    assert {scale_for_step(0, t, (4,)) for t in range(10)} == {4}


def test_ranks_get_disjoint_shards(tmp_path) -> None:
    d = _write_images(tmp_path / "hr", [(32, 32)] * 5)
    shards = [TrainImages([d], (2,), 8, rank=r, world_size=2).files for r in (0, 1)]
    assert len(shards[0]) == 3 and len(shards[1]) == 2
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == sorted(d.iterdir())
    with pytest.raises(DataError, match="cannot be shared by 8 processes"):
        TrainImages([d], (2,), 8, rank=0, world_size=8)


def test_lr_cache_is_reused(tmp_path, monkeypatch) -> None:
    d = _write_images(tmp_path / "hr", [(40, 44), (30, 36)])
    cache = tmp_path / "cache"
    first = TrainImages([d], (2, 4), 4, cache_dir=cache)
    assert len(list(cache.glob("*.npy"))) == 4

    def fail(*_a, **_k):
        raise AssertionError("bicubic recomputed despite the cache")

    monkeypatch.setattr(patches_mod, "bicubic_downscale", fail)
    second = TrainImages([d], (2, 4), 4, cache_dir=cache)
    for a, b in zip(first.images, second.images, strict=True):
        for s in (2, 4):
            np.testing.assert_array_equal(a.lr[s], b.lr[s])


def test_small_images_are_left_out_of_large_scales(tmp_path) -> None:
    d = _write_images(tmp_path / "hr", [(40, 40), (100, 100)])
    images = TrainImages([d], (2, 4), patch_size=16)  # x4 needs 64x64 HR
    assert images.skipped == {2: 0, 4: 1}
    assert list(images.eligible[4]) == [1]
    lr, hr = images.pack().sample(np.random.default_rng(0), 4, 3, True)
    assert hr.shape == (3, 3, 64, 64)


def test_missing_empty_and_too_small_data_fail_clearly(tmp_path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        TrainImages([tmp_path / "nope"], (2,), 8)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="holds no images"):
        TrainImages([tmp_path / "empty"], (2,), 8)
    d = _write_images(tmp_path / "small", [(30, 40)])
    with pytest.raises(DataError, match=r"patch size 16 at x2 needs HR images of at least 32x32.*img00.png, 40x30"):
        TrainImages([d], (2,), 16)

"""The onnxruntime backend: a parity-gated ONNX export, cached, tiled like the torch backend."""

from __future__ import annotations

import numpy as np
import pytest

from carn_mobile.upscaling import Upscaler

pytest.importorskip("onnxruntime")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CARN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_onnxruntime_backend_matches_torch_tiled(cache):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (37, 29, 3), dtype=np.uint8)
    ort = Upscaler(2, "carn-m", backend="onnxruntime", tile=16)
    ref = Upscaler(2, "carn-m", backend="torch", tile=None)
    out_ort, out_ref = ort.upscale(image), ref.upscale(image)
    assert out_ort.shape == (74, 58, 3)
    # Both are rounded to uint8: float differences of ~1e-6 may flip a rounding, never more.
    assert np.abs(out_ort.astype(int) - out_ref.astype(int)).max() <= 1
    artifacts = list(cache.rglob("*.onnx"))
    assert len(artifacts) == 1 and artifacts[0].with_name(artifacts[0].name + ".json").is_file()
    mtime = artifacts[0].stat().st_mtime_ns
    Upscaler(2, "carn-m", backend="onnxruntime")  # reuses the cached, checked export
    assert artifacts[0].stat().st_mtime_ns == mtime


def test_onnxruntime_backend_needs_a_name_or_file(cache):
    from carn_mobile.models import build_model

    with pytest.raises(ValueError, match="not a model object"):
        Upscaler(2, build_model("carn-m", scales=(2,)), backend="onnxruntime")

"""``carn-upscale --precision`` / ``Upscaler(precision=)``: the backend each precision runs on, the
int8 export made once into the cache (quality-gated), its measured drop said in one line, and the
refusals."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from carn_mobile.cli import upscale as upscale_cli
from carn_mobile.export import artifact_backends, get_target
from carn_mobile.runtimes import MissingDependencyError
from carn_mobile.testimage import natural_test_image_uint8
from carn_mobile.upscaling import Upscaler
from carn_mobile.upscaling.backends import PRECISION_BACKENDS, choose_backend


def cli(*args: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        upscale_cli.main(list(args))
    return int(exit_info.value.code or 0)


def test_each_precision_gets_the_backend_measured_fastest() -> None:
    assert choose_backend("fp32") == "torch"
    assert choose_backend("fp32", "onnxruntime") == "onnxruntime"
    assert PRECISION_BACKENDS["int8"][0] == "executorch"  # benchmarks/int8-x86_64-2core
    for precision, order in PRECISION_BACKENDS.items():
        installed = []
        for name in order:
            try:
                get_target(artifact_backends()[name]).check_available()
                installed.append(name)
            except MissingDependencyError:
                pass
        if installed:
            assert choose_backend(precision) == installed[0]


@pytest.mark.parametrize(
    ("precision", "backend", "message"),
    [
        ("int8", "torch", "the torch backend runs fp32 only; int8 runs on: executorch, litert, onnxruntime"),
        ("int8", "ort", "the ort backend runs fp32, fp16 only; int8 runs on: executorch, litert, onnxruntime"),
        ("fp16", "torchscript-lite", "the torchscript-lite backend runs fp32 only; fp16 runs on: executorch, litert"),
        ("int4", None, "unknown precision 'int4'"),
    ],
)
def test_a_precision_a_backend_cannot_run_is_refused_naming_those_that_can(precision, backend, message) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        choose_backend(precision, backend)


def test_the_cli_refuses_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "lr.png"
    Image.fromarray(natural_test_image_uint8(24, 32)).save(src)
    assert cli(str(src), "--scale", "2", "--backend", "torch", "--precision", "int8") == 2
    err = capsys.readouterr().err
    assert "the torch backend runs fp32 only; int8 runs on: executorch, litert, onnxruntime" in err
    assert "Traceback" not in err and not (tmp_path / "lr_x2.png").exists()


@pytest.fixture(scope="module")
def int8_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        get_target("executorch").check_available()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    return tmp_path_factory.mktemp("cache")


def test_int8_upscaler_exports_once_gates_quality_and_says_the_drop(
        int8_cache: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("CARN_CACHE_DIR", str(int8_cache))
    caplog.set_level(logging.INFO, logger="carn_mobile.upscaling.cache")
    up = Upscaler(4, precision="int8", tile=None)
    assert up.backend.name == "executorch" and up.backend.precision == "int8"
    artifact = up.backend.artifact
    assert artifact.name == "carn-m_x4_int8.pte" and artifact.is_relative_to(int8_cache)
    line = next(r.getMessage() for r in caplog.records if "its export measured" in r.getMessage())
    assert line.startswith("int8 on the executorch backend (carn-m_x4_int8.pte); its export measured: "
                           "quality passed: Y-PSNR vs fp32 ")
    assert "; task PSNR drop " in line and "test-image" in line and line.endswith(" dB (gate <= 0.1 dB)")
    drops = [float(part.split()[-1]) for part in line.split("drop ")[1].split(" dB")[0].split(", ")]
    assert drops and max(drops) <= 0.1

    lr = natural_test_image_uint8(60, 72, seed=5)
    got = up.upscale(lr).astype(np.float64)
    want = Upscaler(4, tile=None).upscale(lr).astype(np.float64)  # fp32, PyTorch
    psnr = 10 * np.log10(255**2 / np.mean((got - want) ** 2))
    assert 38 < psnr < 80, psnr  # int8 arithmetic: close to fp32, and not fp32 itself

    stamp = artifact.stat().st_mtime_ns
    caplog.clear()
    again = Upscaler(4, precision="int8", tile=8)  # the cache is reused; tiles stay exact
    assert again.backend.artifact == artifact and artifact.stat().st_mtime_ns == stamp
    assert not any("first use" in r.getMessage() for r in caplog.records)
    tiled = again.upscale(lr).astype(np.float64)
    assert np.abs(tiled - got).max() <= 1  # static int8 scales: tiling changes at most the rounding


def test_carn_upscale_precision_int8_on_an_image_and_a_clip(int8_cache: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("av")
    from carn_mobile.testclip import ClipSpec, make_clip

    monkeypatch.setenv("CARN_CACHE_DIR", str(int8_cache))
    src = tmp_path / "lr.png"
    Image.fromarray(natural_test_image_uint8(30, 40)).save(src)
    assert cli(str(src), "--scale", "4", "--precision", "int8", "--no-progress") == 0
    err = capsys.readouterr().err
    assert err.count("int8 on the executorch backend") == 1 and "task PSNR drop" in err
    assert Image.open(tmp_path / "lr_x4.png").size == (160, 120)
    clip = tmp_path / "clip.mp4"
    make_clip(clip, ClipSpec(32, 24, 4))
    assert cli(str(clip), "--scale", "4", "--precision", "int8", "--no-progress") == 0
    import av

    with av.open(str(tmp_path / "clip_x4.mp4")) as c:
        stream = c.streams.video[0]
        assert (stream.frames, stream.codec_context.width, stream.codec_context.height) == (4, 128, 96)

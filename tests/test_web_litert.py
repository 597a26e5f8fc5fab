"""LiteRT.js on the web page: re-sizing a .tflite by its shapes, and the pinned LiteRT.js files.

The page tests (LiteRT.js output against Python onnxruntime, tiled, in headless Chromium) are in
test_web.py with the other page tests; these need only Node and the litert extra.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import quick_parity_settings

from carn_mobile.export import export_model
from carn_mobile.export.target_litert import read_metadata
from carn_mobile.quantization import CalibrationSource
from carn_mobile.web import browser as web_browser
from carn_mobile.web import litert_js, ort_web
from carn_mobile.web.site import asset

pytest.importorskip("ai_edge_litert")

#: Node reads a .tflite, re-sizes it with the page's own module and writes the result.
RESIZE = """
import { readFileSync, writeFileSync } from "node:fs";
// argv: node, this script, the module, then the model, height, width and output paths.
const { tfliteAtSize } = await import(process.argv[2]);
const [src, h, w, dst] = process.argv.slice(3);
try {
  writeFileSync(dst, tfliteAtSize(readFileSync(src), Number(h), Number(w)).bytes);
} catch (err) {
  console.error(err.message);
  process.exit(3);
}
"""


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("node is needed in CI to test the page's tflite re-sizing")
        pytest.skip("no node to run the page's tflite re-sizing")
    return found


def export_litert(out: Path, layout: str, precision: str = "fp32") -> Path:
    quantized = {"calibration": CalibrationSource(count=16)} if precision == "int8" else {}
    with quick_parity_settings():
        (result,) = export_model("carn-m", targets=["litert"], scales=[4 if quantized else 2], out_dir=out,
                                 precision=precision, target_options={"litert": {"layout": layout}}, **quantized)
    return result.job.artifact


@pytest.fixture(scope="module")
def nhwc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_litert(tmp_path_factory.mktemp("litert-nhwc"), "nhwc")


@pytest.fixture(scope="module", params=["fp32", "fp16", "int8"])
def any_nhwc(request: pytest.FixtureRequest, nhwc: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The NHWC model in each precision the litert target makes: float16 weights behind DEQUANTIZE
    (constants computed from constants) and int8 tensors must re-size like float32 ones."""
    if request.param == "fp32":
        return nhwc
    return export_litert(tmp_path_factory.mktemp(f"litert-{request.param}"), "nhwc", request.param)


def resize(node: str, model: Path, h: int, w: int, out: Path) -> subprocess.CompletedProcess:
    script = out.parent / "resize.mjs"
    script.write_text(RESIZE)
    module = out.parent / "tflite-size.js"
    module.write_bytes(asset("tflite-size.js"))
    return subprocess.run([node, str(script), str(module), str(model), str(h), str(w), str(out)],
                          capture_output=True, text=True, timeout=120)


def interpret(model: Path, x: np.ndarray, resize_to: tuple[int, ...] | None = None) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(str(model))
    (detail,) = it.get_input_details()
    if resize_to is not None:
        it.resize_tensor_input(detail["index"], list(resize_to))
    it.allocate_tensors()
    it.set_tensor(detail["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


@pytest.mark.parametrize("h, w", [(37, 53), (8, 120)])
def test_page_resize_equals_the_interpreters_resize(node: str, any_nhwc: Path, tmp_path: Path, h: int, w: int) -> None:
    """The page's shape rewrite gives a model that the interpreter runs at the new size without any
    resize, bit for bit as resize_tensor_input on the stored model does."""
    out = tmp_path / "resized.tflite"
    done = resize(node, any_nhwc, h, w, out)
    assert done.returncode == 0, done.stderr
    x = np.random.default_rng(h).random((1, h, w, 3), dtype=np.float32)
    got = interpret(out, x)
    want = interpret(any_nhwc, x, resize_to=(1, h, w, 3))
    scale = int(read_metadata(any_nhwc)["carn_mobile.scale"])
    assert got.shape == (1, scale * h, scale * w, 3) and np.array_equal(got, want)


def test_page_resize_refuses_what_it_cannot_resize(node: str, nhwc: Path, tmp_path: Path) -> None:
    nchw = export_litert(tmp_path / "nchw", "nchw")
    done = resize(node, nchw, 20, 20, tmp_path / "a.tflite")
    assert done.returncode == 3 and "expected an NHWC input [1, H, W, 3]" in done.stderr
    done = resize(node, nhwc, 0, 20, tmp_path / "b.tflite")
    assert done.returncode == 3 and "a model size must be whole positive pixels, got 0x20" in done.stderr


def test_pinned_litert_integrity_matches_the_npm_package() -> None:
    found, why = web_browser.find_tools()
    scope = found.litert_scope() if found else None
    if scope is None or litert_js.local_version(scope) != litert_js.PINNED_VERSION:
        if os.environ.get("CI"):
            pytest.fail(f"@litertjs/core {litert_js.PINNED_VERSION} must be installed in CI (npm ci in export/web)")
        pytest.skip(why or f"@litertjs/core {litert_js.PINNED_VERSION} is not installed in export/web")
    for name, expected in litert_js.PINNED_INTEGRITY.items():
        assert ort_web.integrity(scope / name) == expected, name
    assert sorted(litert_js.PINNED_INTEGRITY) == sorted(litert_js.file_names())

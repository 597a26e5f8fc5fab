"""The web target: the site folder, its server, parity in the page, and the page in headless Chromium.

The browser tests need Node, Chromium and ``export/web/node_modules`` (``npm ci`` there); they
skip with the reason when those are missing, except in CI (``CI`` set), where they must run.
"""

from __future__ import annotations

import http.client
import json
import os
import selectors
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import quick_parity_settings
from PIL import Image

from carn_mobile.cli import export as export_cli
from carn_mobile.cli import parity as parity_cli
from carn_mobile.cli import web as web_cli
from carn_mobile.export import export_model
from carn_mobile.export.wrapper import per_scale_module
from carn_mobile.fileio import sha256_file
from carn_mobile.metrics import to_uint8
from carn_mobile.quantization import CalibrationSource
from carn_mobile.runtimes import get_runner, parse_shape
from carn_mobile.upscaling.receptive_field import receptive_field
from carn_mobile.web import browser as web_browser
from carn_mobile.web import litert_js, ort_web
from carn_mobile.web import site as web_site
from carn_mobile.web.serve import ISOLATION_HEADERS, serving
from carn_mobile.weights import load_model

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("CARN_TEST_ARTIFACTS", ROOT / "test-artifacts"))
onnxruntime = pytest.importorskip("onnxruntime")


def cli(main, *args: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return int(exit_info.value.code or 0)


def no_browser(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_browser, "find_tools", lambda: (None, "disabled by the test"))


@pytest.fixture(scope="module")
def tools() -> web_browser.BrowserTools:
    found, why = web_browser.find_tools()
    if found is None or found.ort_web_dist() is None or found.litert_scope() is None:
        why = why or "onnxruntime-web or @litertjs is not installed beside playwright-core (npm ci in export/web)"
        if os.environ.get("CI"):
            pytest.fail(f"the browser tests must run in CI: {why}")
        pytest.skip(f"no browser to test the page in: {why}")
    return found


def native_sr(model_file: Path, rgb: np.ndarray) -> np.ndarray:
    """Python onnxruntime's untiled output for an 8-bit RGB image, as 8-bit levels."""
    lr = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255)
    session = onnxruntime.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    (sr,) = session.run(None, {"lr": lr})
    return to_uint8(sr[0].transpose(1, 2, 0))


# --- without a browser -------------------------------------------------------------------------


def test_tile_fits_the_tensor_budget() -> None:
    module = per_scale_module(load_model("carn-m"), 4)
    per_pixel = web_site.bytes_per_lr_pixel(module)
    # x4's largest tensor: the first upsampling conv's 256 channels at 2x resolution, float32.
    assert per_pixel == 256 * 4 * 4
    overlap = receptive_field(module.net, 4).overlap
    budget = web_site.TENSOR_BUDGET["webgpu"]
    tile = web_site.tile_for_budget(per_pixel, overlap, budget)
    assert tile % web_site.TILE_STEP == 0
    assert (tile + 2 * overlap) ** 2 * per_pixel <= budget < (tile + web_site.TILE_STEP + 2 * overlap) ** 2 * per_pixel
    with pytest.raises(ValueError, match="no tile"):
        web_site.tile_for_budget(per_pixel, overlap, 1 << 20)


@pytest.mark.parametrize(
    "dist, url, message",
    [
        ("missing", None, "is not a folder"),
        ("empty", None, "lacks ort.wasm.min.mjs"),
        ("empty", "https://example.org/ort/", "not both"),
        (None, "ftp://example.org/", "http(s) URL"),
    ],
)
def test_ort_web_source_errors(tmp_path: Path, dist: str | None, url: str | None, message: str) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ort_web.OrtWebError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ort_web.OrtWebSource.from_options(tmp_path / dist if dist else None, url)


def test_pinned_integrity_matches_the_npm_package() -> None:
    dist = ROOT / "export" / "web" / "node_modules" / "onnxruntime-web" / "dist"
    if not dist.is_dir():
        if os.environ.get("CI"):
            pytest.fail("export/web/node_modules is missing in CI (.ci/run runs npm ci there)")
        pytest.skip("onnxruntime-web is not installed (npm ci in export/web)")
    assert ort_web.local_version(dist) == ort_web.PINNED_VERSION
    assert {name: ort_web.integrity(dist / name) for name in ort_web.file_names()} == ort_web.PINNED_INTEGRITY


def test_server_sends_isolation_headers_and_types(tmp_path: Path) -> None:
    (tmp_path / "a.mjs").write_text("export {};")
    (tmp_path / "b.wasm").write_bytes(b"\0asm")
    with serving(tmp_path) as url:
        for name, kind in (("a.mjs", "text/javascript"), ("b.wasm", "application/wasm")):
            with urllib.request.urlopen(url + name, timeout=10) as response:  # loopback only
                assert response.headers["Content-Type"] == kind
                for key, value in ISOLATION_HEADERS.items():
                    assert response.headers[key] == value


def status_of(url: str, path: str) -> tuple[int, bytes]:
    """The status and body of ``GET path`` sent as written (no client-side normalisation)."""
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_server_serves_only_the_sites_own_files(tmp_path: Path) -> None:
    """Symlinks out of the site, listings, other file types and '..' are all a plain 404."""
    site, outside = tmp_path / "site", tmp_path / "outside"
    (site / "models").mkdir(parents=True)
    outside.mkdir()
    (site / "index.html").write_text("<!doctype html><title>site</title>")
    (site / "a.mjs").write_text("export {};")
    (site / "models" / "m.onnx").write_bytes(b"onnx")
    (site / "notes.txt").write_text("not a site file type")
    (outside / "secret.json").write_text('{"secret": 1}')
    (site / "alias.mjs").symlink_to(site / "a.mjs")  # a symlink that stays inside: served
    (site / "leak.json").symlink_to(outside / "secret.json")
    (site / "leak.txt").symlink_to("/etc/hostname")
    (site / "etc").symlink_to("/etc")
    (site / "out").symlink_to(outside)
    with serving(site) as url:
        assert status_of(url, "/") == (200, b"<!doctype html><title>site</title>")
        assert status_of(url, "/a.mjs")[0] == status_of(url, "/alias.mjs")[0] == 200
        assert status_of(url, "/models/m.onnx") == (200, b"onnx")
        for path in ("/leak.json", "/leak.txt", "/etc/passwd", "/etc/", "/out/secret.json", "/models/",
                     "/models", "/notes.txt", "/../outside/secret.json", "/%2e%2e/outside/secret.json",
                     "/missing.js"):
            status, body = status_of(url, path)
            assert status == 404, path
            assert b"secret" not in body and b"root:" not in body, path


def test_serve_warns_off_loopback_and_flushes_its_url_into_a_pipe(url_site: Path) -> None:
    """`carn-web serve DIR | tee log` shows the URL at once; binding beyond loopback warns."""
    code = "from carn_mobile.cli.web import main; main()"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code, "serve", str(url_site), "--host", "0.0.0.0", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(timeout=60), "no line on the pipe within 60 s: the URL is stuck in a buffer"
        line = proc.stdout.readline().decode()
        assert line.startswith("serving ") and "http://0.0.0.0:" in line
    finally:
        proc.terminate()
        err = proc.communicate(timeout=30)[1].decode()
    assert "warning: --host 0.0.0.0 serves the site to every machine" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def url_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site referencing its runtimes by URL, checked in Python onnxruntime and ai-edge-litert (no browser)."""
    out = tmp_path_factory.mktemp("web-url")
    mp = pytest.MonkeyPatch()
    no_browser(mp)
    try:
        results = export_model("carn-m", targets=["web"], scales=[2], out_dir=out)
    finally:
        mp.undo()
    assert [r.report.runner for r in results] == ["litert", "onnxruntime"]
    return out / "carn-m_x2_fp32.web"


def test_site_without_browser_is_checked_in_python(url_site: Path) -> None:
    site = web_site.read_site_json(url_site)
    assert site["ort"]["source"] == "url" and site["ort"]["version"] == ort_web.PINNED_VERSION
    wasm = site["ort"]["builds"]["wasm"]
    assert wasm["wasm"]["integrity"] == ort_web.PINNED_INTEGRITY["ort-wasm-simd-threaded.wasm"]
    assert site["litert"]["source"] == "url" and site["litert"]["version"] == litert_js.PINNED_VERSION
    assert site["litert"]["builds"]["threaded"]["wasm"]["integrity"] == litert_js.PINNED_INTEGRITY[
        "core/wasm/litert_wasm_threaded_internal.wasm"]
    assert site["backends"] == {"wasm": "litert", "webgpu": "ort"} and site["runtimes"] == ["litert", "ort"]
    assert not (url_site / "ort").exists() and not (url_site / "litert").exists()
    tflite, onnx = site["models"]
    assert (tflite["runtime"], tflite["layout"], onnx["runtime"], onnx["layout"]) == ("litert", "NHWC", "ort", "NCHW")
    assert set(tflite["tile"]) == {"wasm"} and set(onnx["tile"]) == {"wasm", "webgpu"}
    for model in (tflite, onnx):
        assert model["scale"] == 2 and model["overlap"] == 21 and model["integrity"] == ort_web.integrity(
            url_site / model["file"])
    assert sorted(p.name for p in url_site.iterdir()) == sorted([*web_site.PAGE_FILES, "models", "site.json"])
    bundle = json.loads((url_site.parent / (url_site.name + ".json")).read_text())
    assert bundle["format"] == "carn-mobile/export-bundle@1" and bundle["scales"] == [2]
    assert bundle["file"]["sha256"] == sha256_file(url_site)
    member = json.loads((url_site / "models" / "carn-m_x2_fp32.onnx.json").read_text())
    assert member["target"] == "web" and member["parity"]["status"] == "passed"


def test_carn_parity_rechecks_a_site_model(url_site: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    no_browser(monkeypatch)
    assert cli(parity_cli.main, str(url_site / "models" / "carn-m_x2_fp32.onnx")) == 0
    assert "passed" in capsys.readouterr().out


def test_carn_parity_rechecks_a_whole_bundle(url_site: Path, monkeypatch: pytest.MonkeyPatch, capsys,
                                             tmp_path: Path) -> None:
    import shutil

    no_browser(monkeypatch)
    assert cli(parity_cli.main, str(url_site)) == 0
    out = " ".join(capsys.readouterr().out.split())
    bundle = json.loads((url_site.parent / (url_site.name + ".json")).read_text())
    assert f"files: {len(bundle['files'])}/{len(bundle['files'])} match the manifest" in out
    assert "carn-m_x2_fp32.onnx" in out and "passed" in out
    # A changed page file fails the bundle, named; every member is still re-checked.
    copy = tmp_path / url_site.name
    shutil.copytree(url_site, copy)
    shutil.copy(url_site.parent / (url_site.name + ".json"), tmp_path)
    page = copy / web_site.PAGE_FILES[0]
    page.write_bytes(page.read_bytes() + b"\n")
    assert cli(parity_cli.main, str(copy)) == 1
    captured = capsys.readouterr()
    assert f"{web_site.PAGE_FILES[0]}: sha256 differs" in " ".join(captured.err.split())
    assert "passed" in captured.out  # the member itself still matches


def test_existing_site_is_kept_without_force(url_site: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    no_browser(monkeypatch)
    before = sha256_file(url_site)
    assert cli(export_cli.main, "--target", "web", "--scale", "2", "--out", str(url_site.parent)) == 2
    assert "--force" in capsys.readouterr().err
    assert sha256_file(url_site) == before


def test_failed_member_leaves_no_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from carn_mobile.runtimes import get_runner

    no_browser(monkeypatch)
    runner = type(get_runner("onnxruntime"))
    real_load = runner.load

    def drifting_load(self, path):
        run = real_load(self, path)
        return run if "x2" in Path(path).name else (lambda lr: run(lr) + 1e-3)

    monkeypatch.setattr(runner, "load", drifting_load)
    out = tmp_path / "out"
    assert cli(export_cli.main, "--target", "web", "--scale", "2,3", "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert "failed parity" in err and "nothing was written for carn-m_x2-3_fp32.web" in err
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--target", "web", "--precision", "w8a16"], "the web target makes fp32, fp16, int8 sites, not w8a16"),
        (["--target", "web", "--web-runtime", "litert", "--precision", "fp16"],
         "LiteRT.js does not run fp16 on the page (LiteRT.js 2.5.3 ran the fp16 .tflite"),
        (["--target", "web", "--web-runtime", "litert", "--precision", "fp16"], "--web-runtime auto or ort does"),
        (["--target", "onnx", "--ort-web", "."], "options were given for web"),
        (["--target", "web", "--ort-web", "/nonexistent/dist"], "is not a folder"),
        (["--target", "web", "--litert-js", "/nonexistent"], "lacks core/dist/index.js"),
        (["--target", "web", "--web-runtime", "litert", "--ort-web", "."], "apply to sites with ONNX Runtime Web"),
        (["--target", "web", "--web-runtime", "ort", "--litert-js", "."], "applies to sites with LiteRT.js"),
    ],
)
def test_export_errors(tmp_path: Path, args: list[str], message: str, capsys) -> None:
    assert cli(export_cli.main, *args, "--scale", "2", "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split()) and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_carn_web_errors(tmp_path: Path, capsys) -> None:
    assert cli(web_cli.main, "serve", str(tmp_path / "missing")) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert cli(web_cli.main, "serve", str(tmp_path)) == 2
    assert "is not a carn-mobile web site" in capsys.readouterr().err


# --- in headless Chromium ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tools: web_browser.BrowserTools, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-contained x2 + x4 site, each model checked in the page (runner onnxruntime-web)."""
    out = tmp_path_factory.mktemp("web")
    results = export_model("carn-m", targets=["web"], scales=[2, 4], out_dir=out,
                           target_options={"web": {"ort_web": tools.ort_web_dist(),
                                                   "litert_js": tools.litert_scope()}})
    assert [r.report.runner for r in results] == ["litert-js", "litert-js", "onnxruntime-web", "onnxruntime-web"]
    assert all(r.report.max_abs is not None and r.report.max_abs <= 1e-4 for r in results)
    return out / "carn-m_x2-4_fp32.web"


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real LR photo (Set5 butterfly x4) when the shared data is there, else the built-in test image."""
    from carn_mobile.data import shared_data_root
    from carn_mobile.testimage import natural_test_image_uint8

    path = tmp_path_factory.mktemp("photo") / "photo.png"
    root = shared_data_root()
    src = root / "data/benchmark/Set5/LR_bicubic/X4/butterflyx4.png" if root else None
    if src is not None and src.is_file():
        Image.open(src).convert("RGB").crop((0, 0, 60, 52)).save(path)
    else:
        Image.fromarray(natural_test_image_uint8(52, 60)).save(path)
    return path


@pytest.fixture(scope="module")
def page(tools: web_browser.BrowserTools, site: Path):
    with serving(site) as url, web_browser.Browser(tools) as browser:
        yield browser, url


def test_site_is_self_contained(site: Path) -> None:
    info = web_site.read_site_json(site)
    assert info["ort"]["source"] == "copied" and info["litert"]["source"] == "copied"
    entries = [e for files in info["ort"]["builds"].values() for e in files.values()]
    entries += [info["litert"]["module"], info["litert"]["utils"],
                *(e for files in info["litert"]["builds"].values() for e in files.values())]
    for entry in entries:
        assert ort_web.integrity(site / entry["url"]) == entry["integrity"]
    want = [(2, "litert"), (2, "ort"), (4, "litert"), (4, "ort")]
    assert [(m["scale"], m["runtime"]) for m in info["models"]] == want


@pytest.mark.parametrize("scale, tile, runtime", [(4, None, "litert"), (4, 24, "litert"), (2, 16, "litert"),
                                                  (4, 24, "ort"), (2, 16, "ort")])
def test_page_output_equals_python(page, site: Path, photo: Path, scale: int, tile: int | None, runtime: str) -> None:
    """The page's tiled output on each WebAssembly runtime (LiteRT.js re-sizes its model to every
    distinct tile box) against Python onnxruntime's untiled output of the same network."""
    browser, url = page
    state = browser.open(f"{url}index.html?runtime={runtime}" + (f"&tile={tile}" if tile else ""))
    assert state["state"] == "ready" and state["isolated"] and state["threads"] >= 1
    reply = browser.upscale(photo, scale)
    assert reply["state"] == "done", reply.get("error")
    label = {"litert": "LiteRT.js 2.5.3, WebAssembly relaxed SIMD", "ort": "ONNX Runtime Web 1.30.0, WebAssembly SIMD"}
    assert label[runtime] in reply["status"] and reply["backend"] == "wasm"
    rgb = np.asarray(Image.open(photo).convert("RGB"))
    expected = native_sr(site / "models" / f"carn-m_x{scale}_fp32.onnx", rgb)
    assert reply["rgb"].shape == expected.shape
    diff = np.abs(reply["rgb"].astype(np.int16) - expected.astype(np.int16))
    assert diff.max() <= 1, f"page differs from Python onnxruntime by {diff.max()} levels"
    if tile:  # tiled in the page, untiled in Python
        assert reply["tiles"] > 1 and reply["tile"] == tile
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.screenshot(ARTIFACTS / f"web-page-x{scale}-{runtime}{'-tiled' if tile else ''}.png")


@pytest.fixture(scope="module")
def quantized_sites(tools: web_browser.BrowserTools, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An int8 x4 site (auto: LiteRT.js only) and an fp16 x2 site (auto: ONNX Runtime Web, WebAssembly
    only), each model through the page's parity and, for int8, the quality gate in the page."""
    out = tmp_path_factory.mktemp("web-precisions")
    options = {"web": {"ort_web": tools.ort_web_dist(), "litert_js": tools.litert_scope()}}
    with quick_parity_settings():
        (int8,) = export_model("carn-m", targets=["web"], scales=[4], precision="int8", out_dir=out,
                               shape=parse_shape("dynamic:8-96"), calibration=CalibrationSource(count=16),
                               target_options=options)
        (fp16,) = export_model("carn-m", targets=["web"], scales=[2], precision="fp16", out_dir=out,
                               shape=parse_shape("dynamic:8-96"), target_options=options)
    assert (int8.report.runner, fp16.report.runner) == ("litert-js", "onnxruntime-web")
    assert int8.manifest["parity"]["quality"]["passed"] and int8.manifest["quantization"]["quantizer"] == \
        "ai-edge-quantizer"
    return {"int8": int8.artifact.parents[1], "fp16": fp16.artifact.parents[1]}


@pytest.mark.parametrize("precision, scale, runtime", [("int8", 4, "litert"), ("fp16", 2, "ort")])
def test_quantized_and_half_sites_run_their_runtime_and_say_so(tools, quantized_sites: dict[str, Path], photo: Path,
                                                               precision: str, scale: int, runtime: str) -> None:
    """Each precision's site carries the runtime measured fastest for it on WebAssembly and no WebGPU
    backend; the page's tiled output matches the same file run natively (ai-edge-litert's XNNPACK,
    onnxruntime), and its status line names the precision."""
    site = quantized_sites[precision]
    info = web_site.read_site_json(site)
    assert info["precision"] == precision and info["backends"] == {"wasm": runtime} and info["runtimes"] == [runtime]
    (model,) = info["models"]
    with serving(site) as url, web_browser.Browser(tools) as browser:
        assert browser.open(f"{url}index.html?tile=24")["state"] == "ready"
        assert browser.evaluate("carnWeb.backends") == ["wasm"]
        assert browser.evaluate("carnWeb.webgpu.why") == "this site has no WebGPU runtime"
        reply = browser.upscale(photo, scale)
    assert reply["state"] == "done", reply.get("error")
    assert reply["status"].endswith(f", {precision})") and reply["tiles"] > 1
    rgb = np.asarray(Image.open(photo).convert("RGB"))
    lr = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255)
    native = get_runner("litert" if runtime == "litert" else "onnxruntime").load(site / model["file"])
    expected = to_uint8(native(lr)[0].transpose(1, 2, 0))
    diff = np.abs(reply["rgb"].astype(np.int16) - expected.astype(np.int16))
    assert diff.max() <= 1, f"the {precision} page differs from the native runtime by {diff.max()} levels"


def webgpu_adapter(browser: web_browser.Browser) -> str:
    """The page's WebGPU adapter; headless Chromium here has SwiftShader's (numbers, not speed).
    A browser without one fails the test in CI and skips it elsewhere."""
    webgpu = browser.evaluate("carnWeb.webgpu")
    if not webgpu.get("adapter"):
        if os.environ.get("CI"):
            pytest.fail(f"the WebGPU tests must run in CI: {webgpu.get('why')}")
        pytest.skip(f"no WebGPU adapter: {webgpu.get('why')}")
    return webgpu["adapter"]


def test_webgpu_matches_python_onnxruntime_for_every_model(page, site: Path) -> None:
    """Every model of the site on the page's WebGPU backend against Python onnxruntime (CPU):
    fp32 within 1e-4, the same bound as the WebAssembly backend's parity check."""
    browser, url = page
    browser.open(f"{url}index.html")
    webgpu_adapter(browser)
    assert browser.evaluate("carnWeb.backends") == ["wasm", "webgpu"]
    models = [m for m in web_site.read_site_json(site)["models"] if m["runtime"] == "ort"]
    assert len(models) == 2
    rng = np.random.default_rng(27)
    for model in models:
        lr = rng.random((1, 3, 20, 28), dtype=np.float32)
        session = onnxruntime.InferenceSession(str(site / model["file"]), providers=["CPUExecutionProvider"])
        (want,) = session.run(None, {"lr": lr})
        got, _ = browser.run_tensor(model["scale"], lr, "webgpu")
        assert np.abs(got - want).max() <= 1e-4, model["file"]


def test_page_runs_and_names_webgpu(page, site: Path, photo: Path) -> None:
    """The page on WebGPU: its output within 1 level of Python's, its status naming the runtime,
    the backend and the adapter that ran."""
    browser, url = page
    browser.open(f"{url}index.html?backend=webgpu")
    adapter = webgpu_adapter(browser)
    reply = browser.upscale(photo, 2)
    assert reply["state"] == "done", reply.get("error")
    assert reply["backend"] == "webgpu" and browser.evaluate("carnWeb.notice") is None
    assert f"WebGPU on the {adapter} adapter" in reply["status"] and "ONNX Runtime Web" in reply["status"]
    expected = native_sr(site / "models" / "carn-m_x2_fp32.onnx", np.asarray(Image.open(photo).convert("RGB")))
    assert np.abs(reply["rgb"].astype(np.int16) - expected.astype(np.int16)).max() <= 1


def test_page_says_when_webgpu_is_missing_instead_of_falling_back(page, photo: Path) -> None:
    browser, url = page
    state = browser.open(f"{url}index.html?backend=webgpu",
                         init_script="Object.defineProperty(Navigator.prototype, 'gpu', {get: () => undefined})")
    assert state["state"] == "ready"
    notice = browser.evaluate("carnWeb.notice")
    assert notice == ("WebGPU was asked for but is not available (this browser has no navigator.gpu): "
                      "running on WebAssembly (CPU).")
    assert browser.evaluate("document.getElementById('notice').hidden") is False
    assert browser.evaluate("carnWeb.backends") == ["wasm"]
    reply = browser.upscale(photo, 2)
    assert reply["state"] == "done" and reply["backend"] == "wasm" and "WebAssembly relaxed SIMD, " in reply["status"]
    with pytest.raises(web_browser.BrowserError, match="WebGPU is not available here"):
        browser.run_tensor(2, np.zeros((1, 3, 8, 8), np.float32), "webgpu")


def test_page_rejects_a_file_that_is_no_image(page, tmp_path: Path) -> None:
    browser, url = page
    browser.open(f"{url}index.html")
    fake = tmp_path / "notes.png"
    fake.write_text("not an image")
    reply = browser.upscale(fake, 2)
    assert reply["state"] == "error" and "notes.png is not an image this browser can decode" in reply["error"]
    assert browser.evaluate("document.getElementById('error').hidden") is False


def test_page_rejects_an_image_over_the_limit(page, photo: Path) -> None:
    browser, url = page
    browser.open(f"{url}index.html?maxOutputPixels=10000")
    reply = browser.upscale(photo, 4)
    assert reply["state"] == "error" and "over this page's limit of 0.0 MP" in reply["error"]


def test_page_without_wasm_simd_says_so(page) -> None:
    browser, url = page
    state = browser.open(f"{url}index.html", init_script="WebAssembly.validate = () => false;")
    assert state["state"] == "error" and "no WebAssembly SIMD" in state["error"]


@pytest.mark.parametrize("runtime, damage, message", [
    ("ort", "bytes", "does not match its integrity hash"),
    ("ort", "graph", "ONNX Runtime Web could not load models/carn-m_x2_fp32.onnx"),
    ("litert", "bytes", "does not match its integrity hash"),
    ("litert", "graph", "models/carn-m_x2_fp32.tflite cannot be re-sized to 32x32"),
])
def test_page_reports_a_model_that_fails_to_load(tools, site: Path, photo: Path, tmp_path: Path,
                                                  runtime: str, damage: str, message: str) -> None:
    broken = tmp_path / "broken.web"
    shutil.copytree(site, broken)
    model = broken / "models" / f"carn-m_x2_fp32.{'onnx' if runtime == 'ort' else 'tflite'}"
    model.write_bytes(b"this is not a model")
    if damage == "graph":  # the hash fits the broken file: the runtime itself must refuse it
        info = web_site.read_site_json(broken)
        for m in info["models"]:
            if m["scale"] == 2 and m["runtime"] == runtime:
                m["integrity"] = ort_web.integrity(model)
        web_site.write_site_json(broken, info)
    with serving(broken) as url, web_browser.Browser(tools) as browser:
        browser.open(f"{url}index.html?runtime={runtime}")
        reply = browser.upscale(photo, 2)
    assert reply["state"] == "error" and message in reply["error"]


def test_carn_web_bench_measures_every_runtime_against_native(site: Path, quantized_sites: dict[str, Path],
                                                            tmp_path: Path, capsys) -> None:
    """One small run over an fp32 and an int8 site: a row per site, scale, runtime and isolation,
    each with the same file timed natively and the native onnxruntime fp32 yardstick."""
    out = tmp_path / "report"
    assert cli(web_cli.main, "bench", str(site), str(quantized_sites["int8"]), "--scale", "4", "--lr", "40x24",
               "--repeats", "1", "--threads", "2", "--profile", "--out", str(out)) == 0
    report = json.loads((out / "report.json").read_text())
    rows = report["rows"]
    assert {(r["precision"], r["runtime"], r["cross_origin_isolated"]) for r in rows} == {
        ("fp32", "litert", True), ("fp32", "ort", True), ("fp32", "litert", False), ("fp32", "ort", False),
        ("int8", "litert", True), ("int8", "litert", False)}
    for r in rows:
        assert r["scale"] == 4 and r["lr"] == [24, 40] and r["page_model_ms"] > 0 and r["native_same_file_ms"] > 0
        assert r["vs_native_onnxruntime_fp32"] is not None and r["wasm_cost"] > 0
        assert (r["page_tiled_ms"] is not None) == r["cross_origin_isolated"]
        assert r["threads"] == (2 if r["cross_origin_isolated"] else 1)
    assert report["about"]["sites"][str(quantized_sites["int8"])] == {"precision": "int8",
                                                                       "backends": {"wasm": "litert"}}
    assert "| x4 (40x24 -> 160x96) | int8 | LiteRT.js | relaxed SIMD | yes | 2 |" in (out / "report.md").read_text()
    # --profile: the page's ONNX Runtime Web kernels (its own profiler, read from the console) by layer
    # kind beside native onnxruntime's on the same file.
    (profile,) = report["about"]["profiles"]
    kinds = {k["kind"]: k for k in profile["kinds"]}
    assert (profile["scale"], profile["precision"]) == (4, "fp32")
    assert kinds["group conv 3x3 (residual-E)"]["page_ms"] > 0 and kinds["group conv 3x3 (residual-E)"]["native_ms"] > 0
    assert kinds["upsampler conv 3x3"]["calls"] >= 1


def test_carn_web_bench_and_serve_refuse_bad_options(url_site: Path, tmp_path: Path, capsys) -> None:
    assert cli(web_cli.main, "bench", str(url_site), "--repeats", "0") == 2
    assert "--repeats must be at least 1, got 0" in capsys.readouterr().err
    assert cli(web_cli.main, "bench", str(url_site), "--threads", "-1") == 2
    assert "--threads must be at least 1, got -1" in capsys.readouterr().err
    assert cli(web_cli.main, "bench", str(url_site), "--lr", "320") == 2
    assert "--lr must look like 1280x720 (WIDTHxHEIGHT), got '320'" in capsys.readouterr().err
    (tmp_path / "report.json").write_text("{}")
    assert cli(web_cli.main, "bench", str(url_site), "--out", str(tmp_path)) == 2
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / "report.json").read_text() == "{}" and not (tmp_path / "report.md").exists()
    with serving(url_site) as url:  # the port is taken
        port = url.rstrip("/").rsplit(":", 1)[1]
        assert cli(web_cli.main, "serve", str(url_site), "--port", port) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err

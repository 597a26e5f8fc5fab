"""The apps' tiling core, ``export/samples/CarnTiling.kt``, compiled with kotlinc and run on the JVM.

Its plans must equal the Python tiler's (:mod:`carn_mobile.upscaling.tiling`) on generated cases,
refusals included, word for word; stitched tiles must equal the untiled result exactly with a
deterministic local "model" (``tests/kotlin/TilingHarness.kt``) and within one 8-bit level with
the outputs of a real fixed-size CARN-M artifact that Python runs per tile. Skips without kotlinc
and java (``apt-get install kotlin default-jdk-headless``), except in CI (``CI`` set), where
``.ci/run`` installs them and these tests must run.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import quick_parity_settings

from carn_mobile.metrics import to_uint8
from carn_mobile.testimage import natural_test_image_uint8
from carn_mobile.upscaling.tiling import core_tile, plan_fixed_tiles, plan_tiles, run_tiled

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "export" / "samples" / "CarnTiling.kt"
HARNESS = ROOT / "tests" / "kotlin" / "TilingHarness.kt"
SAMPLES = sorted((ROOT / "export" / "samples").glob("*SuperResolution.kt"))
#: Generated plan cases compared with Python (the closing note quotes this count).
PLAN_CASES = 6000

Harness = Callable[..., str]


def kotlin_tools() -> tuple[str, str]:
    """kotlinc and java, or a skip (a failure in CI) naming what to install."""
    kotlinc, java = shutil.which("kotlinc"), shutil.which("java")
    if not (kotlinc and java):
        why = "kotlinc and java are not installed (apt-get install kotlin default-jdk-headless)"
        if os.environ.get("CI"):
            pytest.fail(f"the Kotlin tiling tests must run in CI: {why}")
        pytest.skip(why)
    return kotlinc, java


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    """``harness(*args)``: run the compiled driver with ``args``; returns its stdout."""
    kotlinc, java = kotlin_tools()
    jar = tmp_path_factory.mktemp("kotlin") / "tiling.jar"
    built = subprocess.run([kotlinc, str(CORE), str(HARNESS), "-include-runtime", "-d", str(jar)],
                           capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stderr
    # The core is what apps copy: it compiles without a single warning.
    assert not [line for line in built.stderr.splitlines() if CORE.name in line], built.stderr

    def run(*args: str) -> str:
        done = subprocess.run([java, "-jar", str(jar), *args], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return done.stdout

    return run


def tiles_json(tiles) -> list[list[int]]:
    return [[t.y0, t.y1, t.x0, t.x1, t.core_y0, t.core_y1, t.core_x0, t.core_x1] for t in tiles]


def python_answer(case: dict) -> dict:
    """What the Python tiler says for one case: its tiles, its core tile, or its refusal."""
    h, w = case["height"], case["width"]
    try:
        if case["kind"] == "plan":
            return {"tiles": tiles_json(plan_tiles(h, w, case["tile"], case["overlap"]))}
        if case["kind"] == "fixed":
            return {"tiles": tiles_json(plan_fixed_tiles(h, w, case["tile_height"], case["tile_width"],
                                                         case["overlap"]))}
        return {"tile": core_tile(h, w, case["tile"], case["overlap"], case["max_side"])}
    except ValueError as exc:
        return {"error": str(exc)}


def generated_plan_cases(n: int, seed: int = 29) -> list[dict]:
    """Systematic small cases plus random ones over sizes, tiles, overlaps and fixed tile sizes;
    about one in six is invalid (each kind of refusal appears)."""
    rng = random.Random(seed)
    cases: list[dict] = []
    for length in range(1, 60):  # every small side against a few tiles: the edges of each rule
        for box, overlap in [(1, 0), (8, 3), (16, 7), (43, 21), (48, 21), (64, 21)]:
            cases.append({"kind": "fixed", "height": length, "width": 64, "tile_height": box,
                          "tile_width": 64, "overlap": overlap})
        for tile in (1, 2, 5, 16):
            cases.append({"kind": "plan", "height": length, "width": 23, "tile": tile, "overlap": 3})
    while len(cases) < n:
        h, w = rng.randint(1, 700), rng.randint(1, 700)
        overlap = rng.choice([0, 1, 3, 8, 21, 21, 21, rng.randint(0, 64)])
        kind = rng.choice(["plan", "fixed", "fixed", "core_tile"])
        if kind == "fixed":
            th, tw = (rng.randint(2 * overlap + 1, 2 * overlap + 200) for _ in range(2))
            if rng.random() < 0.15:  # refusals: overlap too large, or a tile bigger than the image
                th = rng.randint(1, 2 * overlap + 1)
            cases.append({"kind": kind, "height": max(h, th) if rng.random() < 0.9 else h,
                          "width": max(w, tw) if rng.random() < 0.9 else w,
                          "tile_height": th, "tile_width": tw, "overlap": overlap})
        else:
            # tiles of at least 1/40 of the image: a 700-px side in 1-px tiles is 490,000 of them
            tile = rng.choice([None, rng.randint(max(1, max(h, w) // 40), 300), rng.randint(-2, 0)])
            max_side = rng.choice([None, rng.randint(1, 400)])
            cases.append({"kind": kind, "height": h, "width": w, "tile": tile, "overlap": overlap,
                          "max_side": max_side})
    return cases


def test_plans_equal_the_python_tilers_on_generated_cases(harness: Harness, tmp_path: Path) -> None:
    cases = generated_plan_cases(PLAN_CASES)
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    harness("plans", str(tmp_path / "cases.json"), str(tmp_path / "out.json"))
    got = json.loads((tmp_path / "out.json").read_text())
    assert len(got) == len(cases) == PLAN_CASES
    mismatches = [(c, g, python_answer(c)) for c, g in zip(cases, got, strict=True) if g != python_answer(c)]
    assert not mismatches, mismatches[:3]
    kinds = {(c["kind"], "error" in g) for c, g in zip(cases, got, strict=True)}
    assert kinds == {(k, e) for k in ("plan", "fixed", "core_tile") for e in (False, True)}
    assert sum(len(g.get("tiles", [])) for g in got) > 50_000  # plans with many tiles, not just one


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ({"kind": "fixed", "height": 100, "width": 300, "tile_height": 128, "tile_width": 128, "overlap": 21},
         "an image side of 100 px is smaller than the fixed tile of 128 px"),
        ({"kind": "fixed", "height": 300, "width": 90, "tile_height": 128, "tile_width": 96, "overlap": 21},
         "an image side of 90 px is smaller than the fixed tile of 96 px"),
        ({"kind": "fixed", "height": 300, "width": 300, "tile_height": 42, "tile_width": 64, "overlap": 21},
         "a fixed tile of 42 px leaves no core after an overlap of 21 px on each side"),
        ({"kind": "fixed", "height": 300, "width": 300, "tile_height": 16, "tile_width": 16, "overlap": 21},
         "a fixed tile of 16 px leaves no core after an overlap of 21 px on each side"),
        ({"kind": "core_tile", "height": 300, "width": 90, "tile": None, "overlap": 21, "max_side": 40},
         "an artifact that accepts LR sides up to 40 leaves no core after an overlap of 21 px on each side"),
        ({"kind": "plan", "height": 0, "width": 90, "tile": 64, "overlap": 21},
         "the image must be at least 1x1, got 0x90"),
        ({"kind": "plan", "height": 50, "width": 90, "tile": 64, "overlap": -1}, "overlap must be >= 0, got -1"),
        ({"kind": "plan", "height": 50, "width": 90, "tile": 0, "overlap": 21},
         "length and tile must be positive, got 50 and 0"),
    ],
    ids=["image-shorter-than-tile", "image-narrower-than-tile", "overlap-eats-tile", "overlap-over-tile",
         "side-limit-eats-core", "empty-image", "negative-overlap", "zero-tile"],
)
def test_bad_plans_are_refused_naming_the_values(harness: Harness, tmp_path: Path, case: dict, message: str) -> None:
    (tmp_path / "cases.json").write_text(json.dumps([case]))
    harness("plans", str(tmp_path / "cases.json"), str(tmp_path / "out.json"))
    (got,) = json.loads((tmp_path / "out.json").read_text())
    assert got == {"error": message} == python_answer(case)


def local_cases(seed: int = 3) -> list[dict]:
    """Tiled runs of the harness's local model: reach 3 (three 3x3 layers) on small images, and
    reach 21 like CARN-M (three 15x15 layers) on bigger ones; dynamic and fixed plans, both
    layouts, every scale; each with the full overlap and with one pixel less."""
    rng = random.Random(seed)
    cases = []
    for i in range(48):
        layers, radius, lo, hi = (3, 1, 9, 70) if i < 36 else (3, 7, 43, 90)
        reach = layers * radius
        h, w = rng.randint(lo, hi), rng.randint(lo, hi)
        fixed = [rng.randint(2 * reach + 1, h), rng.randint(2 * reach + 1, w)] if i % 2 else None
        base = {"height": h, "width": w, "scale": 2 + i % 3, "layout": ("NCHW", "NHWC")[i // 2 % 2],
                "layers": layers, "radius": radius, "reach": reach, "fixed_tile": fixed,
                "tile": None if fixed else rng.randint(1 if reach < 21 else 16, hi // 2),
                "max_side": None if fixed or i % 4 else rng.randint(2 * reach + 1, hi)}
        cases += [base | {"overlap": reach}, base | {"overlap": reach - 1}]
    return cases


def test_stitched_tiles_equal_the_untiled_local_model_exactly(harness: Harness, tmp_path: Path) -> None:
    cases = local_cases()
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    harness("local", str(tmp_path / "cases.json"), str(tmp_path / "out.json"))
    got = json.loads((tmp_path / "out.json").read_text())
    exact = [g for c, g in zip(cases, got, strict=True) if c["overlap"] == c["reach"]]
    short = [(c, g) for c, g in zip(cases, got, strict=True) if c["overlap"] < c["reach"] and g["tiles"] > 1]
    assert all(g["max_abs_diff"] == 0.0 for g in exact), exact
    assert all(g["argb_equal"] and g["argb_equals_rounded_floats"] for g in exact)
    assert sum(g["tiles"] for g in exact) > 200 and len(short) > 20
    assert sum(g["tiles"] > 1 for c, g in zip(cases, got, strict=True) if c["reach"] == 21) >= 12
    # One pixel too little overlap shows at the seams (the test can fail): every dynamic plan,
    # whose inner seams get exactly `overlap` pixels; fixed plans often get more.
    assert all(g["max_abs_diff"] > 0 for c, g in short if c["fixed_tile"] is None)
    assert any(g["max_abs_diff"] > 0 for c, g in short if c["fixed_tile"] is not None)


@pytest.fixture(scope="module")
def fixed_artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """CARN-M x2 / x3 / x4 as fixed 64x64 ONNX artifacts (parity-gated by carn-export)."""
    from carn_mobile.export import export_model
    from carn_mobile.runtimes import parse_shape

    pytest.importorskip("onnxruntime")
    out = tmp_path_factory.mktemp("fixed")
    with quick_parity_settings():
        results = export_model("carn-m", targets=["onnx"], scales=[2, 3, 4], shape=parse_shape("64x64"), out_dir=out)
    return {r.job.request.scale: r.artifact for r in results}


def to_layout(hwc: np.ndarray, layout: str) -> np.ndarray:
    return np.ascontiguousarray(hwc if layout == "NHWC" else hwc.transpose(2, 0, 1))


@pytest.mark.parametrize(("scale", "layout", "argb"), [(2, "NCHW", False), (3, "NHWC", False), (4, "NCHW", True),
                                                      (4, "NHWC", False)])
def test_stitched_carn_m_tiles_from_a_fixed_size_artifact(harness: Harness, fixed_artifacts: dict[int, Path],
                                                         tmp_path: Path, scale: int, layout: str, argb: bool) -> None:
    """Python runs the 64x64 artifact on each box of its plan; Kotlin reads the overlap and tile
    size from the artifact's manifest, asks for the same boxes, cuts the same pixels and
    stitches: equal to Python's stitch exactly, to the untiled network within one level."""
    import onnxruntime as ort
    import torch

    from carn_mobile.export.manifest import manifest_path
    from carn_mobile.export.wrapper import per_scale_module
    from carn_mobile.weights import load_model

    artifact = fixed_artifacts[scale]
    h, w = 97, 150
    lr8 = natural_test_image_uint8(h, w, seed=scale)
    lr = lr8.astype(np.float32) / np.float32(255)
    session = ort.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
    (tiles_dir := tmp_path / "tiles").mkdir()
    outputs = {}

    def run_box(box: np.ndarray) -> np.ndarray:
        (sr,) = session.run(None, {"lr": np.ascontiguousarray(box.transpose(2, 0, 1)[None])})
        return sr[0].transpose(1, 2, 0)

    plan = plan_fixed_tiles(h, w, 64, 64, 21)
    for t in plan:
        box = lr[t.y0 : t.y1, t.x0 : t.x1]
        outputs[(t.y0, t.x0)] = hr = run_box(box)
        to_layout(box, layout).astype("<f4").tofile(tiles_dir / f"{t.y0}_{t.x0}.in.f32")
        to_layout(hr, layout).astype("<f4").tofile(tiles_dir / f"{t.y0}_{t.x0}.out.f32")
    shutil.copy(manifest_path(artifact), tmp_path / "manifest.json")
    (tmp_path / "case.json").write_text(json.dumps({"width": w, "height": h, "layout": layout, "argb": argb}))
    argb_in = (0xFF << 24) | (lr8[..., 0].astype(np.int64) << 16) | (lr8[..., 1].astype(np.int64) << 8) | lr8[..., 2]
    argb_in.astype(np.uint32).astype("<u4").tofile(tmp_path / "lr.argb")
    lr.astype("<f4").tofile(tmp_path / "lr.f32")

    printed = harness("files", str(tmp_path))
    assert printed.strip() == f"stitched {len(plan)} tiles" and len(plan) == 15
    assert json.loads((tmp_path / "plan.json").read_text()) == tiles_json(plan)

    order = iter(plan)  # run_tiled calls in plan order, as the Kotlin tiler does
    python_stitch = run_tiled(lambda _box: outputs[(t := next(order)).y0, t.x0], lr, scale, plan, 3)
    with torch.no_grad():
        net = per_scale_module(load_model("carn-m"), scale).eval()
        untiled = net(torch.from_numpy(lr.transpose(2, 0, 1)[None].copy()))[0].numpy().transpose(1, 2, 0)
    if argb:
        packed = np.fromfile(tmp_path / "sr.argb", dtype="<u4").reshape(h * scale, w * scale)
        got8 = np.stack([(packed >> 16) & 0xFF, (packed >> 8) & 0xFF, packed & 0xFF], axis=-1).astype(np.uint8)
        assert np.array_equal(got8, to_uint8(python_stitch))  # rounded exactly as carn_mobile rounds
        level = np.abs(got8.astype(int) - to_uint8(untiled).astype(int))
        assert level.max() <= 1 and (level == 0).mean() > 0.99
    else:
        got = np.fromfile(tmp_path / "sr.f32", dtype="<f4").reshape(h * scale, w * scale, 3)
        assert np.array_equal(got, python_stitch)
        assert np.abs(got - untiled).max() <= 1e-5  # the artifact vs PyTorch on the whole image (measured <= 5e-7)
        assert np.abs(to_uint8(got).astype(int) - to_uint8(untiled).astype(int)).max() <= 1


def test_the_tiling_spec_is_read_from_real_manifests(harness: Harness, fixed_artifacts: dict[int, Path],
                                                     tmp_path: Path) -> None:
    from carn_mobile.export.manifest import manifest_path

    for scale, artifact in fixed_artifacts.items():
        tiling = json.loads(manifest_path(artifact).read_text())["tiling"]
        assert tiling["overlap"] == 21 and tiling["fixed_tile"] == [64, 64] and tiling["max_side"] is None
        spec = json.loads(harness("spec", str(manifest_path(artifact))))
        assert spec == {"scale": scale, "overlap": 21, "fixed_tile": [64, 64], "max_side": None}
    dynamic = json.loads(manifest_path(fixed_artifacts[2]).read_text()) | {
        "tiling": {"overlap": 21, "receptive_field_radius": 20.5, "fixed_tile": None, "max_side": 256}}
    (tmp_path / "dynamic.json").write_text(json.dumps(dynamic))
    assert json.loads(harness("spec", str(tmp_path / "dynamic.json"))) == {
        "scale": 2, "overlap": 21, "fixed_tile": None, "max_side": 256}


def test_a_manifest_without_tiling_is_refused(harness: Harness, fixed_artifacts: dict[int, Path],
                                              tmp_path: Path) -> None:
    from carn_mobile.export.manifest import manifest_path

    old = json.loads(manifest_path(fixed_artifacts[2]).read_text())
    del old["tiling"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    with pytest.raises(AssertionError, match='the manifest has no "tiling" section'):
        harness("spec", str(tmp_path / "old.json"))


def test_small_images_are_refused_by_a_fixed_tiler_and_padded_on_request(harness: Harness) -> None:
    got = json.loads(harness("pad"))
    assert got == {"size": [9, 8], "kept": True, "repeated": True, "crop_undoes": True,
                   "refusal": "an image side of 7 px is smaller than the fixed tile of 8 px", "padded_tiles": 1}


def test_every_kotlin_sample_tiles_through_the_core() -> None:
    """No sample keeps a tiling loop of its own; each hands its runtime call to TiledUpscaler."""
    assert len(SAMPLES) == 4
    assert "TilingSpec.fromManifest(" in (ROOT / "export" / "samples" / "AndroidTiling.kt").read_text()
    for sample in SAMPLES:
        text = sample.read_text()
        assert "TiledUpscaler(" in text and "tilingSpecFromAsset(context" in text, sample.name
        assert not re.search(r"fun (tiles|planTiles|split)\(", text), sample.name
        assert "OVERLAP = 21" not in text, sample.name


def stdlib_jdk7(kotlinc: str) -> Path:
    """kotlin-stdlib-jdk7 (``use`` on AutoCloseable, which every Android project has), beside
    the compiler: ``lib/`` of a JetBrains kotlinc, ``/usr/share/java`` for Debian's."""
    home = Path(os.path.realpath(kotlinc)).parent.parent
    for jar in (home / "lib" / "kotlin-stdlib-jdk7.jar", Path("/usr/share/java/kotlin-stdlib-jdk7.jar")):
        if jar.is_file():
            return jar
    pytest.fail(f"no kotlin-stdlib-jdk7.jar beside {kotlinc}")


def test_the_android_samples_type_check_against_api_stubs(tmp_path: Path) -> None:
    """Every sample, the Android glue and the core compile together against signature stubs of the
    Android, ONNX Runtime, LiteRT and ExecuTorch classes they call (tests/kotlin/stubs/README.md):
    well-typed calls into the core and those APIs, without a warning. Not a run on a device."""
    kotlinc, _ = kotlin_tools()
    stubs = ROOT / "tests" / "kotlin" / "stubs"
    sources = [*sorted((ROOT / "export" / "samples").glob("*.kt")), *sorted(stubs.glob("*.kt"))]
    built = subprocess.run([kotlinc, "-cp", str(stdlib_jdk7(kotlinc)), *map(str, sources), "-d", str(tmp_path / "out")],
                           capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stderr
    assert not [line for line in built.stderr.splitlines() if line.startswith(str(ROOT))], built.stderr  # no warnings
    classes = {p.stem for p in (tmp_path / "out").glob("*.class")}
    assert {"OnnxSuperResolution", "LiteRTSuperResolution", "QnnSuperResolution", "ExecuTorchSuperResolution",
            "AndroidTilingKt", "TiledUpscaler"} <= classes

"""Each cross-cutting decision has one home: scales, weights, precisions, registries, sizes, consoles."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from carn_mobile.models import PAPER_SCALES, SUPPORTED_SCALES, build_model, carn_m, parse_scales, upsample_stages
from carn_mobile.precision import PRECISIONS, get_precision, parity_tolerance
from carn_mobile.sizes import HxW, WxH, parse_hxw, parse_wxh
from carn_mobile.weights import (
    WeightsError,
    get_weights,
    is_shipped_name,
    load_model,
    resolve_recorded,
    resolve_weights,
    save_weights,
)

# --- scales -----------------------------------------------------------------------------------


def test_all_means_every_scale_the_model_has_and_the_papers_without_one() -> None:
    assert parse_scales("all") == parse_scales("multi") == PAPER_SCALES == (2, 3, 4)
    assert parse_scales("all", available=(4,)) == (4,)
    assert parse_scales("ALL", available=(2, 8)) == (2, 8)
    assert parse_scales("4,2", available=(2, 3, 4)) == (2, 4)
    with pytest.raises(ValueError, match=r"the weights have no x2 branch \(they have x4\)"):
        parse_scales("2", available=(4,))
    with pytest.raises(ValueError, match="bad scale spec '5': scales must be among 2, 3, 4"):
        parse_scales("5", available=(2, 3, 4))


def test_upsampler_stages_come_from_one_rule() -> None:
    assert [upsample_stages(s) for s in SUPPORTED_SCALES] == [(2,), (3,), (2, 2), (2, 2, 2)]
    net = build_model("carn-m", scales=SUPPORTED_SCALES)
    for s in SUPPORTED_SCALES:
        shuffles = [m.upscale_factor for m in net.upsample.branch(s).modules() if isinstance(m, torch.nn.PixelShuffle)]
        assert tuple(shuffles) == upsample_stages(s)
    with pytest.raises(ValueError, match="unsupported scale"):
        upsample_stages(5)


def test_receptive_field_follows_the_layers_of_any_depth() -> None:
    from carn_mobile.upscaling.receptive_field import receptive_field, spatial_layers

    shallow = build_model("carn", num_blocks=2, units_per_block=2)  # 1 + 2*2*2 + 1 = 10 LR-resolution convs
    rf = receptive_field(shallow, 4)
    assert rf.lr_convs == 10 and rf.hr_conv_factors == (2, 4)
    assert rf.radius == Fraction(10) + Fraction(1, 2) + Fraction(1, 4) and rf.overlap == 11
    assert receptive_field(shallow.config, 4) == rf  # from a config: the same layers, built to be walked
    kinds = [k for k, _, _ in spatial_layers(shallow, 4)]
    assert kinds.count("shuffle") == 2 and kinds[-1] == "conv"


# --- weights ----------------------------------------------------------------------------------


def test_one_resolver_says_what_a_weights_argument_means(tmp_path: Path) -> None:
    shipped = resolve_weights("carn-m")
    assert shipped.entry is get_weights("carn-m") and shipped.sha256 == shipped.entry.sha256
    assert shipped.arch == "carn-m" and shipped.spec == "carn-m" and shipped.path.is_file()
    assert resolve_weights(None, None).entry is shipped.entry  # the default
    assert is_shipped_name("CARN-M") and not is_shipped_name(str(tmp_path)) and not is_shipped_name(None)

    path = save_weights(carn_m(scales=(4,)), tmp_path / "mine.safetensors", arch="carn-m")
    mine = resolve_weights(None, path)
    assert mine.entry is None and mine.arch == "carn-m" and mine.path == path.resolve()
    assert mine.header and mine.header["arch"] == "carn-m" and len(mine.sha256) == 64
    assert mine.to_json() == {"model": "carn-m", "path": str(path.resolve()), "sha256": mine.sha256,
                              "license": "not recorded (user checkpoint)"}
    with pytest.raises(WeightsError, match="no shipped weights named 'carn'"):
        resolve_weights(None, "carn")  # a model name without weights, not "no such file"
    with pytest.raises(WeightsError, match="holds a carn-m model, not carn"):
        resolve_weights("carn", path)


def test_manifest_records_resolve_back_only_while_the_file_is_unchanged(tmp_path: Path) -> None:
    path = save_weights(carn_m(scales=(2,)), tmp_path / "w.safetensors", arch="carn-m")
    record = resolve_weights(None, path).to_json()
    assert resolve_recorded(record).sha256 == record["sha256"]
    assert resolve_recorded(resolve_weights("carn-m").to_json()).entry is get_weights("carn-m")
    save_weights(carn_m(scales=(2,)), path, arch="carn-m", force=True)  # new random weights
    with pytest.raises(WeightsError, match="pass the original checkpoint"):
        resolve_recorded(record)


def test_loaded_models_are_frozen_for_inference_unless_asked() -> None:
    from carn_mobile.models import count_params

    model = load_model("carn-m")
    assert not any(p.requires_grad for p in model.parameters())
    assert count_params(model) == 414_787  # counted by structure, frozen or not
    y = model(torch.rand(1, 3, 8, 8), 2)
    assert y.grad_fn is None  # no autograd graph even outside no_grad
    trainable = load_model("carn-m", trainable=True)
    assert sum(p.numel() for p in trainable.parameters() if p.requires_grad) == 414_787  # mean shifts stay fixed


# --- precisions -------------------------------------------------------------------------------


def test_the_precision_table_drives_parity_and_structural_checks() -> None:
    assert list(PRECISIONS) == ["fp32", "fp16", "int8", "w8a16"]
    assert parity_tolerance("fp32").to_json() == {"max_abs": 1e-4}
    assert parity_tolerance("fp16").to_json() == {"max_abs": 2e-2, "min_psnr_db": 50.0}
    assert parity_tolerance("fp32", image_output=True).min_psnr_db == 50.0
    assert get_precision("FP16").weight_dtype == "float16" and not get_precision("fp32").lossy
    with pytest.raises(ValueError, match="unknown precision 'int4'; use one of fp32, fp16, int8, w8a16"):
        get_precision("int4")
    assert get_precision("int8").quantized and not get_precision("fp16").quantized

    from carn_mobile.export import get_target, list_targets

    for name in list_targets():  # every target offers only precisions the table knows
        assert set(get_target(name).precisions) <= set(PRECISIONS), name


def test_graph_for_precision_follows_the_compute_dtype() -> None:
    from carn_mobile.export import HalfPrecision, graph_for_precision, per_scale_module

    module = per_scale_module(load_model("carn-m"), 2)
    assert graph_for_precision(module, "fp32") is module
    half = graph_for_precision(module, "fp16")
    assert isinstance(half, HalfPrecision) and next(half.parameters()).dtype == torch.float16


# --- registries -------------------------------------------------------------------------------


def test_bench_and_upscale_backends_derive_from_the_targets() -> None:
    from carn_mobile.bench.suite import backend_targets
    from carn_mobile.export import artifact_backends, get_target
    from carn_mobile.upscaling import available_backends

    backends = artifact_backends()
    assert backends == {"onnxruntime": "onnx", "ort": "ort", "torchscript-lite": "torchscript-lite",
                        "executorch": "executorch", "litert": "litert"}
    assert backend_targets() == {"torch": None, **backends}
    assert sorted(available_backends()) == sorted(["torch", *backends])
    assert all(get_target(t).backend == b for b, t in backends.items())


def test_per_format_decisions_are_declared_by_the_targets() -> None:
    from carn_mobile.bench.profile import profiled_backends
    from carn_mobile.cli import export as export_cli
    from carn_mobile.export import get_target, list_targets

    # The CLI's per-target groups are the targets' own declared options, and nothing else.
    parser = export_cli.build_parser()
    groups = {g.title: {a.dest for a in g._group_actions} for g in parser._action_groups}
    declared = {f"{t} target": {o.dest for o in get_target(t).options} for t in list_targets() if get_target(t).options}
    assert {k: v for k, v in groups.items() if k.endswith(" target")} == declared
    assert declared["litert target"] == {"layout", "int8_io"} and declared["web target"] == {
        "ort_web", "ort_web_url", "web_runtime", "litert_js"}
    assert profiled_backends() == {"onnxruntime": "onnx", "executorch": "executorch"}
    assert "aarch64" in get_target("litert").platform_limits
    quantizing = {t: get_target(t).quantizer.name for t in list_targets() if get_target(t).quantizer}
    assert quantizing == {"onnx": "onnxruntime-qdq", "executorch": "pt2e-xnnpack", "qnn": "onnxruntime-qnn",
                          "litert": "ai-edge-quantizer", "web": "onnxruntime-qdq"}
    assert all(get_target(t).quantizer for t in list_targets()
               if any(get_precision(p).quantized for p in get_target(t).precisions))


@pytest.mark.parametrize("module", ["carn_mobile.parity", "carn_mobile.environment", "carn_mobile.export.base"])
def test_modules_import_first_without_a_cycle_and_parity_stays_numerics(module: str) -> None:
    import subprocess
    import sys

    code = (f"import sys, {module}; "
            "loaded = sorted(m for m in sys.modules if m.startswith('carn_mobile.export')); "
            f"assert {module!r} != 'carn_mobile.parity' or not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_the_request_round_trips_through_its_manifest(tmp_path: Path) -> None:
    from dataclasses import replace

    from carn_mobile.export import ExportRequest, plan_exports
    from carn_mobile.quantization import CalibrationSource
    from carn_mobile.runtimes import parse_shape

    shipped = resolve_weights("carn-m")
    for target, precision, shape in (("onnx", "int8", "dynamic:8-64"), ("executorch", "int8", "24x32"),
                                     ("onnx", "fp16", "enumerated:24x32,32x48"), ("torchscript-lite", "fp32", "24x32")):
        calibration = CalibrationSource(count=8, patch=8) if precision == "int8" else None
        (job,), _ = plan_exports(shipped, (2, 3, 4), [target], [3], precision=precision, shape=parse_shape(shape),
                                 out_dir=tmp_path, calibration=calibration)
        back = ExportRequest.from_manifest(job.request.to_manifest(), job.target)
        expected = replace(job.request, metadata={})  # metadata is embedded in the artifact instead
        if back.quantization is not None and not job.target.reference_needs_calibration:
            # Only a target that quantizes again for its reference reads the calibration source back.
            expected = replace(expected, quantization=replace(expected.quantization,
                                                              calibration=back.quantization.calibration))
        assert back == expected, target


def test_artifact_backend_tiles_within_the_artifacts_largest_side(tmp_path: Path, monkeypatch) -> None:
    """ExecuTorch plans memory for a maximum side; the upscaler keeps every call inside it."""
    from carn_mobile.upscaling import Upscaler

    up = Upscaler(2, build_model("carn-m", channels=8, scales=(2,)).eval(), tile=None)
    monkeypatch.setattr(up.backend, "max_side", 64, raising=False)
    plan = up.plan(150, 90)
    assert plan.tile == 64 - 2 * up.overlap and plan.side_limit == 64
    assert "accepts LR sides up to 64" in up.describe_plan(plan, 150, 90)
    assert max(max(t.y1 - t.y0, t.x1 - t.x0) for t in plan.tiles) <= 64
    assert up.plan(60, 40).tile is None  # fits: one call
    monkeypatch.setattr(up.backend, "max_side", 40, raising=False)  # 40 - 2 * 21 leaves no core
    with pytest.raises(ValueError, match="accepts LR sides up to 40 leaves no core after an overlap of 21"):
        up.plan(150, 90)


@pytest.mark.parametrize("backend", ["torchscript-lite"])
def test_an_artifact_backend_upscales_like_torch(backend: str, tmp_path: Path, monkeypatch, one_torch_thread) -> None:
    from carn_mobile.upscaling import Upscaler

    monkeypatch.setenv("CARN_CACHE_DIR", str(tmp_path / "cache"))
    image = np.random.default_rng(0).integers(0, 256, (20, 26, 3), dtype=np.uint8)
    reference = Upscaler(2, "carn-m", tile=None).upscale(image)
    up = Upscaler(2, "carn-m", backend=backend, tile=12)
    assert up.backend.name == backend
    out = up.upscale(image)
    assert out.shape == (40, 52, 3) and np.abs(out.astype(int) - reference.astype(int)).max() <= 1
    assert list((tmp_path / "cache" / "torchscript-lite").rglob("*.ptl"))  # exported once, cached


# --- export orchestration ---------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def planned(self, weights, jobs, skipped) -> None:
        self.events.append(("planned", f"{weights.arch}:{len(jobs)}"))

    def started(self, job) -> None:
        self.events.append(("started", job.artifact.name))

    def finished(self, result) -> None:
        self.events.append(("finished", result.artifact.name))

    def failed(self, job, error) -> None:
        self.events.append(("failed", job.artifact.name))


def test_export_model_reports_each_step_and_can_keep_going(tmp_path: Path, monkeypatch, one_torch_thread) -> None:
    from carn_mobile.export import ExportIncomplete, export_model
    from carn_mobile.runtimes import get_runner

    rec = Recorder()
    (result,) = export_model("carn-m", targets=["torchscript-lite"], scales="2", shape=parse_hxw_shape("24x32"),
                             out_dir=tmp_path, listener=rec)  # fmt: skip
    assert rec.events == [("planned", "carn-m:1"), ("started", "carn-m_x2_fp32_24x32.ptl"),
                          ("finished", "carn-m_x2_fp32_24x32.ptl")]
    assert "built-in/random" in result.report.inputs and result.manifest["parity"]["inputs"] == result.report.inputs

    runner = type(get_runner("lite-interpreter"))
    real_load = runner.load
    calls = {"n": 0}

    def first_drifts(self, path):
        run = real_load(self, path)
        calls["n"] += 1
        return (lambda lr: run(lr) + 1e-3) if calls["n"] == 1 else run

    monkeypatch.setattr(runner, "load", first_drifts)
    rec = Recorder()
    with pytest.raises(ExportIncomplete) as info:
        export_model("carn-m", targets=["torchscript-lite"], scales="2,3", shape=parse_hxw_shape("24x32"),
                     out_dir=tmp_path / "two", listener=rec, keep_going=True)  # fmt: skip
    assert [e for e, _ in rec.events] == ["planned", "started", "failed", "started", "finished"]
    assert len(info.value.results) == 1 and len(info.value.failures) == 1
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["carn-m_x3_fp32_24x32.ptl",
                                                                    "carn-m_x3_fp32_24x32.ptl.json"]


def parse_hxw_shape(text: str):
    from carn_mobile.runtimes import parse_shape

    return parse_shape(text)


# --- sizes and consoles -----------------------------------------------------------------------


def test_top_level_upscale_is_a_plain_function() -> None:
    import inspect

    import carn_mobile

    assert inspect.isfunction(carn_mobile.upscale)
    assert carn_mobile.upscaling.__name__ == "carn_mobile.upscaling"  # the subpackage has its own name


def test_sizes_carry_their_axis_order() -> None:
    hr = parse_wxh("1280x720")
    assert hr == WxH(width=1280, height=720) and hr.width == 1280 and str(hr) == "1280x720"
    lr = parse_hxw("64x96")
    assert lr == HxW(height=64, width=96) and lr.width == 96 and str(lr) == "64x96"
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        parse_wxh("720p")
    with pytest.raises(ValueError, match="height first"):
        parse_hxw("64by96")


def test_consoles_do_not_wrap_when_output_is_not_a_terminal(monkeypatch) -> None:
    from carn_mobile.console import make_console

    monkeypatch.delenv("COLUMNS", raising=False)
    buf = io.StringIO()
    console = make_console(buf)
    line = "a sentence that is much longer than eighty columns " * 4
    console.print(line)
    assert buf.getvalue().strip() == line.strip()  # one line, not folded at 80


def test_gpu_data_packing_is_lossless_and_refuses_an_empty_source(tmp_path: Path, capsys) -> None:
    import runpy

    from PIL import Image

    tool = runpy.run_path(str(Path(__file__).resolve().parents[1] / "tools" / "pack_gpu_data.py"))
    assert tool["main"](["--shared", str(tmp_path / "none"), "--out", str(tmp_path / "out")]) == 2
    assert "no images under" in capsys.readouterr().err and not (tmp_path / "out").exists()
    src = tmp_path / "shared" / "data" / "train" / "T91"
    src.mkdir(parents=True)
    pixels = np.random.default_rng(0).integers(0, 256, (9, 13, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(src / "a.png")
    assert tool["main"](["--shared", str(tmp_path / "shared"), "--out", str(tmp_path / "out")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "train" / "T91" / "a.webp").convert("RGB")), pixels)


def test_every_subpackage_is_listed_for_the_wheel() -> None:
    """The README installs a wheel (not editable): a package missing from pyproject's list is
    absent from every install, though the checkout's tests would pass."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "carn_mobile").rglob("__init__.py")}
    assert found - {"carn_mobile.__pycache__"} <= listed, sorted(found - listed)

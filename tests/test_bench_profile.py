"""carn-bench --graphs, --profile and --sweep: what they measure, group and report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from carn_mobile.bench import profile, suite, sweep
from carn_mobile.cli.bench import main
from carn_mobile.export import per_scale_module
from carn_mobile.models import build_model
from carn_mobile.sizes import WxH
from carn_mobile.upscaling import Upscaler

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(argv) -> int:
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in argv])
    return int(done.value.code)


@pytest.mark.parametrize(
    ("shape", "kind"),
    [
        ((3, 1, 3, 64), "entry conv 3x3"),
        ((1, 1, 3, 3), "mean shift 1x1"),
        ((3, 4, 64, 64), "group conv 3x3 (residual-E)"),
        ((3, 1, 64, 64), "conv 3x3 (residual block)"),
        ((1, 1, 192, 64), "cascade 1x1 over concat"),
        ((1, 1, 64, 64), "1x1 64->64 (residual-E mix, cascade parts)"),
        ((3, 4, 64, 256), "upsampler conv 3x3"),
        ((3, 1, 64, 3), "exit conv 3x3"),
        ((3, 1, 64, 16), "exit conv 3x3"),  # onnxruntime pads 3 output channels to its block of 16
        ((3, 1, 256, 12), "exit conv 3x3 (before shuffle)"),
    ],
)
def test_conv_kinds(shape, kind):
    k, groups, c_in, c_out = shape
    assert profile.conv_kind(k, groups, c_in, c_out, 64) == kind


def test_op_kinds():
    assert profile.op_kind("DepthToSpace") == profile.op_kind("Depth To Space (NHWC, X32)") == "depth-to-space"
    assert profile.op_kind("Copy (NC, X32)") == profile.op_kind("Concat") == "concat copies"
    assert profile.op_kind("ReorderOutput") == "layout reorder (NCHWc)"
    assert profile.op_kind("Softmax") == "Softmax"


def test_conv_calls_count_every_conv_and_its_macs():
    torch.manual_seed(0)
    module = per_scale_module(build_model("carn-m").eval(), 2)
    calls = profile.conv_calls(module, torch.rand(1, 3, 10, 12), 64)
    kinds = [c.kind for c in calls]
    assert kinds.count("group conv 3x3 (residual-E)") == 18 and kinds.count("cascade 1x1 over concat") == 12
    assert kinds[0] == "mean shift 1x1" and kinds[1] == "entry conv 3x3" and kinds[-2:] == [
        "exit conv 3x3", "mean shift 1x1"]
    entry = calls[1]
    assert entry.macs == 64 * 10 * 12 * 3 * 9


def test_onnxruntime_profile_groups_kernel_time_by_kind(tmp_path):
    pytest.importorskip("onnxruntime")
    from conftest import quick_parity_settings

    from carn_mobile.export import export_model
    from carn_mobile.runtimes import parse_shape

    with quick_parity_settings():
        (result,) = export_model("carn-m", targets=["onnx"], scales=[2], shape=parse_shape("24x32"),
                                 out_dir=tmp_path, rewrites=())
    x = np.random.default_rng(0).random((1, 3, 24, 32), dtype=np.float32)
    kinds = profile.profile_onnxruntime(result.artifact, x, threads=1, runs=2, channels=64)
    assert "group conv 3x3 (residual-E)" in kinds and "depth-to-space" in kinds
    assert sum(k.calls for k in kinds.values()) >= 40
    assert all(k.ms >= 0 for k in kinds.values()) and sum(k.ms for k in kinds.values()) > 0


def test_profile_cli_writes_tables_for_both_graphs(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    md, js = tmp_path / "profile.md", tmp_path / "profile.json"
    assert _run(["--profile", "--hr", "64x48", "--scales", "4", "--backends", "onnxruntime", "--threads", "1",
                 "--runs", "1", "--markdown", md, "--json", js]) == 0
    report = json.loads(js.read_text())
    assert report["kind"] == "profile" and report["machine"]["cpu"]
    graphs = [(p["graph"], tuple(p["rewrites"])) for p in report["profiles"]]
    assert [g for g, _ in graphs] == ["plain", "optimized"] and graphs[0][1] == () and graphs[1][1]
    plain, optimized = report["profiles"]
    conv_macs = {k["kind"]: k["gmacs"] for k in plain["kinds"] if k["gmacs"]}
    assert sum(conv_macs.values()) == pytest.approx(plain["total_gmacs"], abs=0.006)  # both rounded
    assert "exit conv 3x3 (before shuffle)" in {k["kind"] for k in optimized["kinds"]}
    text = md.read_text()
    assert "| layer kind | ops | ms | share | GMAC | GMAC/s | of ceiling |" in text and "plain graph" in text
    assert "carn-bench --profile" in capsys.readouterr().out


def test_graph_rows_give_before_and_after(monkeypatch):
    monkeypatch.setattr(suite, "_skip_reason", lambda b: None)
    report = suite.run_benchmark(suite.BenchSettings(hr=(32, 24), models=["carn-m"], scales=[4], backends=["torch"],
                                                     threads=1, runs=1, warmup=0,
                                                     graphs=["plain", "cascade-as-sum", "optimized"]))
    rows = report["rows"]
    assert [r["graph"] for r in rows] == ["plain", "cascade-as-sum", "optimized"]
    assert rows[0]["speedup_vs_plain"] is None
    for r in rows[1:]:
        assert r["speedup_vs_plain"] == pytest.approx(
            rows[0]["latency_ms"]["median"] / r["latency_ms"]["median"], rel=0.02)
    assert suite.graph_rewrites("plain") == () and suite.graph_rewrites("optimized") is None
    assert suite.graph_rewrites("cascade-as-sum") == ("cascade-as-sum",)
    with pytest.raises(ValueError, match="unknown graph 'fast'"):
        suite.graph_rewrites("fast")


def test_bad_mode_options(capsys):
    assert _run(["--profile", "--sweep", "--no-progress"]) == 2
    assert "choose one of --video, --profile and --sweep" in capsys.readouterr().err
    assert _run(["--graphs", "fastest", "--no-progress"]) == 2
    assert "unknown graph 'fastest'" in capsys.readouterr().err
    assert _run(["--sweep", "--scales", "2,4"]) == 2
    assert "one model and one scale" in capsys.readouterr().err


def test_linear_fit_and_tiling_overhead_are_pure():
    def row(backend, mp, mode, ms, tiles=1):
        return {"backend": backend, "output": f"{mp}", "megapixels": mp, "mode": mode, "status": "ok",
                "tiles": tiles, "latency_ms": {"median": ms}}

    rows = [row("a", 1.0, "untiled", 100), row("a", 4.0, "untiled", 400), row("a", 9.0, "untiled", 1200),
            row("a", 9.0, "tiled", 990, tiles=15), {"backend": "a", "output": "16", "megapixels": 16.0,
                                                   "mode": "untiled", "status": "skipped", "reason": "x"}]
    fit = {(f["output"], f["mode"]): f for f in sweep.linear_fit(rows)}
    assert fit[("4.0", "untiled")]["ratio"] == 1.0 and fit[("4.0", "untiled")]["linear"]
    assert fit[("9.0", "untiled")]["ratio"] == pytest.approx(1200 / 900, rel=1e-3)
    assert not fit[("9.0", "untiled")]["linear"] and fit[("9.0", "tiled")]["linear"]
    (over,) = sweep.tiling_overhead(rows)
    assert over["tiles"] == 15 and over["overhead"] == pytest.approx(990 / 1200 - 1, abs=1e-3)


def test_sweep_measures_untiled_and_tiled_and_plots(tmp_path):
    settings = sweep.SweepSettings(sizes=(WxH(64, 48), WxH(128, 96)), backends=("torch",), threads=1, runs=1,
                                   warmup=0)
    report = sweep.run_sweep(settings)
    rows = report["rows"]
    assert [(r["output"], r["mode"]) for r in rows] == [("64x48", "untiled"), ("64x48", "tiled"),
                                                        ("128x96", "untiled"), ("128x96", "tiled")]
    assert all(r["status"] == "ok" and r["latency_ms"]["median"] > 0 and r["peak_mem_mb"] >= 0 for r in rows)
    assert rows[1]["tile"] == sweep.default_tile(Upscaler(4, "carn-m", tile=None))
    assert len(report["linear"]) == 4
    text = sweep.sweep_markdown(report)
    assert "## Where scaling leaves the line" in text and "## Tiling overhead at the default tile" in text
    png = tmp_path / "sweep.png"
    sweep.plot_sweep(report, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

"""carn-bench: the sweep's numbers, its report files and its failure paths."""

from __future__ import annotations

import json

import numpy as np
import pytest

from carn_mobile.bench import suite
from carn_mobile.bench.memory import peak_memory_mb
from carn_mobile.bench.timing import measure, percentile
from carn_mobile.cli.bench import main as bench_main


def _run(argv) -> int:
    with pytest.raises(SystemExit) as exit_info:
        bench_main([str(a) for a in argv])
    return exit_info.value.code


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_percentile_and_measure():
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 90) == pytest.approx(4.6)
    assert percentile([7.0], 90) == 7.0
    calls = []
    lat = measure(lambda: calls.append(1), runs=5, warmup=2)
    assert len(calls) == 7 and lat.runs == 5 and lat.min <= lat.median <= lat.p90 <= lat.max
    with pytest.raises(ValueError):
        measure(lambda: None, runs=0, warmup=0)


def test_peak_memory_sees_a_large_allocation():
    peak, method = peak_memory_mb(lambda: np.ones((64, 1024, 1024), np.uint8).sum())
    assert peak >= 60, (peak, method)


def test_lr_size_rounds_fractional_inputs():
    assert suite.lr_size((1280, 720), 3) == (427, 240)
    assert suite.lr_size((1280, 720), 4) == (320, 180)


def test_cli_writes_report_plots_and_markdown(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "bench.json"
    md = tmp_path / "bench.md"
    png = tmp_path / "latency.png"
    argv = ["--hr", "48x32", "--models", "carn-m", "--scales", "2,4", "--backends", "torch,onnxruntime",
            "--threads", "1", "--runs", "2", "--warmup", "1", "--json", out, "--markdown", md, "--plot", png,
            "--no-progress"]  # fmt: skip
    assert _run(argv) == 0
    report = json.loads(out.read_text())
    assert {"machine", "settings", "ceilings", "rows"} <= set(report)
    assert report["machine"]["threads"] == 1 and report["machine"]["cpu"]
    assert set(report["ceilings"]) == {"2", "4"}
    rows = report["rows"]
    assert [(r["scale"], r["backend"]) for r in rows] == [(2, "torch"), (2, "onnxruntime"), (4, "torch"),
                                                          (4, "onnxruntime")]  # fmt: skip
    for r in rows:
        assert r["status"] == "ok" and r["model"] == "carn-m"
        assert r["latency_ms"]["median"] > 0 and r["latency_ms"]["p90"] >= r["latency_ms"]["median"]
        assert r["size_bytes"] > 1_000_000 and r["gmacs_per_s"] > 0 and 0 < r["ceiling_fraction"]
        assert r["peak_mem_mb"] >= 0
    assert rows[2]["params"] == 294_147
    # Mult-Adds the paper's way at the requested output size: 48x32 is 1/600 of 1280x720.
    assert rows[2]["mult_adds"] == pytest.approx(32.48e9 / 600, rel=1e-3)
    assert rows[1]["speedup_vs_torch"] == pytest.approx(
        rows[0]["latency_ms"]["median"] / rows[1]["latency_ms"]["median"], rel=0.02
    )
    assert "| carn-m | x4 | 294,147 |" in md.read_text()
    for p in (png, tmp_path / "latency_quality.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "carn-m" in capsys.readouterr().out
    # Existing reports are kept unless --force, and nothing is measured first.
    before = out.read_bytes()
    assert _run(argv) == 2
    assert out.read_bytes() == before


def test_missing_runtime_is_reported_as_skipped(monkeypatch, tmp_path):
    monkeypatch.setattr(suite, "_skip_reason", lambda b: None if b == "torch" else "executorch not installed")
    report = suite.run_benchmark(
        suite.BenchSettings(hr=(24, 16), models=["carn-m"], scales=[4], backends=["torch", "executorch"],
                            threads=1, runs=1, warmup=0)  # fmt: skip
    )
    torch_row, skipped = report["rows"]
    assert torch_row["status"] == "ok"
    assert skipped["status"] == "skipped" and skipped["reason"] == "executorch not installed"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--hr", "720p"], "WIDTHxHEIGHT"),
        (["--backends", "tensorrt"], "unknown backend 'tensorrt'"),
        (["--models", "srcnn"], "unknown model 'srcnn'"),
        (["--scales", "5"], "scales must be among"),
        (["--plot", "x.svg"], "must name a .png"),
    ],
)
def test_bad_arguments(argv, message, capsys):
    assert _run([*argv, "--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_precisions_give_a_row_each_and_skip_what_a_backend_lacks(monkeypatch):
    monkeypatch.setattr(suite, "_skip_reason", lambda b: None)
    report = suite.run_benchmark(
        suite.BenchSettings(hr=(24, 16), models=["carn-m"], scales=[4], backends=["torch"], threads=1, runs=1,
                            warmup=0, precisions=["fp32", "int8"])  # fmt: skip
    )
    fp32, int8 = report["rows"]
    assert fp32["status"] == "ok" and fp32["precision"] == "fp32"
    assert int8["status"] == "skipped" and "fp32 only, not int8" in int8["reason"]
    assert report["settings"]["precisions"] == ["fp32", "int8"]
    assert "int8_instructions" in report["machine"]
    from carn_mobile.bench.report import markdown

    text = markdown(report)
    assert "| precision |" in text and "int8 dot-product instructions" in text
    assert suite._precision_skip("onnxruntime", "int8") is None

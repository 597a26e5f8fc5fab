"""The litert target: .tflite graphs the GPU delegate takes, NCHW or NHWC, fp32 or fp16 weights."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import hide_modules, quick_parity_settings

from carn_mobile.cli import export as export_cli
from carn_mobile.cli import parity as parity_cli
from carn_mobile.export import export_model, get_target, manifest_path, optimized_module, plan_exports
from carn_mobile.export.wrapper import per_scale_module, weight_counts
from carn_mobile.runtimes import MissingDependencyError, get_runner
from carn_mobile.weights import load_model, resolve_weights


def cli(main: Callable, *args: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return int(exit_info.value.code or 0)


def _available() -> str | None:
    try:
        get_target("litert").check_available()
    except MissingDependencyError as exc:
        return str(exc)
    return None


needs_litert = pytest.mark.skipif(_available() is not None, reason=str(_available()))


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    if _available():
        pytest.skip(_available())
    out = tmp_path_factory.mktemp("litert")
    made = {}
    with quick_parity_settings():
        for key, layout, precision, scale in (("nchw", "nchw", "fp32", 4), ("nhwc", "nhwc", "fp16", 3)):
            (result,) = export_model("carn-m", targets=["litert"], scales=[scale], precision=precision,
                                     out_dir=out / key, target_options={"litert": {"layout": layout}})
            made[key] = result.artifact
    return made


def details(artifact: Path) -> dict:
    return json.loads(manifest_path(artifact).read_text())["export"]["details"]


def test_graphs_have_depth_to_space_and_no_transpose_in_the_body(exports) -> None:
    nchw, nhwc = details(exports["nchw"]), details(exports["nhwc"])
    # x4: the first stage's 4 groups, then the exit conv moved before the last shuffle (one group)
    assert nchw["op_counts"]["DEPTH_TO_SPACE"] == 5 and nchw["op_counts"]["SPLIT"] == 1
    assert nchw["transposes"] == 2 and nchw["body_transposes"] == 0  # NCHW I/O: one in, one out
    assert nhwc["transposes"] == 0 and "TRANSPOSE" not in nhwc["op_counts"]
    assert "RESHAPE" not in nchw["op_counts"] and nchw["max_tensor_rank"] == 4
    for d in (nchw, nhwc):
        assert d["gpu_compatible"] and d["gpu_unsupported"] == []
        assert d["inputs"] == ["lr"] and d["outputs"] == ["sr"]
    assert nhwc["input_shape"][3] == 3 and nchw["input_shape"][1] == 3
    assert nhwc["weight_types"] == ["FLOAT16"] and nchw["weight_types"] == ["FLOAT32"]
    x3_weights = weight_counts(optimized_module(per_scale_module(load_model("carn-m"), 3))[0])[0]
    assert exports["nhwc"].stat().st_size < 2.3 * x3_weights  # float16: 2 bytes a weight and little else


def test_manifest_contract_says_the_layout(exports) -> None:
    manifest = json.loads(manifest_path(exports["nhwc"]).read_text())
    assert manifest["contract"]["input"]["layout"] == "NHWC"
    assert manifest["contract"]["input"]["shape"] == [1, "H", "W", 3]
    assert manifest["parity"]["status"] == "passed" and manifest["parity"]["runner"] == "litert"


def test_runner_resizes_and_transposes_to_match_the_model(exports) -> None:
    lr = np.random.default_rng(1).random((1, 3, 21, 30), dtype=np.float32)
    for key, scale, tol in (("nchw", 4, 1e-4), ("nhwc", 3, 2e-2)):
        module = per_scale_module(load_model("carn-m"), scale)
        with torch.no_grad():
            ref = module(torch.from_numpy(lr)).numpy()
        run = get_runner("litert").load(exports[key])
        for _ in range(2):  # a stored size of 32x48, run at 21x30 twice: the resize path
            sr = run(lr)
            assert sr.shape == ref.shape and np.abs(sr - ref).max() < tol
    assert cli(parity_cli.main, str(exports["nhwc"])) == 0


@needs_litert
def test_gpu_check_catches_ops_and_ranks_outside_the_delegate(tmp_path: Path) -> None:
    import litert_torch

    from carn_mobile.export.target_litert import analyze

    class Rank6(torch.nn.Module):
        def forward(self, x):
            return x.reshape(1, 2, 2, 2, 3, 4).permute(0, 2, 1, 3, 5, 4).reshape(1, 8, 12).cumsum(1)

    path = tmp_path / "bad.tflite"
    litert_torch.convert(Rank6().eval(), (torch.rand(1, 8, 3, 4),)).export(str(path))
    info = analyze(path)
    assert not info["gpu_compatible"]
    assert "CUMSUM" in info["gpu_unsupported"] and "rank-6 tensors" in info["gpu_unsupported"]


@needs_litert
def test_bad_options_fail_clearly(tmp_path: Path, capsys) -> None:
    with pytest.raises(ValueError, match="unknown layout 'nchwc'"):
        plan_exports(resolve_weights("carn-m"), (2, 3, 4), ["litert"], [2], out_dir=tmp_path,
                     target_options={"litert": {"layout": "nchwc"}})
    assert cli(export_cli.main, "--target", "onnx", "--layout", "nhwc", "--out", str(tmp_path)) == 2
    assert "options were given for litert" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_missing_extra_is_named_and_all_skips_the_target(tmp_path: Path, monkeypatch, capsys) -> None:
    hide_modules(monkeypatch, "litert_torch", "ai_edge_litert", "ai_edge_quantizer")
    assert cli(export_cli.main, "--target", "litert", "--out", str(tmp_path)) == 2
    assert 'pip install "carn-mobile[litert]"' in capsys.readouterr().err
    jobs, skipped = plan_exports(resolve_weights("carn-m"), (2, 3, 4), ["all"], [4], out_dir=tmp_path)
    assert "litert" not in {j.target.name for j in jobs}
    assert "carn-mobile[litert]" in next(s.reason for s in skipped if s.target == "litert")
    assert list(tmp_path.iterdir()) == []


@needs_litert
def test_a_converter_failure_is_one_line_and_writes_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    import litert_torch

    def refuse(*args, **kwargs):
        raise RuntimeError("error: 'tfl.conv_2d' op inferred shape [1, 64, 0, 0] is incompatible\n<huge MLIR dump>")

    monkeypatch.setattr(litert_torch, "convert", refuse)
    assert cli(export_cli.main, "--target", "litert", "--scale", "2", "--shape", "12x20", "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "litert-torch could not convert carn-m x2 at LR 12x20" in err and "huge MLIR" not in err
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []

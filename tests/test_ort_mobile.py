"""The ort target: ORT-format artifacts with their operator list, DCR by default, mobile usability recorded."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import quick_parity_settings

from carn_mobile.cli import export as export_cli
from carn_mobile.cli import parity as parity_cli
from carn_mobile.export import export_model, get_target, manifest_path
from carn_mobile.export.target_ort import CONFIG_SUFFIX, mobile_usability
from carn_mobile.export.wrapper import per_scale_module
from carn_mobile.fileio import OutputExistsError
from carn_mobile.runtimes import MissingDependencyError, get_runner
from carn_mobile.weights import load_model


def cli(main: Callable, *args: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return int(exit_info.value.code or 0)


@pytest.fixture(scope="module", autouse=True)
def quick(tmp_path_factory):
    try:
        get_target("ort").check_available()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    with quick_parity_settings():
        yield


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("ort")
    made = {}
    for form in ("dcr", "crd"):
        (result,) = export_model("carn-m", targets=["ort"], scales=[2], out_dir=out / form,
                                 target_options={"ort": {"depth_to_space": form}})
        made[form] = result.artifact
    return made


def test_artifact_config_and_manifest_are_written_together(exports) -> None:
    artifact = exports["dcr"]
    config = artifact.with_name(artifact.name + CONFIG_SUFFIX)
    assert sorted(p.name for p in artifact.parent.iterdir()) == sorted(
        [artifact.name, config.name, manifest_path(artifact).name])
    manifest = json.loads(manifest_path(artifact).read_text())
    assert manifest["parity"]["status"] == "passed" and manifest["parity"]["runner"] == "onnxruntime"
    entry = manifest["companions"][config.name]
    assert entry["sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    text = config.read_text()
    ops = {op for line in text.splitlines() if not line.startswith("#") for op in line.split(";")[2].split(",")}
    assert {"Conv", "DepthToSpace", "Add", "Clip"} <= ops  # Add: the cascade as a sum of convs
    assert artifact.name in text and "/tmp" not in text  # names the artifact, not the temporary model
    assert manifest["export"]["details"]["depth_to_space"] == "DCR"
    assert manifest["export"]["details"]["optimization_level"] == "basic"


def test_the_ort_file_runs_in_onnxruntime_like_the_model(exports) -> None:
    module = per_scale_module(load_model("carn-m"), 2)
    lr = np.random.default_rng(0).random((1, 3, 19, 23), dtype=np.float32)
    for artifact in exports.values():
        sr = get_runner("onnxruntime").load(artifact)(lr)
        with torch.no_grad():
            ref = module(torch.from_numpy(lr)).numpy()
        assert sr.shape == ref.shape and np.abs(sr - ref).max() < 1e-4
    assert cli(parity_cli.main, str(exports["dcr"])) == 0


def test_dcr_lets_nnapi_and_coreml_take_the_whole_graph(exports) -> None:
    usability = {form: json.loads(manifest_path(a).read_text())["export"]["details"]["mobile_usability"]
                 for form, a in exports.items()}
    for ep in ("NNAPI", "CoreML NeuralNetwork"):
        dcr, crd = usability["dcr"][ep], usability["crd"][ep]
        assert dcr["fixed_shapes"]["supported_nodes"] == dcr["nodes"] and dcr["fixed_shapes"]["partitions"] == 1
        assert crd["fixed_shapes"]["supported_nodes"] < crd["nodes"] and crd["fixed_shapes"]["partitions"] > 1
        assert crd["fixed_shapes"]["crd_depth_to_space_rejected"] == 1  # x2: one shuffle
        assert dcr["as_is"]["supported_nodes"] == 0  # NNAPI needs fixed sizes; the graph's H/W are dynamic
    # Core ML's MLProgram EP takes CRD once the shapes are fixed
    mlprogram = usability["crd"]["CoreML MLProgram"]
    assert mlprogram["fixed_shapes"]["supported_nodes"] == mlprogram["nodes"]


def test_usability_check_reads_a_plain_onnx_file(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2, mode="CRD"),
         helper.make_node("Relu", ["y"], ["z"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 4, 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 2, 8, 8])])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    nnapi = mobile_usability(path)["NNAPI"]
    assert nnapi["nodes"] == 2 and nnapi["as_is"]["supported_nodes"] == 1  # Relu only: CRD is refused


def test_failed_parity_leaves_no_artifact_config_or_manifest(tmp_path: Path, monkeypatch, capsys) -> None:
    runner = type(get_runner("onnxruntime"))
    real_load = runner.load
    monkeypatch.setattr(runner, "load", lambda self, path: (lambda lr: real_load(self, path)(lr) + 1e-3))
    out = tmp_path / "out"
    assert cli(export_cli.main, "--target", "ort", "--scale", "2", "--out", str(out)) == 1
    assert "failed parity" in capsys.readouterr().err
    assert not out.exists() or list(out.iterdir()) == []


def test_an_existing_config_is_not_overwritten_without_force(tmp_path: Path) -> None:
    config = tmp_path / ("carn-m_x2_fp32.ort" + CONFIG_SUFFIX)
    config.write_text("mine")
    with pytest.raises(OutputExistsError, match="required_operators.config"):
        export_model("carn-m", targets=["ort"], scales=[2], out_dir=tmp_path)
    assert config.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == [config.name]


def test_bad_options_fail_clearly(tmp_path: Path, capsys) -> None:
    with pytest.raises(ValueError, match="unknown depth-to-space form 'xyz'"):
        export_model("carn-m", targets=["ort"], scales=[2], out_dir=tmp_path,
                     target_options={"ort": {"depth_to_space": "xyz"}})
    assert cli(export_cli.main, "--target", "ort", "--precision", "int8", "--out", str(tmp_path)) == 2
    assert cli(export_cli.main, "--target", "onnx", "--depth-to-space", "dcr", "--out", str(tmp_path)) == 2
    assert "options were given for ort" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_carn_parity_checks_the_config_beside_the_artifact(exports, tmp_path: Path, capsys) -> None:
    import shutil

    artifact = exports["dcr"]
    for p in artifact.parent.iterdir():
        shutil.copy(p, tmp_path / p.name)
    copy = tmp_path / artifact.name
    config = copy.with_name(copy.name + CONFIG_SUFFIX)
    config.write_text(config.read_text() + "ai.onnx;1;Abs\n")
    assert cli(parity_cli.main, str(copy)) == 1
    assert "companion carn-m_x2_fp32.ort.required_operators.config: sha256 differs" in capsys.readouterr().err
    config.unlink()
    assert cli(parity_cli.main, str(copy)) == 1


def test_a_file_that_is_not_ort_format_fails_the_structural_check(tmp_path: Path) -> None:
    bogus = tmp_path / "m.ort"
    bogus.write_bytes(b"\x00" * 64)
    (check,) = get_target("ort").structural_check(bogus, None, None)
    assert not check.ok and "file identifier" in check.detail

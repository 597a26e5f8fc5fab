"""int8 ExecuTorch: PT2E with XNNPACK's quantizer, every conv quantized, the .pte loads and runs."""

from __future__ import annotations

import pytest
import torch
from conftest import quick_parity_settings
from torch import nn

pytest.importorskip("executorch.runtime")
pytest.importorskip("torchao.quantization.pt2e.quantize_pt2e")

from carn_mobile.export import export_model, recheck_artifact  # noqa: E402
from carn_mobile.quantization import CalibrationSource, Recipe  # noqa: E402
from carn_mobile.quantization.pt2e import PT2E_QUANTIZER, quantize_pt2e, unshare_parameters  # noqa: E402
from carn_mobile.runtimes import parse_shape  # noqa: E402


class _Recursive(nn.Module):
    """One conv applied twice, like CARN-M's recursive blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.relu(self.conv(x)))


def test_shared_parameters_get_one_copy_per_use_and_then_all_quantize() -> None:
    module = _Recursive().eval()
    x = torch.rand(1, 3, 8, 8)
    graph = torch.export.export(module, (x,)).module()
    assert unshare_parameters(graph) == 2  # weight and bias, once more each
    weights = [n for n in graph.graph.nodes if n.op == "get_attr"]
    assert len(weights) == 4 and all(len(n.users) == 1 for n in weights)
    with torch.no_grad():
        assert torch.equal(graph(x), module(x))  # copies: the same function
    calibration = CalibrationSource(count=8, patch=8).for_scale(2)
    converted, details = quantize_pt2e(module, x, None, calibration, PT2E_QUANTIZER.resolve(Recipe()))
    assert details["convs"] == details["quantized_convs"] == 2 and details["unshared_parameter_copies"] == 2


@pytest.fixture(scope="module")
def int8_pte(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("int8-pte")
    with quick_parity_settings():
        (result,) = export_model("carn-m", targets=["executorch"], scales=[4], precision="int8",
                                 shape=parse_shape("dynamic:8-64"), out_dir=out,
                                 calibration=CalibrationSource(count=8))
    return result


def test_int8_pte_loads_runs_and_is_delegated_to_xnnpack(int8_pte) -> None:
    m = int8_pte.manifest
    assert m["parity"]["status"] == "passed" and m["parity"]["reference"] == "quantized"
    details = m["export"]["details"]
    assert details["int8"]["quantized_convs"] == details["int8"]["convs"] > 0
    assert details["int8"]["unshared_parameter_copies"] > 0
    ops = details["delegated_ops"]
    assert ops["ops_delegated"] >= 0.95 * ops["ops"] and ops["partitions"] >= 1
    assert m["parity"]["quality"]["passed"]
    # The manifest records the recipe XNNPACK's quantizer applied, not onnxruntime's defaults.
    q = m["quantization"]
    assert q["quantizer"] == "pt2e-xnnpack" and q["recipe"]["method"] == "Histogram"
    assert q["recipe"]["activation_type"] == "int8" and q["recipe"]["output_grid"] is False
    assert details["int8"]["observers"]["activations"].startswith("HistogramObserver")


def test_carn_parity_quantizes_again_and_agrees(int8_pte) -> None:
    with quick_parity_settings():
        result = recheck_artifact(int8_pte.artifact)
    assert result.passed and result.report.runner == "executorch"


def test_carn_parity_refuses_other_calibration_patches_than_the_exports(int8_pte, tmp_path) -> None:
    import json

    from carn_mobile.export import manifest_path

    copy = tmp_path / int8_pte.artifact.name
    copy.write_bytes(int8_pte.artifact.read_bytes())
    manifest = json.loads(manifest_path(int8_pte.artifact).read_text())
    manifest["quantization"]["calibration"]["sha256"] = "0" * 64
    manifest_path(copy).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="calibration patches for .* differ from the export's"):
        recheck_artifact(copy)

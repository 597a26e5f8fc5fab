"""ONNX Runtime Mobile: the ORT format (``.ort``) with its reduced-build operator list beside it.

The ONNX graph of the onnx target, in DCR form by default (ORT's NNAPI and Core ML
NeuralNetwork execution providers take only DCR ``DepthToSpace``, its Core ML MLProgram EP takes
CRD only with fixed shapes; :mod:`.depth_to_space` makes DCR exact), converted with
``onnxruntime.tools.convert_onnx_models_to_ort`` in the fixed optimization style at the *basic*
level, so the saved graph keeps plain ONNX ops that the mobile EPs can take (the *all* level
fuses ops into CPU-only contrib kernels). ``<artifact>.required_operators.config`` is written
beside it for a reduced-operator onnxruntime build, and the manifest records how much of the
graph the NNAPI and Core ML EPs would take (:func:`mobile_usability`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..parity import StructuralCheck
from ..runtimes import require
from ..runtimes.quiet import captured_output
from .base import ExportOutcome, ExportRequest, Target, TargetOption
from .depth_to_space import FORMS, DCROps, depth_to_space_dcr, with_dcr_upsampler
from .target_onnx import OPSET, OnnxTarget, onnx_model
from .targets import register_target
from .wrapper import SuperResolver, graph_for_precision

#: ORT graph optimization level baked into the ``.ort`` (see the module docstring).
OPTIMIZATION_LEVEL = "basic"
#: Suffix of the operator list written beside each artifact.
CONFIG_SUFFIX = ".required_operators.config"

#: Execution providers the usability check estimates, with ORT's own supported-op tables.
MOBILE_EPS = {
    "NNAPI": "nnapi_supported_ops.md",
    "CoreML NeuralNetwork": "coreml_supported_neuralnetwork_ops.md",
    "CoreML MLProgram": "coreml_supported_mlprogram_ops.md",
}


@torch.library.custom_op("carn_onnx::depth_to_space_dcr", mutates_args=())
def _depth_to_space_dcr(x: torch.Tensor, block: int) -> torch.Tensor:
    """Exports as ONNX ``DepthToSpace`` mode DCR (eager: the same in PyTorch)."""
    return depth_to_space_dcr(x, block).contiguous()


@_depth_to_space_dcr.register_fake
def _depth_to_space_shape(x: torch.Tensor, block: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.new_empty((n, c // (block * block), h * block, w * block))


class OnnxDCROps(DCROps):
    """DCR stages as ONNX ``Split`` + ``DepthToSpace(mode="DCR")`` + ``Concat``."""

    def depth_to_space_one(self, x: torch.Tensor, block: int) -> torch.Tensor:
        return torch.ops.carn_onnx.depth_to_space_dcr(x, block)


def _onnx_translations() -> dict:
    from onnxscript import opset18 as op

    def depth_to_space_dcr(x, block: int):
        return op.DepthToSpace(x, blocksize=block, mode="DCR")

    return {torch.ops.carn_onnx.depth_to_space_dcr.default: depth_to_space_dcr}


@register_target
class OrtMobileTarget(Target):
    name = "ort"
    suffix = ".ort"
    runners = ("onnxruntime",)
    backend = "ort"
    rank = 12
    description = "ONNX Runtime Mobile (.ort, fixed optimizations) + required_operators.config, DCR DepthToSpace"
    requires = ("onnx", "onnxscript", "onnxsim", "onnxruntime", "onnxruntime.tools.convert_onnx_models_to_ort")
    precisions = ("fp32", "fp16")
    precision_note = "int8 is not done for the .ort format yet; use --target onnx (docs/int8.md)"
    companions = (CONFIG_SUFFIX,)
    options = (TargetOption("--depth-to-space", "depth_to_space", choices=FORMS,
                            help="upsampler form: dcr (default; what ORT's NNAPI and Core ML NeuralNetwork EPs "
                                 "take) or crd (PyTorch's PixelShuffle as exported)"),)

    def __init__(self, depth_to_space: str = "dcr") -> None:
        self.depth_to_space = depth_to_space

    def with_options(self, **options: Any) -> Target:
        form = str(options.pop("depth_to_space", self.depth_to_space)).lower()
        super().with_options(**options)
        if form not in FORMS:
            raise ValueError(f"unknown depth-to-space form {form!r} for the ort target; use {' or '.join(FORMS)}")
        return OrtMobileTarget(form)

    def export(self, module: SuperResolver, request: ExportRequest, out: Path) -> ExportOutcome:
        onnx = require("onnx", self.extra, "the ort target")
        dcr = self.depth_to_space == "dcr"
        graph = with_dcr_upsampler(module, OnnxDCROps()) if dcr else module
        model, notes = onnx_model(graph_for_precision(graph, request.precision), request,
                                  _onnx_translations() if dcr else None)
        with tempfile.TemporaryDirectory(prefix="carn-ort-") as tmp:
            source = Path(tmp) / "model.onnx"
            onnx.save(model, str(source))
            usability = mobile_usability(source)
            ort_file, config = convert_to_ort(source)
            out.write_bytes(ort_file.read_bytes())
            # The tool names the temporary model it read; name the artifact instead.
            config_bytes = config.read_text().replace(str(ort_file), out.name).encode()
        ops = sorted({n.op_type for n in model.graph.node})
        notes.append(f"{OPTIMIZATION_LEVEL} optimizations saved; depth-to-space {self.depth_to_space.upper()}")
        notes += [f"{ep}: {u['fixed_shapes']['supported_nodes']}/{u['nodes']} nodes in "
                  f"{u['fixed_shapes']['partitions']} partition(s) with fixed H/W" for ep, u in usability.items()]
        return ExportOutcome(
            notes=notes,
            details={"opset": OPSET, "ops": ops, "nodes": len(model.graph.node),
                     "depth_to_space": self.depth_to_space.upper(), "optimization_style": "Fixed",
                     "optimization_level": OPTIMIZATION_LEVEL, "mobile_usability": usability,
                     "required_operators": [line for line in config_bytes.decode().splitlines()
                                            if line and not line.startswith("#")]},
            companions={CONFIG_SUFFIX: config_bytes},
        )

    def structural_check(self, path: Path, request: ExportRequest, module: SuperResolver) -> list[StructuralCheck]:
        # The .ort is a flatbuffer onnx cannot read; parity loads it in onnxruntime itself.
        head = Path(path).read_bytes()[:8]
        return [StructuralCheck("ORT format", head[4:8] == b"ORTM", f"file identifier {head[4:8]!r}")]

    def versions(self) -> dict[str, str | None]:
        return OnnxTarget().versions()


def convert_to_ort(source: Path) -> tuple[Path, Path]:
    """``(model.ort, required_operators.config)`` converted from ``source`` in its own folder."""
    tool = require("onnxruntime.tools.convert_onnx_models_to_ort", "export", "the ort target")
    previous = os.environ.get("ORT_CONVERT_ONNX_MODELS_TO_ORT_OPTIMIZATION_LEVEL")
    # The tool reads its optimization level from this variable only; restore it afterwards.
    os.environ["ORT_CONVERT_ONNX_MODELS_TO_ORT_OPTIMIZATION_LEVEL"] = OPTIMIZATION_LEVEL
    try:
        with captured_output():
            tool.convert_onnx_models_to_ort(source, output_dir=source.parent,
                                            optimization_styles=[tool.OptimizationStyle.Fixed])
    finally:
        if previous is None:
            os.environ.pop("ORT_CONVERT_ONNX_MODELS_TO_ORT_OPTIMIZATION_LEVEL", None)
        else:
            os.environ["ORT_CONVERT_ONNX_MODELS_TO_ORT_OPTIMIZATION_LEVEL"] = previous
    (ort_file,) = source.parent.glob("*.ort")
    (config,) = source.parent.glob("*.config")
    return ort_file, config


def mobile_usability(source: Path) -> dict[str, dict[str, Any]]:
    """Per mobile EP: nodes, nodes it takes and partitions, as ORT's usability checker estimates
    them (``onnxruntime.tools.mobile_helpers``): ``as_is`` counts a node on a dynamic-size tensor
    as unsupported (NNAPI needs fixed sizes), ``fixed_shapes`` is the estimate once the app fixes
    H and W (``onnxruntime.tools.make_dynamic_shape_fixed``).

    ORT's checker matches op types only; its tables also state per-op limits, and the one that
    decides for CARN is applied here too: a ``DepthToSpace`` in CRD mode counts as unsupported
    where the table says DCR only (NNAPI, Core ML NeuralNetwork) or CRD needs fixed shapes
    (Core ML MLProgram, and this graph's H/W are dynamic).
    """
    onnx = require("onnx", "export", "the ort target")
    checker = require("onnxruntime.tools.mobile_helpers.usability_checker", "export", "the ort target")
    model = onnx.shape_inference.infer_shapes(onnx.load(str(source)))
    tables = Path(checker.__file__).parent
    result: dict[str, dict[str, Any]] = {}
    for ep, table in MOBILE_EPS.items():
        entry: dict[str, Any] = {}
        for key, fixed in (("as_is", True), ("fixed_shapes", False)):
            # Core ML MLProgram takes CRD once shapes are fixed; NNAPI and NeuralNetwork never do.
            crd_ok = ep == "CoreML MLProgram" and not fixed
            ops = _ModeAwareOps(checker._SupportedOpsChecker(str(tables / table)), crd_ok)
            info = checker.check_partitioning(model.graph, ops, require_fixed_input_sizes=fixed,
                                              max_rank=5 if ep.startswith("CoreML") else 999)
            entry["nodes"] = info.num_nodes
            entry[key] = {"supported_nodes": info.num_supported_nodes, "partitions": info.num_partitions,
                          "unsupported_ops": sorted(info.unsupported_ops),
                          "crd_depth_to_space_rejected": len(ops.rejected)}
        result[ep] = entry
    return result


class _ModeAwareOps:
    """ORT's supported-op checker, plus the DepthToSpace mode limit its tables state."""

    def __init__(self, inner: Any, crd_ok: bool) -> None:
        self.inner = inner
        self.crd_ok = crd_ok
        self.rejected: set[str] = set()

    def is_op_supported(self, node) -> bool:
        if not self.inner.is_op_supported(node):
            return False
        if node.op_type == "DepthToSpace" and not self.crd_ok:
            mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "DCR")
            if mode != "DCR":
                self.rejected.add(node.name)
                return False
        return True

    def get_caveats(self) -> list[str]:
        return self.inner.get_caveats()

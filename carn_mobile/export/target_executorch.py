"""ExecuTorch: a ``.pte`` program lowered to the XNNPACK delegate, dynamic H/W within bounds.

ExecuTorch plans its activation memory ahead of time for the largest accepted input, and
an app allocates that arena when it loads the program: with LR sides up to 1024 it was
8.6 GB, with 256 537 MB (CARN-M x4). Hence a smaller default maximum side than the other
targets; the planned size is recorded in the manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ..quantization.pt2e import PT2E_QUANTIZER
from ..runtimes import ShapeSpec, require, version_of
from ..runtimes.quiet import captured_output
from .base import ExportOutcome, ExportRequest, Target
from .targets import register_target
from .wrapper import SuperResolver, graph_for_precision


@register_target
class ExecuTorchTarget(Target):
    name = "executorch"
    suffix = ".pte"
    runners = ("executorch",)
    backend = "executorch"
    rank = 40
    description = "ExecuTorch program with the XNNPACK delegate (Android/iOS), dynamic H/W"
    extra = "executorch"
    requires = ("executorch.exir", "executorch.backends.xnnpack.partition.xnnpack_partitioner", "executorch.runtime")
    precisions = ("fp32", "fp16", "int8")
    default_max_side = 256
    quantizer = PT2E_QUANTIZER
    profiler = "executorch"
    #: The int8 reference is recomputed from the recipe and the calibration patches.
    reference_needs_calibration: ClassVar[bool] = True

    def export(self, module: SuperResolver, request: ExportRequest, out: Path) -> ExportOutcome:
        from ..quantization.pt2e import reference_function

        dynamic = request.export_dims()
        quantized: dict = {}
        reference = None
        if request.precision_row.quantized:
            converted, quantized = self._quantize(module, request)
            reference = reference_function(converted)  # the gate's reference: no second quantization
            graph_module = converted
        else:
            graph_module = graph_for_precision(module, request.precision)
        with captured_output():
            exir = require("executorch.exir", self.extra, "the executorch target")
            xnnpack = require("executorch.backends.xnnpack.partition.xnnpack_partitioner", self.extra,
                              "the executorch target")
            with torch.no_grad():
                exported = torch.export.export(graph_module, (request.example_input(),), dynamic_shapes=dynamic)
            edge = exir.to_edge_transform_and_lower(
                exported,
                partitioner=[xnnpack.XnnpackPartitioner()],
                constant_methods={"scale": request.scale},  # lets an app ask the program its scale
            )
            delegated = _count_delegate_calls(edge)
            program = edge.to_executorch()
        out.write_bytes(program.buffer)
        planned = int(sum(program.executorch_program.execution_plan[0].non_const_buffer_sizes))
        notes = [f"planned activation memory {planned / 2**20:.0f} MiB (allocated when an app loads the program)"]
        if quantized:
            notes.append(f"int8 PT2E: {quantized['quantized_convs']}/{quantized['convs']} convs quantized, "
                         f"{delegated['ops_delegated']}/{delegated['ops']} ops in {delegated['partitions']} XNNPACK "
                         "partitions")
        return ExportOutcome(
            notes=notes,
            reference=reference,
            details={"delegate": "XnnpackBackend", "delegated_partitions": delegated["partitions"],
                     "delegated_ops": delegated, "planned_memory_bytes": planned,
                     "constant_methods": {"scale": request.scale}, **({"int8": quantized} if quantized else {})},
        )

    def _quantize(self, module: SuperResolver, request: ExportRequest):
        """Quantize on a dynamic-size graph, whatever the request's shape: the calibration patches
        then go in at their own size (activation ranges are per tensor, not per pixel), and a
        fixed-size program is exported from the converted graph afterwards. Mirroring 48-pixel
        patches out to a 640x360 input made calibration take minutes."""
        from ..quantization.pt2e import quantize_pt2e

        assert request.quantization is not None, "a quantized request carries its recipe"
        calibration = request.quantization.calibration.for_scale(request.scale)
        side = max(request.shape.bounds[1], calibration.patches[0].shape[-1], 64)
        calibrated = replace(request, shape=ShapeSpec(min_side=2, max_side=side))
        return quantize_pt2e(module, calibrated.example_input(), calibrated.export_dims(), calibration,
                             request.quantization.recipe)

    def quantized_reference(self, path: Path, request: ExportRequest,
                            module: SuperResolver) -> Callable[[np.ndarray], np.ndarray]:
        """carn-parity: quantize again, deterministic for the recorded recipe and calibration."""
        from ..quantization.pt2e import reference_function

        converted, _ = self._quantize(module, request)
        return reference_function(converted)

    def versions(self) -> dict[str, str | None]:
        return {"executorch": version_of("executorch"), "torchao": version_of("torchao")}


def _count_delegate_calls(edge) -> dict[str, int]:
    """XNNPACK partitions, and how many of the program's compute ops run inside them."""
    program = edge.exported_program()
    calls = [n for n in program.graph_module.graph.nodes if n.op == "call_function"]
    partitions = [n for n in calls if "executorch_call_delegate" in str(n.target)]
    outside = [n for n in calls if n not in partitions and "getitem" not in str(n.target)
               and "sym_size" not in str(n.target) and not str(n.target).startswith("<built-in")]
    inside = 0
    for node in partitions:
        lowered = getattr(program.graph_module, node.args[0].target, None)
        original = getattr(lowered, "original_module", None)
        if original is not None:
            inside += sum(1 for n in original.graph.nodes if n.op == "call_function"
                          and "getitem" not in str(n.target))
    return {"partitions": len(partitions), "ops_delegated": inside, "ops": inside + len(outside)}

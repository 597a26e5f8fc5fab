"""ExecuTorch: a ``.pte`` program lowered to the XNNPACK delegate, dynamic H/W within bounds.

ExecuTorch plans its activation memory ahead of time for the largest accepted input, and
an app allocates that arena when it loads the program: with LR sides up to 1024 it was
8.6 GB, with 256 537 MB (CARN-M x4). Hence a smaller default maximum side than the other
targets; the planned size is recorded in the manifest.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..runtimes import INPUT_NAME, require, version_of
from ..runtimes.quiet import captured_output
from .base import ExportOutcome, ExportRequest, Target
from .registry import register_target
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
    precisions = ("fp32", "fp16")
    default_max_side = 256

    def export(self, module: SuperResolver, request: ExportRequest, out: Path) -> ExportOutcome:
        graph_module = graph_for_precision(module, request.precision)
        dynamic = None
        if request.shape.kind != "fixed":
            lo, hi = request.shape.bounds
            dynamic = {INPUT_NAME: {2: torch.export.Dim("height", min=max(lo, 2), max=hi),
                                    3: torch.export.Dim("width", min=max(lo, 2), max=hi)}}
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
        return ExportOutcome(
            notes=notes,
            details={"delegate": "XnnpackBackend", "delegated_partitions": delegated,
                     "planned_memory_bytes": planned, "constant_methods": {"scale": request.scale}},
        )

    def versions(self) -> dict[str, str | None]:
        return {"executorch": version_of("executorch")}


def _count_delegate_calls(edge) -> int:
    graph = edge.exported_program().graph_module.graph
    return sum(1 for n in graph.nodes if n.op == "call_function" and "executorch_call_delegate" in str(n.target))

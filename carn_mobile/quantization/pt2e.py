"""The recipe applied to PyTorch 2 export graphs: PT2E static quantization with XNNPACK's quantizer.

Per-channel symmetric int8 weights and int8 activations with the quantizer's own observers
(``get_symmetric_quantization_config``), calibrated on the recipe's patches, converted with
``convert_pt2e``. The converted graph computes the quantized model in float (quantize/
dequantize pairs around each op): it is the int8 reference the lowered program must match.

One fix is needed for CARN-M: its recursive blocks use the same parameters several times,
and PT2E quantizes a shared parameter at its first use only. The later uses kept float
weights behind int8 activations, which XNNPACK refuses when the program loads
("Failed to create convolution node 42 with code: xnn_status_invalid_parameter", then "Init
failed for backend XnnpackBackend: 0x1"). :func:`unshare_parameters` gives every use its own
copy first, so every conv is quantized (the copies are identical; only storage grows).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..runtimes import require
from ..runtimes.quiet import captured_output
from .calibration import CalibrationSet

#: What the manifest records as the observers of this path (the quantizer's defaults).
OBSERVERS = {"activations": "HistogramObserver (per tensor, int8)",
             "weights": "PerChannelMinMaxObserver (int8, symmetric)"}


def unshare_parameters(graph_module: torch.fx.GraphModule) -> int:
    """Give each use of a parameter used by several ops its own copy; returns how many copies."""
    copies = 0
    for node in list(graph_module.graph.nodes):
        if node.op != "get_attr" or len(node.users) < 2:
            continue
        value = _parameter(graph_module, node.target)
        if value is None:
            continue
        for user in list(node.users)[1:]:
            copies += 1
            name = f"_carn_unshared_{copies}"
            graph_module.register_parameter(name, torch.nn.Parameter(value.detach().clone(), requires_grad=False))
            with graph_module.graph.inserting_before(user):
                copy = graph_module.graph.get_attr(name)
            copy.meta = dict(node.meta)  # the quantizer reads shapes from the node's metadata
            user.replace_input_with(node, copy)
    graph_module.recompile()
    return copies


def _parameter(graph_module: torch.nn.Module, target: str) -> torch.nn.Parameter | None:
    """The parameter ``target`` names, or ``None`` for a buffer or constant."""
    try:
        return graph_module.get_parameter(target)
    except AttributeError:
        return None


def quantize_pt2e(module: torch.nn.Module, example: torch.Tensor, dynamic_shapes: dict | None,
                  calibration: CalibrationSet) -> tuple[torch.fx.GraphModule, dict[str, Any]]:
    """(converted fake-quantized graph, details): ``module`` exported (``dynamic_shapes`` must admit
    the calibration patches), made int8 and calibrated."""
    pt2e = require("torchao.quantization.pt2e.quantize_pt2e", "executorch", "int8 ExecuTorch")
    xnn_quantizer = require("executorch.backends.xnnpack.quantizer.xnnpack_quantizer", "executorch",
                            "int8 ExecuTorch")
    with captured_output(), torch.no_grad():
        exported = torch.export.export(module, (example,), dynamic_shapes=dynamic_shapes)
        graph = exported.module()
        copies = unshare_parameters(graph)
        quantizer = xnn_quantizer.XNNPACKQuantizer()
        quantizer.set_global(xnn_quantizer.get_symmetric_quantization_config(is_per_channel=True))
        prepared = pt2e.prepare_pt2e(graph, quantizer)
        for patch in calibration.patches:
            prepared(torch.from_numpy(np.ascontiguousarray(patch)))
        converted = pt2e.convert_pt2e(prepared)
    convs = sum(1 for n in converted.graph.nodes if n.op == "call_function" and "conv2d" in str(n.target))
    quantized = sum(1 for n in converted.graph.nodes if n.op == "call_function" and "conv2d" in str(n.target)
                    and isinstance(n.args[1], torch.fx.Node) and "dequantize" in str(n.args[1].target))
    return converted, {"observers": OBSERVERS, "unshared_parameter_copies": copies, "convs": convs,
                       "quantized_convs": quantized}


def reference_function(converted: torch.fx.GraphModule):
    """The converted graph as parity's reference: NCHW float32 numpy in and out."""

    @torch.no_grad()
    def run(lr: np.ndarray) -> np.ndarray:
        return converted(torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float32))).numpy()

    return run

"""The recipe applied to PyTorch 2 export graphs: PT2E static quantization with XNNPACK's quantizer.

Symmetric int8 weights (per channel by default) and int8 activations from XNNPACK's
``get_symmetric_quantization_config``, with the recipe's activation observer (the quantizer's
HistogramObserver by default, or MinMaxObserver), calibrated on the recipe's patches,
converted with ``convert_pt2e``; the recipe's float modules are left out of the annotation.
What this path can apply is declared in :data:`PT2E_QUANTIZER`; anything else is refused.
The converted graph computes the quantized model in float (quantize/dequantize pairs around
each op): it is the int8 reference the lowered program must match.

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
from .recipe import QuantizerSpec, Recipe

#: What XNNPACK's quantizer can apply: its int8-only kernels fix the types, and torchao's
#: observers offer min/max and histogram (L2-optimal) ranges, no percentile or entropy; the exit
#: conv's output cannot be pinned to the image grid through the quantizer's annotations.
PT2E_QUANTIZER = QuantizerSpec(
    name="pt2e-xnnpack",
    label="the executorch target's quantizer (PT2E, XNNPACKQuantizer)",
    defaults=Recipe(method="Histogram", per_channel=True, output_grid=False),
    accepts={"method": ("MinMax", "Histogram"), "percentile": (), "per_channel": (True, False),
             "output_grid": (False,), "float_modules": None},
    weight_types={8: ("int8",)},
    activation_types={8: ("int8",)},
)

#: The activation observer per calibration method.
_OBSERVERS = {"Histogram": "HistogramObserver", "MinMax": "MinMaxObserver"}


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


def _config(recipe: Recipe):
    """XNNPACK's symmetric config with the recipe's weight granularity and activation observer."""
    from dataclasses import replace

    xnn_quantizer = require("executorch.backends.xnnpack.quantizer.xnnpack_quantizer", "executorch",
                            "int8 ExecuTorch")
    observers = require("torchao.quantization.pt2e.observer", "executorch", "int8 ExecuTorch")
    config = xnn_quantizer.get_symmetric_quantization_config(is_per_channel=recipe.per_channel)
    observer = getattr(observers, _OBSERVERS[recipe.method]).with_args(eps=2**-12)  # the config's own eps
    activation = replace(config.input_activation, observer_or_fake_quant_ctr=observer)
    return replace(config, input_activation=activation, output_activation=activation)


def _outside(float_modules: dict[str, str]):
    """A node filter for the quantizer: ``False`` for ops inside a module the recipe keeps in float."""

    def keep(node: torch.fx.Node) -> bool:
        stack = node.meta.get("nn_module_stack") or {}
        names = [path for path, _ in stack.values()]
        return not any(n == m or n.startswith(m + ".") for n in names for m in float_modules)

    return keep


def quantize_pt2e(module: torch.nn.Module, example: torch.Tensor, dynamic_shapes: dict | None,
                  calibration: CalibrationSet, recipe: Recipe) -> tuple[torch.fx.GraphModule, dict[str, Any]]:
    """(converted fake-quantized graph, details): ``module`` exported (``dynamic_shapes`` must admit
    the calibration patches), made int8 with ``recipe`` (resolved by :data:`PT2E_QUANTIZER`) and calibrated."""
    pt2e = require("torchao.quantization.pt2e.quantize_pt2e", "executorch", "int8 ExecuTorch")
    xnn_quantizer = require("executorch.backends.xnnpack.quantizer.xnnpack_quantizer", "executorch",
                            "int8 ExecuTorch")
    if not PT2E_QUANTIZER.applies(recipe):
        raise ValueError("quantize_pt2e needs a recipe resolved by PT2E_QUANTIZER")
    with captured_output(), torch.no_grad():
        exported = torch.export.export(module, (example,), dynamic_shapes=dynamic_shapes)
        graph = exported.module()
        copies = unshare_parameters(graph)
        quantizer = xnn_quantizer.XNNPACKQuantizer()
        quantizer.set_global(_config(recipe))
        if recipe.float_modules:
            quantizer.set_filter_function(_outside(recipe.float_modules))
        prepared = pt2e.prepare_pt2e(graph, quantizer)
        for patch in calibration.patches:
            prepared(torch.from_numpy(np.ascontiguousarray(patch)))
        converted = pt2e.convert_pt2e(prepared)
    convs = sum(1 for n in converted.graph.nodes if n.op == "call_function" and "conv2d" in str(n.target))
    quantized = sum(1 for n in converted.graph.nodes if n.op == "call_function" and "conv2d" in str(n.target)
                    and isinstance(n.args[1], torch.fx.Node) and "dequantize" in str(n.args[1].target))
    weights = "PerChannelMinMaxObserver" if recipe.per_channel else "MinMaxObserver"
    observers = {"activations": f"{_OBSERVERS[recipe.method]} (per tensor, int8)",
                 "weights": f"{weights} (int8, symmetric)"}
    return converted, {"observers": observers, "unshared_parameter_copies": copies, "convs": convs,
                       "quantized_convs": quantized, "float_modules": dict(recipe.float_modules)}


def reference_function(converted: torch.fx.GraphModule):
    """The converted graph as parity's reference: NCHW float32 numpy in and out."""

    @torch.no_grad()
    def run(lr: np.ndarray) -> np.ndarray:
        return converted(torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float32))).numpy()

    return run

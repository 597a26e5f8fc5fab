"""The machine's own convolution ceiling: one 64->64 3x3 convolution at the LR size.

CARN's time is dominated by 64-channel 3x3 convolutions, so the best rate this machine
reaches on exactly that layer is the yardstick: each backend's achieved multiply-accumulates
per second are reported as a fraction of it, which makes numbers from different machines
comparable. The ceiling is the best over the engines available (PyTorch, and onnxruntime
when installed), each with the benchmark's thread count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .timing import measure

CHANNELS = 64


@dataclass(frozen=True)
class Ceiling:
    """Best achieved MAC/s on a 64-channel 3x3 conv of size ``width x height``."""

    width: int
    height: int
    macs_per_s: float
    engine: str
    per_engine: dict[str, float]

    def to_json(self) -> dict:
        return {
            "layer": f"conv3x3 {CHANNELS}->{CHANNELS} at {self.width}x{self.height}",
            "gmacs_per_s": round(self.macs_per_s / 1e9, 2),
            "engine": self.engine,
            "per_engine_gmacs_per_s": {k: round(v / 1e9, 2) for k, v in self.per_engine.items()},
        }


def conv_macs(width: int, height: int) -> int:
    return CHANNELS * CHANNELS * 9 * width * height


def _torch_rate(width: int, height: int, threads: int, runs: int, warmup: int) -> float:
    torch.set_num_threads(threads)
    conv = torch.nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1).eval()
    x = torch.rand(1, CHANNELS, height, width)
    with torch.inference_mode():
        lat = measure(lambda: conv(x), runs, warmup)
    return conv_macs(width, height) / (lat.median / 1e3)


def _onnxruntime_rate(width: int, height: int, threads: int, runs: int, warmup: int) -> float | None:
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((CHANNELS, CHANNELS, 3, 3)).astype(np.float32) * 0.05, "w")
    bias = numpy_helper.from_array(np.zeros(CHANNELS, np.float32), "b")
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], kernel_shape=[3, 3])
    graph = helper.make_graph(
        [node],
        "conv_ceiling",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, CHANNELS, height, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, CHANNELS, height, width])],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    x = rng.random((1, CHANNELS, height, width), dtype=np.float32)
    lat = measure(lambda: sess.run(None, {"x": x}), runs, warmup)
    return conv_macs(width, height) / (lat.median / 1e3)


def measure_ceiling(width: int, height: int, threads: int, runs: int = 10, warmup: int = 2) -> Ceiling:
    """Measure the conv ceiling at ``width x height`` (the LR size) with ``threads`` threads."""
    rates = {"torch": _torch_rate(width, height, threads, runs, warmup)}
    ort_rate = _onnxruntime_rate(width, height, threads, runs, warmup)
    if ort_rate is not None:
        rates["onnxruntime"] = ort_rate
    engine = max(rates, key=rates.__getitem__)
    return Ceiling(width, height, rates[engine], engine, rates)

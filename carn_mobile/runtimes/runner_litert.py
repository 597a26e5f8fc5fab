"""LiteRT artifacts (``.tflite``) in the ai-edge-litert interpreter (XNNPACK on the CPU).

The interpreter's signature runner resizes the input when its size differs from the stored
one, which is how one ``.tflite`` serves every accepted size. An NHWC artifact is fed and read
through transposes here, and int8 I/O through its quantization, so the runner keeps the NCHW
float32 contract of every other runner.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .base import LoadedArtifact, Runner, as_model_input
from .contract import INPUT_NAME, OUTPUT_NAME
from .optional import require, version_of
from .quiet import captured_output
from .runners import register_runner


def signature_call(interpreter, nhwc: bool) -> Callable[[np.ndarray], np.ndarray]:
    """The interpreter's signature as an NCHW float32 function: an NHWC model is fed and read
    through transposes, and an int8 input or output (``--int8-io``) is quantized / dequantized
    with its own scale and zero point, so every LiteRT artifact keeps the runners' contract."""
    signature = interpreter.get_signature_runner()
    details_in, details_out = signature.get_input_details()[INPUT_NAME], signature.get_output_details()[OUTPUT_NAME]
    announced = False

    def run(lr: np.ndarray) -> np.ndarray:
        nonlocal announced
        x = as_model_input(lr)
        if nhwc:
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        x = _to_integer(x, details_in)
        with captured_output(enabled=not announced):  # XNNPACK says hello on the first run
            sr = signature(**{INPUT_NAME: x})[OUTPUT_NAME]
        announced = True
        sr = _to_float(sr, details_out)
        if nhwc:
            sr = sr.transpose(0, 3, 1, 2)
        return np.array(sr, dtype=np.float32, copy=True)  # the runner reuses its buffers

    return run


def _to_integer(x: np.ndarray, details: dict) -> np.ndarray:
    if np.dtype(details["dtype"]) != np.int8:
        return x
    scale, zero = details["quantization"]
    return np.clip(np.rint(x / scale) + zero, -128, 127).astype(np.int8)


def _to_float(y: np.ndarray, details: dict) -> np.ndarray:
    if np.dtype(details["dtype"]) != np.int8:
        return y
    scale, zero = details["quantization"]
    return ((y.astype(np.float32) - zero) * np.float32(scale)).astype(np.float32)


@register_runner
class LiteRTRunner(Runner):
    name = "litert"
    extra = "litert"

    def load(self, path: str | Path) -> LoadedArtifact:
        interpreter_mod = require("ai_edge_litert.interpreter", self.extra, "running LiteRT artifacts")
        import torch

        from ..export.target_litert import read_metadata

        nhwc = read_metadata(path).get("carn_mobile.layout") == "NHWC"
        # One thread setting for every CPU engine in the process (see the onnxruntime runner).
        interpreter = interpreter_mod.Interpreter(model_path=str(path), num_threads=torch.get_num_threads())
        return signature_call(interpreter, nhwc)

    def versions(self) -> dict[str, str | None]:
        return {"ai-edge-litert": version_of("ai-edge-litert")}

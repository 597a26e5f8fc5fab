"""ONNX artifacts (``.onnx``) in ONNX Runtime's CPU execution provider."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import LoadedArtifact, Runner, as_model_input
from .contract import INPUT_NAME, OUTPUT_NAME
from .optional import require, version_of
from .runners import register_runner


@register_runner
class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"
    extra = "export"

    def load(self, path: str | Path) -> LoadedArtifact:
        ort = require("onnxruntime", self.extra, "running ONNX artifacts")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only; ORT warns about unused initializers
        # One thread setting for every CPU engine in the process: torch's (set_num_threads),
        # which the lite interpreter uses too, so benchmarks compare like with like.
        import torch

        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def run(lr: np.ndarray) -> np.ndarray:
            (sr,) = session.run([OUTPUT_NAME], {INPUT_NAME: as_model_input(lr)})
            return np.array(sr, dtype=np.float32, copy=True)

        return run

    def versions(self) -> dict[str, str | None]:
        return {"onnxruntime": version_of("onnxruntime")}

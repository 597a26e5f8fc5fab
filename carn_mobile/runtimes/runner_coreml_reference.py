"""Core ML packages without Core ML: the NumPy reference executor of :mod:`carn_mobile.mlprogram`.

It runs the ML program stored in the package op by op (fp16 programs with fp16 rounding), so
Core ML exports get measured parity on Linux and in CI. The ``coreml`` target lists
``coreml-predict`` first, so on macOS Core ML itself runs; this runner is the fallback elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import LoadedArtifact, Runner, as_model_input
from .contract import INPUT_NAME, OUTPUT_NAME
from .optional import require, version_of
from .runners import register_runner


@register_runner
class CoreMLReferenceRunner(Runner):
    name = "coreml-reference"
    extra = "export"

    def load(self, path: str | Path) -> LoadedArtifact:
        require("coremltools", self.extra, "reading Core ML packages")  # its proto classes parse the spec
        from ..mlprogram import UnsupportedOpError, load_program

        program = load_program(path)
        unsupported = program.unsupported_ops()
        if unsupported:
            raise UnsupportedOpError(f"{Path(path).name} uses ops the reference executor lacks: {unsupported}")
        image_in = program.inputs[0].kind == "image"
        image_out = program.outputs[0].kind == "image"

        def run(lr: np.ndarray) -> np.ndarray:
            x = as_model_input(lr)
            # Around an image model Core ML hands 8-bit pixels in and stores an 8-bit image out.
            feed = np.rint(np.clip(x, 0.0, 1.0) * 255.0) if image_in else x
            sr = program.run({INPUT_NAME: feed})[OUTPUT_NAME].astype(np.float32)
            if image_out:
                sr = np.clip(np.rint(sr), 0.0, 255.0) / 255.0
            return np.array(sr, dtype=np.float32, copy=True)

        return run

    def versions(self) -> dict[str, str | None]:
        return {"coremltools": version_of("coremltools"), "executor": "carn_mobile.mlprogram (NumPy)"}

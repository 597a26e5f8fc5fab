"""Core ML packages (``.mlpackage``) through Core ML itself; that needs macOS.

Elsewhere the runner reports itself unavailable, and the ``coreml`` target's next runner,
``coreml-reference`` (the NumPy executor of :mod:`carn_mobile.mlprogram`), runs the package.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import numpy as np

from .base import LoadedArtifact, Runner, RunnerUnavailable, as_model_input
from .contract import INPUT_NAME, OUTPUT_NAME
from .optional import require, version_of
from .runners import register_runner


@register_runner
class CoreMLPredictRunner(Runner):
    name = "coreml-predict"
    extra = "export"

    def unavailable_reason(self) -> str | None:
        if sys.platform != "darwin":
            return f"Core ML predict runs only on macOS (this machine runs {platform.system()})"
        return None

    def load(self, path: str | Path) -> LoadedArtifact:
        reason = self.unavailable_reason()
        if reason:
            raise RunnerUnavailable(reason)
        ct = require("coremltools", self.extra, "running Core ML packages")
        model = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.ALL)
        inputs = model.get_spec().description.input
        image_in = inputs[0].type.WhichOneof("Type") == "imageType"

        def run(lr: np.ndarray) -> np.ndarray:
            x = as_model_input(lr)
            feed = {INPUT_NAME: _to_image(x) if image_in else x}
            sr = model.predict(feed)[OUTPUT_NAME]
            if not isinstance(sr, np.ndarray):  # image output: a PIL image
                sr = np.asarray(sr.convert("RGB"), dtype=np.float32).transpose(2, 0, 1)[None] / 255.0
            return np.array(sr, dtype=np.float32, copy=True)

        return run

    def versions(self) -> dict[str, str | None]:
        return {"coremltools": version_of("coremltools"), "macos": platform.mac_ver()[0] or None}


def _to_image(lr: np.ndarray):
    from PIL import Image

    pixels = np.rint(np.clip(lr[0].transpose(1, 2, 0), 0.0, 1.0) * 255.0).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")

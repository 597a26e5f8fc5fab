"""QDQ and EPContext ONNX models on Qualcomm's HTP, in onnxruntime-qnn's emulator (Linux x86-64).

A QDQ model is compiled when it is loaded (for the EP's default SoC: the HTP's arithmetic is
the same on every SoC the table lists); an EPContext model runs the context binary it carries,
for the SoC it was compiled for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import LoadedArtifact, Runner, RunnerUnavailable, as_model_input
from .contract import INPUT_NAME, OUTPUT_NAME
from .optional import version_of
from .qnn import emulator_unavailable, htp_session, qnn_versions
from .runners import register_runner


@register_runner
class QnnHtpRunner(Runner):
    name = "qnn-htp"
    extra = "qnn"

    def unavailable_reason(self) -> str | None:
        return emulator_unavailable()

    def load(self, path: str | Path) -> LoadedArtifact:
        reason = self.unavailable_reason()
        if reason:
            raise RunnerUnavailable(reason)
        session = htp_session(path)

        def run(lr: np.ndarray) -> np.ndarray:
            (sr,) = session.run([OUTPUT_NAME], {INPUT_NAME: as_model_input(lr)})
            return np.array(sr, dtype=np.float32, copy=True)

        return run

    def versions(self) -> dict[str, str | None]:
        return {"onnxruntime": version_of("onnxruntime"), **qnn_versions()}

    def describe(self) -> str | None:
        v = qnn_versions()
        return (f"QNN EP {v['onnxruntime-qnn']}, QNN SDK {v['qnn-sdk']}: the HTP backend in emulation "
                "(the NPU's numerics and partitioning, not its speed)")

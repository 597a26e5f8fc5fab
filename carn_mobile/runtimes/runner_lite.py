"""TorchScript-lite artifacts (``.ptl``) in PyTorch's lite interpreter (PyTorch Mobile's runtime)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import LoadedArtifact, Runner, as_model_input
from .runners import register_runner


@register_runner
class LiteInterpreterRunner(Runner):
    name = "lite-interpreter"
    extra = "export"  # nothing beyond torch itself

    def load(self, path: str | Path) -> LoadedArtifact:
        from torch.jit.mobile import _load_for_lite_interpreter

        module = _load_for_lite_interpreter(str(path))

        def run(lr: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                sr = module(torch.from_numpy(as_model_input(lr)))
            return sr.detach().to(torch.float32).numpy().copy()

        return run

    def versions(self) -> dict[str, str | None]:
        return {"torch": torch.__version__}

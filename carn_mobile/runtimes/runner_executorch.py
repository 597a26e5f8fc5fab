"""ExecuTorch artifacts (``.pte``) in ExecuTorch's Python runtime, XNNPACK delegate included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import LoadedArtifact, Runner, as_model_input
from .optional import require, version_of
from .quiet import captured_output
from .runners import register_runner


@register_runner
class ExecuTorchRunner(Runner):
    name = "executorch"
    extra = "executorch"

    def load(self, path: str | Path) -> LoadedArtifact:
        with captured_output():  # the runtime logs CPU probing to stderr from C++
            runtime_mod = require("executorch.runtime", self.extra, "running ExecuTorch artifacts")
            follow_torch_threads()
            program = runtime_mod.Runtime.get().load_program(Path(path))
            method = program.load_method("forward")
        if method is None:
            raise RuntimeError(f"{Path(path).name} has no 'forward' method")

        def run(lr: np.ndarray) -> np.ndarray:
            # The runtime ignores strides: hand it a contiguous tensor, never a view.
            x = torch.from_numpy(as_model_input(lr)).contiguous()
            with captured_output():
                (sr,) = method.execute([x])
            # Outputs live in the method's memory and the next execute overwrites them.
            return sr.detach().to(torch.float32).numpy().copy()

        return run

    def versions(self) -> dict[str, str | None]:
        return {"executorch": version_of("executorch")}


def follow_torch_threads() -> int:
    """Size ExecuTorch's thread pool (XNNPACK's workers) to torch's thread count, the one
    setting every CPU engine in the process follows (``carn-bench --threads``); returns it.

    The runtime otherwise keeps its own default (one thread per core), whatever was asked.
    Resizing is only safe with no method executing, hence here, at load.
    """
    from executorch.extension.pybindings import portable_lib

    wanted = torch.get_num_threads()
    if portable_lib._threadpool_get_thread_count() != wanted:
        portable_lib._unsafe_reset_threadpool(wanted)
    return portable_lib._threadpool_get_thread_count()

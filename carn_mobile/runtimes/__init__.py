"""Runners: load an exported artifact in its own runtime and run it under the one I/O contract.

``run(artifact, lr) -> sr`` is the whole interface; one module ``runner_<runtime>.py`` per
runtime (onnxruntime, the PyTorch lite interpreter, ExecuTorch, Core ML) registers itself.
"""

from .base import LoadedArtifact, Runner, RunnerUnavailable, as_model_input
from .contract import (
    INPUT_NAME,
    OUTPUT_NAME,
    SHAPE_HELP,
    ShapeSpec,
    contract_json,
    parse_shape,
    parse_size,
)
from .optional import MissingDependencyError, require, version_of
from .registry import get_runner, list_runners, register_runner, run, runner_for_path, runners_for_target

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "SHAPE_HELP",
    "LoadedArtifact",
    "MissingDependencyError",
    "Runner",
    "RunnerUnavailable",
    "ShapeSpec",
    "as_model_input",
    "contract_json",
    "get_runner",
    "list_runners",
    "parse_shape",
    "parse_size",
    "register_runner",
    "require",
    "run",
    "runner_for_path",
    "runners_for_target",
    "version_of",
]

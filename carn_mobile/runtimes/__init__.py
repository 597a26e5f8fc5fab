"""Runners: load an exported artifact in its own runtime and run it under the one I/O contract.

``load(artifact)(lr) -> sr`` is the whole interface; one module ``runner_<runtime>.py`` per
runtime (onnxruntime, the PyTorch lite interpreter, ExecuTorch, Core ML), listed in
:data:`RUNNER_MODULES`. Which runner executes which artifact is the export target's decision.
"""

from .base import LoadedArtifact, Runner, RunnerUnavailable, as_model_input
from .contract import (
    INPUT_NAME,
    LAYOUTS,
    OUTPUT_NAME,
    SHAPE_HELP,
    ShapeSpec,
    contract_json,
    parse_shape,
)
from .optional import MissingDependencyError, UnsupportedPlatformError, require, version_of
from .runners import RUNNER_MODULES, get_runner, list_runners, register_runner

__all__ = [
    "RUNNER_MODULES",
    "INPUT_NAME",
    "LAYOUTS",
    "OUTPUT_NAME",
    "SHAPE_HELP",
    "LoadedArtifact",
    "MissingDependencyError",
    "UnsupportedPlatformError",
    "Runner",
    "RunnerUnavailable",
    "ShapeSpec",
    "as_model_input",
    "contract_json",
    "get_runner",
    "list_runners",
    "parse_shape",
    "register_runner",
    "require",
    "version_of",
]

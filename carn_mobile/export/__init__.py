"""Export CARN/CARN-M to mobile formats, one artifact per (model, scale, target), parity-gated.

Targets (one ``target_*.py`` module each): ``onnx``, ``coreml``, ``torchscript-lite``,
``executorch``. Every artifact follows the contract in :mod:`carn_mobile.runtimes.contract`,
passes :mod:`carn_mobile.parity` before it is written, and gets a JSON manifest beside it.

>>> from carn_mobile.export import export_model
>>> results = export_model("carn-m", targets=["onnx"], scales=[4])  # doctest: +SKIP
"""

from .base import PRECISIONS, ExportOutcome, ExportRequest, Target
from .manifest import MANIFEST_FORMAT, artifact_filename, manifest_path, read_manifest
from .pipeline import (
    DEFAULT_OUT_DIR,
    ExportJob,
    ExportResult,
    SkippedTarget,
    export_model,
    plan_exports,
    run_export,
)
from .recheck import RecheckResult, recheck_artifact
from .registry import get_target, list_targets, register_target, target_for_suffix
from .weights_source import WeightsSource, load_from_source, resolve_weights
from .wrapper import HalfPrecision, SuperResolver, per_scale_module

__all__ = [
    "DEFAULT_OUT_DIR",
    "MANIFEST_FORMAT",
    "PRECISIONS",
    "ExportJob",
    "ExportOutcome",
    "ExportRequest",
    "ExportResult",
    "HalfPrecision",
    "RecheckResult",
    "SkippedTarget",
    "SuperResolver",
    "Target",
    "WeightsSource",
    "artifact_filename",
    "export_model",
    "get_target",
    "list_targets",
    "load_from_source",
    "manifest_path",
    "per_scale_module",
    "plan_exports",
    "read_manifest",
    "recheck_artifact",
    "register_target",
    "resolve_weights",
    "run_export",
    "target_for_suffix",
]

"""Export CARN/CARN-M to mobile formats, one artifact per (model, scale, target), parity-gated.

Targets are listed in :data:`.registry.TARGET_MODULES`. Every artifact is traced from the
per-scale module with the exact graph rewrites of :mod:`.rewrites` applied, follows the contract
in :mod:`carn_mobile.runtimes.contract`, passes :mod:`carn_mobile.parity` against the
unmodified model before it is written, and gets a JSON manifest beside it.

>>> from carn_mobile.export import export_model
>>> results = export_model("carn-m", targets=["onnx"], scales=[4])  # doctest: +SKIP
"""

from .base import ExportOutcome, ExportRequest, Target
from .manifest import MANIFEST_FORMAT, artifact_filename, manifest_path, read_manifest
from .pipeline import (
    DEFAULT_OUT_DIR,
    ExportIncomplete,
    ExportJob,
    ExportListener,
    ExportResult,
    SkippedTarget,
    export_model,
    plan_exports,
    run_export,
)
from .recheck import RecheckResult, recheck_artifact
from .registry import (
    TARGET_MODULES,
    artifact_backends,
    get_target,
    list_targets,
    register_target,
    run,
    runner_for_path,
    runners_for_target,
    target_for_path,
)
from .rewrites import DEFAULT_REWRITES, REWRITES, optimized_module, parse_rewrites
from .wrapper import HalfPrecision, SuperResolver, graph_for_precision, per_scale_module

__all__ = [
    "DEFAULT_OUT_DIR",
    "DEFAULT_REWRITES",
    "REWRITES",
    "MANIFEST_FORMAT",
    "TARGET_MODULES",
    "ExportIncomplete",
    "ExportJob",
    "ExportListener",
    "ExportOutcome",
    "ExportRequest",
    "ExportResult",
    "HalfPrecision",
    "RecheckResult",
    "SkippedTarget",
    "SuperResolver",
    "Target",
    "artifact_backends",
    "artifact_filename",
    "export_model",
    "get_target",
    "graph_for_precision",
    "list_targets",
    "manifest_path",
    "optimized_module",
    "parse_rewrites",
    "per_scale_module",
    "plan_exports",
    "read_manifest",
    "recheck_artifact",
    "register_target",
    "run",
    "runner_for_path",
    "runners_for_target",
    "run_export",
    "target_for_path",
]

"""Export CARN/CARN-M to mobile formats, one artifact per (model, scale, target), parity-gated.

Targets are listed in :data:`.targets.TARGET_MODULES`. Every artifact is traced from the
per-scale module with the exact graph rewrites of :mod:`.rewrites` applied, follows the contract
in :mod:`carn_mobile.runtimes.contract`, passes the gate (:mod:`.gate`: structure, parity
against the unmodified model, quality for quantized precisions) before it is written, and gets
a JSON manifest beside it (:mod:`.manifest`).

>>> from carn_mobile.export import export_model
>>> results = export_model("carn-m", targets=["onnx"], scales=[4])  # doctest: +SKIP
"""

from .base import ExportOutcome, ExportRequest, Target, TargetOption
from .gate import GateResult, check_artifact
from .manifest import BUNDLE_FORMAT, MANIFEST_FORMAT, artifact_filename, is_bundle, manifest_path, read_manifest
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
from .recheck import BundleRecheck, RecheckResult, recheck_artifact
from .rewrites import DEFAULT_REWRITES, REWRITES, optimized_module, parse_rewrites
from .targets import (
    TARGET_MODULES,
    ArtifactLoadError,
    OpenedArtifact,
    artifact_backends,
    get_target,
    list_targets,
    open_artifact,
    register_target,
    run,
    runners_for_target,
    target_for_path,
    usable_runners,
)
from .wrapper import HalfPrecision, SuperResolver, graph_for_precision, per_scale_module

__all__ = [
    "BUNDLE_FORMAT",
    "DEFAULT_OUT_DIR",
    "DEFAULT_REWRITES",
    "REWRITES",
    "MANIFEST_FORMAT",
    "TARGET_MODULES",
    "ArtifactLoadError",
    "BundleRecheck",
    "ExportIncomplete",
    "ExportJob",
    "ExportListener",
    "ExportOutcome",
    "ExportRequest",
    "ExportResult",
    "GateResult",
    "HalfPrecision",
    "OpenedArtifact",
    "RecheckResult",
    "SkippedTarget",
    "SuperResolver",
    "Target",
    "TargetOption",
    "artifact_backends",
    "artifact_filename",
    "check_artifact",
    "export_model",
    "get_target",
    "graph_for_precision",
    "is_bundle",
    "list_targets",
    "manifest_path",
    "open_artifact",
    "optimized_module",
    "parse_rewrites",
    "per_scale_module",
    "plan_exports",
    "read_manifest",
    "recheck_artifact",
    "register_target",
    "run",
    "runners_for_target",
    "run_export",
    "target_for_path",
    "usable_runners",
]

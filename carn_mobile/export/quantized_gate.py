"""The int8 gate around an export: which reference parity compares with, and the quality check.

For a quantized precision, parity (runtime fidelity) compares the artifact with the target's
quantized reference, and :func:`check_quality` then bounds what quantization cost against
float32 (:mod:`carn_mobile.quantization.quality`). Used by the export pipeline and by
``carn-parity``, so both gate alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..parity import ParityCase, ParityPolicy, Reference, pick_runner
from ..quantization.quality import QualityReport, measure_quality, quality_sets
from ..runtimes import RunnerUnavailable
from .base import ExportRequest, Target
from .wrapper import SuperResolver


def gate_reference(target: Target, path: Path, request: ExportRequest, module: SuperResolver,
                   exported: SuperResolver) -> Reference:
    """What parity compares ``path`` with: ``module`` (float32, as trained), or for a quantized
    precision the quantized reference of ``exported`` (the module the target converted)."""
    if request.precision_row.quantized:
        return target.quantized_reference(path, request, exported)
    return module


def check_quality(target: Target, path: Path, request: ExportRequest, module: SuperResolver,
                  cases: Sequence[ParityCase], policy: ParityPolicy) -> QualityReport | None:
    """The quality report of a quantized artifact (``None`` for float precisions)."""
    if not request.precision_row.quantized:
        return None
    runner, why_not = pick_runner(target.name)
    if runner is None:
        raise RunnerUnavailable(f"the int8 quality gate needs a runtime for {target.name} here: {why_not}")
    run = runner.load(path)
    try:
        pictures = [c.lr for c in cases if not c.name.startswith("random-")]
        sets = quality_sets(request.scale, policy.quality_sets, request.shape)
        return measure_quality(run, module, request.scale, request.shape, pictures, sets,
                               policy.quality_limits(request.precision))
    finally:
        close = getattr(run, "close", None)
        if close is not None:
            close()

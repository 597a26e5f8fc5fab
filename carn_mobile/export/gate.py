"""The gate every artifact passes, at export and in ``carn-parity``: one stage, one load.

The sequence, the same for both callers:

1. structural checks: the target's own (``Target.structural_check``) and the caller's (the
   re-check adds the manifest's hashes);
2. the artifact is opened once, by the one runner rule (:func:`.targets.open_artifact`);
3. fidelity: its outputs against the reference on the parity inputs
   (:func:`carn_mobile.parity.run_cases`); the reference is the float32 module as trained, or
   for a quantized precision the artifact's own quantized model computed literally;
4. for a quantized precision, quality with the same loaded artifact: Y-PSNR against float32
   and the task-PSNR drop (:mod:`carn_mobile.quantization.quality`).

Without a runner here the structural checks decide (``structural-only``), except that a
quantized artifact's quality needs a runtime. :mod:`carn_mobile.parity` stays the numerics.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..parity import (
    DEFAULT_POLICY,
    FAILED,
    PASSED,
    STRUCTURAL_ONLY,
    CaseResult,
    ParityCase,
    ParityError,
    ParityPolicy,
    ParityReport,
    Reference,
    StructuralCheck,
    describe_inputs,
    run_cases,
)
from ..quantization.quality import QualityReport, measure_quality, quality_sets
from ..runtimes import Runner, RunnerUnavailable
from .base import ExportRequest, Target
from .targets import ArtifactLoadError, open_artifact
from .wrapper import SuperResolver


@dataclass
class GateResult:
    """What the gate found: fidelity (``report``) and, for a quantized precision, ``quality``."""

    report: ParityReport
    quality: QualityReport | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.report.passed and (self.quality is None or self.quality.passed)

    def raise_if_failed(self, name: str, precision: str) -> None:
        """:class:`~carn_mobile.parity.ParityError` with the numbers when ``name`` failed the gate."""
        if not self.report.passed:
            details = "\n  ".join(self.report.failure_details())
            raise ParityError(f"{name} failed parity: {self.report.headline()}\n  {details}", self.report)
        if self.quality is not None and not self.quality.passed:
            details = "\n  ".join(self.quality.failures)
            raise ParityError(f"{name} failed the {precision} quality gate: {self.quality.headline()}\n  {details}",
                              self.report)

    def to_json(self) -> dict[str, Any]:
        """The manifest's ``parity`` record."""
        record = self.report.to_json() | {"seconds": round(self.seconds, 2)}
        if self.quality is not None:
            record["reference"] = "quantized"  # fidelity above is against the quantized model itself
            record["quality"] = self.quality.to_json()
        return record


def check_artifact(
    target: Target,
    path: Path,
    request: ExportRequest,
    module: SuperResolver,
    exported: SuperResolver,
    cases: Sequence[ParityCase],
    *,
    policy: ParityPolicy = DEFAULT_POLICY,
    reference: Reference | None = None,
    extra_checks: Callable[[], list[StructuralCheck]] | None = None,
    runners: Sequence[Runner] | None = None,
    companions: Sequence[Path] = (),
) -> GateResult:
    """Gate ``path``, the ``target`` artifact for ``request``.

    ``module`` is the float32 model as trained (the fidelity reference of float precisions and
    the quality reference of quantized ones); ``exported`` the module the target converted
    (rewrites applied), which the structural checks and the quantized reference read.
    ``reference`` is a quantized reference the export already computed (else the target's
    ``quantized_reference``). ``runners`` replaces the target's runner list (tests).
    ``companions``: the files written beside the artifact; the target checks them
    (``Target.companion_checks``), and those an app loads instead of the artifact
    (``Target.runnable_companions``) are run on the parity inputs it names, with the same reference.
    """
    start = time.perf_counter()
    quantized = request.precision_row.quantized
    limits = policy.limits(request.precision, eight_bit_output=request.image_io,
                           runtime=target.fidelity.get(request.precision))
    checks = [*(extra_checks() if extra_checks else []), *target.structural_check(path, request, exported),
              *target.companion_checks(list(companions), request)]
    inputs = describe_inputs(cases)
    try:
        opened = open_artifact(path, target, runners)
    except RunnerUnavailable as exc:
        if quantized:
            raise RunnerUnavailable(f"the {request.precision} quality gate needs a runtime for {target.name} here: "
                                    f"{exc}") from None
        if not checks:
            raise
        status = STRUCTURAL_ONLY if all(c.ok for c in checks) else FAILED
        report = ParityReport(status, None, limits, checks=checks, reason=str(exc), inputs="none run")
        return GateResult(report, seconds=time.perf_counter() - start)
    except ArtifactLoadError as exc:  # a corrupt artifact fails to load: a failed gate, not a crash
        report = ParityReport(FAILED, exc.runner.name, limits, checks=checks, runner_versions=exc.runner.versions(),
                              inputs=inputs, reason=str(exc))
        return GateResult(report, seconds=time.perf_counter() - start)
    with opened:
        report = ParityReport(PASSED, opened.runner.name, limits, checks=checks,
                              runner_versions=opened.runner.versions(), inputs=inputs)
        if opened.skipped:
            report.reason = f"ran in {opened.runner.name}; {'; '.join(opened.skipped)}"
        if reference is None:
            reference = target.quantized_reference(path, request, exported) if quantized else module
        report.cases = run_cases(opened, reference, cases, limits, request.image_io)
        if not all(c.passed for c in report.cases) or not all(c.ok for c in checks):
            report.status = FAILED
        quality = None
        if quantized and report.passed:
            pictures = [c.lr for c in cases if not c.name.startswith("random-")]
            sets = quality_sets(request.scale, policy.quality_sets, request.shape)
            quality = measure_quality(opened, module, request.scale, request.shape, pictures, sets,
                                      policy.quality_limits(request.precision))
    # Companions run after the artifact is closed: a QNN session released while another is live
    # breaks the live one (onnxruntime-qnn 2.7 emulator: "QNN graph execute error" on its next run).
    for companion, names in target.runnable_companions(list(companions)):
        chosen = [c for c in cases if c.name.startswith(names)]
        report.cases += _companion_cases(target, companion, reference, chosen, limits, request.image_io, runners)
    if not all(c.passed for c in report.cases):
        report.status = FAILED
    return GateResult(report, quality, time.perf_counter() - start)


def _companion_cases(target: Target, path: Path, reference: Reference, cases: Sequence[ParityCase],
                     limits: dict[str, float], image_io: bool, runners: Sequence[Runner] | None) -> list:
    """``cases`` run on the companion ``path`` in the artifact's runner, named after the file."""
    try:
        with open_artifact(path, target, runners) as opened:
            results = run_cases(opened, reference, cases, limits, image_io)
    except ArtifactLoadError as exc:
        results = [CaseResult(case.name, list(case.size), None, None, False, str(exc)) for case in cases]
    return [replace(r, name=f"{path.name}: {r.name}") for r in results]

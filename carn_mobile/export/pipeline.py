"""Export jobs end to end: plan, convert, check parity, then commit artifact + manifest together.

:func:`export_model` is the one orchestrator (``carn-export`` is a thin shell over it): it
resolves the weights, plans every artifact before any conversion, runs each job and reports
progress to an :class:`ExportListener`.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..fileio import OutputExistsError, sha256_file
from ..models import CARN, parse_scales
from ..parity import DEFAULT_POLICY, ParityError, ParityPolicy, ParityReport, check_parity, parity_inputs
from ..precision import get_precision
from ..runtimes import MissingDependencyError, ShapeSpec
from ..weights import WeightsRef, load_model, resolve_weights
from .base import ExportRequest, Target
from .manifest import artifact_filename, build_manifest, dumps, manifest_path
from .registry import get_target, list_targets
from .staging import staged_pair
from .wrapper import per_scale_module

#: Default output folder, relative to the working directory.
DEFAULT_OUT_DIR = Path("export")


@dataclass(frozen=True)
class ExportJob:
    """One artifact to write: the target adapter, what to ask of it and where it goes."""

    target: Target
    request: ExportRequest
    artifact: Path

    @property
    def manifest(self) -> Path:
        return manifest_path(self.artifact)


@dataclass(frozen=True)
class SkippedTarget:
    """A target that ``all`` left out, and why (missing extra, unsupported option)."""

    target: str
    reason: str


@dataclass
class ExportResult:
    """A committed artifact with its manifest and parity report."""

    job: ExportJob
    manifest: dict
    report: ParityReport
    notes: list[str] = field(default_factory=list)

    @property
    def artifact(self) -> Path:
        return self.job.artifact

    @property
    def size_bytes(self) -> int:
        return int(self.manifest["file"]["size_bytes"])

    @property
    def export_seconds(self) -> float:
        return float(self.manifest["export"]["seconds"])


def embedded_metadata(model: str, scale: int, precision: str, weights: WeightsRef) -> dict[str, str]:
    """Key/values stored inside each artifact (where the format allows) to identify it."""
    return {
        "carn_mobile.model": model,
        "carn_mobile.scale": str(scale),
        "carn_mobile.precision": precision,
        "carn_mobile.weights": weights.name or weights.path.name,
        "carn_mobile.weights_sha256": weights.sha256,
        "carn_mobile.license": weights.license,
        "carn_mobile.version": __version__,
        "carn_mobile.contract": f"lr: float32 NCHW RGB [0,1] -> sr: float32 NCHW RGB [0,1], x{scale}",
    }


def plan_exports(
    weights: WeightsRef,
    model_scales: Sequence[int],
    targets: Sequence[str],
    scales: Sequence[int],
    precision: str | None = None,
    shape: ShapeSpec | None = None,
    image_io: bool = False,
    out_dir: str | Path = DEFAULT_OUT_DIR,
    force: bool = False,
) -> tuple[list[ExportJob], list[SkippedTarget]]:
    """Validate every option and list the artifacts to write, before any conversion starts.

    ``targets`` may contain ``"all"``: every registered target that is installed and supports
    the options; the others are returned as skipped with the reason. A target named
    explicitly raises instead (``ValueError``, or ``MissingDependencyError`` naming the extra).
    Existing outputs raise ``OutputExistsError`` unless ``force``.
    """
    shape = shape or ShapeSpec()
    if precision is not None:
        get_precision(precision)
    scales = parse_scales(list(scales), available=model_scales)
    wants_all = any(t.lower() == "all" for t in targets)
    names = list_targets() if wants_all else list(dict.fromkeys(t.lower() for t in targets))
    jobs: list[ExportJob] = []
    skipped: list[SkippedTarget] = []
    for name in names:
        target = get_target(name)
        explicit = not wants_all
        try:
            target.check_available()
        except MissingDependencyError as exc:
            if explicit:
                raise
            skipped.append(SkippedTarget(name, str(exc)))
            continue
        target_shape = shape.with_default_max(target.default_max_side)
        target_precision = precision or target.default_precision
        for scale in scales:
            request = ExportRequest(
                model=weights.arch,
                scale=scale,
                precision=target_precision,
                shape=target_shape,
                image_io=image_io,
                metadata=embedded_metadata(weights.arch, scale, target_precision, weights),
            )
            reason = target.unsupported(request)
            if reason:
                if explicit:
                    raise ValueError(reason)
                skipped.append(SkippedTarget(name, reason))
                break
            filename = artifact_filename(weights.arch, scale, request.precision, target.suffix, target_shape, image_io)
            jobs.append(ExportJob(target, request, Path(out_dir) / filename))
    if not jobs:
        why = "; ".join(f"{s.target}: {s.reason}" for s in skipped)
        raise ValueError(f"nothing to export ({why})")
    if not force:
        existing = [str(p) for job in jobs for p in (job.artifact, job.manifest) if p.exists()]
        if existing:
            raise OutputExistsError(f"{', '.join(existing)} already exist(s); pass --force to overwrite")
    return jobs, skipped


def run_export(
    job: ExportJob,
    model: CARN,
    weights: WeightsRef,
    *,
    force: bool = False,
    policy: ParityPolicy = DEFAULT_POLICY,
    parity_images: str | Path | None = None,
) -> ExportResult:
    """Convert, check parity in the target's runtime, then commit artifact and manifest.

    Raises :class:`~carn_mobile.parity.ParityError` (with the numbers) when parity fails;
    then neither the artifact nor its manifest is written.
    """
    request = job.request
    module = per_scale_module(model, request.scale)
    with staged_pair(job.artifact, job.manifest, force=force) as (tmp_artifact, tmp_manifest):
        start = time.perf_counter()
        outcome = job.target.export(module, request, tmp_artifact)
        export_seconds = time.perf_counter() - start

        start = time.perf_counter()
        cases = parity_inputs(request.scale, request.shape, parity_images)
        report = check_parity(
            tmp_artifact,
            job.target.name,
            module,
            request.precision,
            cases,
            image_io=request.image_io,
            structural=lambda: job.target.structural_check(tmp_artifact, request, module),
            policy=policy,
        )
        parity_seconds = time.perf_counter() - start
        if not report.passed:
            details = "\n  ".join(report.failure_details())
            raise ParityError(f"{job.artifact.name} failed parity: {report.headline()}\n  {details}", report)

        parity_json = report.to_json() | {"seconds": round(parity_seconds, 2)}
        manifest = build_manifest(
            artifact=job.artifact,
            target=job.target.name,
            target_description=job.target.description,
            model=request.model,
            scale=request.scale,
            precision=request.precision,
            shape=request.shape,
            image_io=request.image_io,
            weights=weights.to_json(),
            size_bytes=_size(tmp_artifact),
            sha256=sha256_file(tmp_artifact),
            export_seconds=export_seconds,
            export_notes=outcome.notes,
            export_details=outcome.details,
            parity=parity_json,
            versions=tool_versions(job.target) | report.runner_versions,
        )
        tmp_manifest.write_text(dumps(manifest))
    return ExportResult(job, manifest, report, outcome.notes)


class ExportListener:
    """Hears what :func:`export_model` does; override the methods you need (all do nothing)."""

    def planned(self, weights: WeightsRef, jobs: Sequence[ExportJob], skipped: Sequence[SkippedTarget]) -> None:
        """Every option was checked and these artifacts will be written (``skipped`` left out)."""

    def started(self, job: ExportJob) -> None:
        """Conversion of ``job`` begins."""

    def finished(self, result: ExportResult) -> None:
        """``result`` passed parity and its artifact and manifest are in place."""

    def failed(self, job: ExportJob, error: ParityError) -> None:
        """``job`` failed parity; nothing was written for it."""


class ExportIncomplete(ValueError):
    """Some artifacts failed parity (``keep_going``); the others were written."""

    def __init__(self, results: list[ExportResult], failures: list[tuple[ExportJob, ParityError]]) -> None:
        names = ", ".join(job.artifact.name for job, _ in failures)
        super().__init__(f"{len(failures)} artifact(s) failed parity: {names}")
        self.results, self.failures = results, failures


def export_model(
    model: str | None = None,
    weights: str | Path | None = None,
    targets: Sequence[str] = ("all",),
    scales: Sequence[int] | str | None = "all",
    precision: str | None = None,
    shape: ShapeSpec | None = None,
    image_io: bool = False,
    out_dir: str | Path = DEFAULT_OUT_DIR,
    force: bool = False,
    policy: ParityPolicy = DEFAULT_POLICY,
    parity_images: str | Path | None = None,
    *,
    listener: ExportListener | None = None,
    keep_going: bool = False,
) -> list[ExportResult]:
    """Python API behind ``carn-export``: export ``model`` to every requested target and scale.

    ``model=None`` takes the architecture recorded in ``weights``; ``scales`` is a list or a spec
    (``"all"`` or ``None``: every scale the weights have). Every artifact passes parity before it is written:
    a :class:`ParityError` stops the run, or with ``keep_going`` the other jobs run first and
    :class:`ExportIncomplete` reports every failure at the end.
    """
    listener = listener or ExportListener()
    ref = resolve_weights(model, weights)
    net = load_model(weights=ref)
    wanted = parse_scales("all" if scales is None else scales if isinstance(scales, str) else list(scales),
                          available=net.scales)
    jobs, skipped = plan_exports(ref, net.scales, targets, wanted, precision, shape, image_io, out_dir, force)
    listener.planned(ref, jobs, skipped)
    results: list[ExportResult] = []
    failures: list[tuple[ExportJob, ParityError]] = []
    for job in jobs:
        listener.started(job)
        try:
            result = run_export(job, net, ref, force=force, policy=policy, parity_images=parity_images)
        except ParityError as exc:
            listener.failed(job, exc)
            if not keep_going:
                raise
            failures.append((job, exc))
            continue
        listener.finished(result)
        results.append(result)
    if failures:
        raise ExportIncomplete(results, failures)
    return results


def tool_versions(target: Target) -> dict[str, str | None]:
    import torch

    return {"carn_mobile": __version__, "python": platform.python_version(), "torch": torch.__version__,
            **target.versions()}


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size

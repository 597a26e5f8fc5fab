"""Export jobs end to end: plan, convert, check parity, then commit artifact + manifest together.

:func:`export_model` is the one orchestrator (``carn-export`` is a thin shell over it): it
resolves the weights, plans every artifact before any conversion, runs each job and reports
progress to an :class:`ExportListener`.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import __version__
from ..fileio import OutputExistsError, remove_stale_staging
from ..models import CARN, parse_scales
from ..parity import DEFAULT_POLICY, ParityError, ParityPolicy, ParityReport, parity_inputs
from ..precision import get_precision, quantized_precisions
from ..quantization import DEFAULT_RECIPE, CalibrationSource, Quantization, Recipe, RecipeRefused
from ..runtimes import MissingDependencyError, ShapeSpec
from ..upscaling.receptive_field import receptive_field
from ..upscaling.tiling import tiling_record
from ..weights import WeightsRef, load_model, resolve_weights
from .base import ExportRequest, Target
from .gate import check_artifact
from .manifest import (
    artifact_filename,
    build_bundle_manifest,
    build_manifest,
    bundle_filename,
    dumps,
    manifest_path,
)
from .rewrites import optimized_module, parse_rewrites
from .staging import staged_files, staged_pair
from .targets import get_target, list_targets
from .wrapper import per_scale_module

#: Default output folder, relative to the working directory.
DEFAULT_OUT_DIR = Path("export")


@dataclass(frozen=True)
class ExportJob:
    """One artifact to write: the target adapter, what to ask of it and where it goes."""

    target: Target
    request: ExportRequest
    artifact: Path
    #: The folder holding this artifact when the target bundles its scales (``Target.bundled``).
    bundle: Path | None = None

    @property
    def manifest(self) -> Path:
        return manifest_path(self.artifact)

    @property
    def companions(self) -> list[Path]:
        """Files the target writes beside the artifact (``Target.companions``)."""
        return [self.artifact.with_name(self.artifact.name + suffix) for suffix in self.target.companions]

    @property
    def outputs(self) -> tuple[Path, ...]:
        """What this job puts in place: the artifact, its companions and its manifest, or the bundle's pair."""
        if self.bundle is not None:
            return self.bundle, manifest_path(self.bundle)
        return self.artifact, *self.companions, self.manifest


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


def embedded_metadata(model: str, scale: int, precision: str, weights: WeightsRef,
                      layout: str = "NCHW") -> dict[str, str]:
    """Key/values stored inside each artifact (where the format allows) to identify it."""
    return {
        "carn_mobile.model": model,
        "carn_mobile.scale": str(scale),
        "carn_mobile.precision": precision,
        "carn_mobile.weights": weights.name or weights.path.name,
        "carn_mobile.weights_sha256": weights.sha256,
        "carn_mobile.license": weights.license,
        "carn_mobile.version": __version__,
        "carn_mobile.layout": layout,
        "carn_mobile.contract": f"lr: float32 {layout} RGB [0,1] -> sr: float32 {layout} RGB [0,1], x{scale}",
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
    target_options: Mapping[str, Mapping[str, Any]] | None = None,
    rewrites: Sequence[str] | str | None = None,
    calibration: CalibrationSource | None = None,
    recipe: Recipe | None = None,
) -> tuple[list[ExportJob], list[SkippedTarget]]:
    """Validate every option and list the artifacts to write, before any conversion starts.

    ``targets`` may contain ``"all"``: every registered target that is installed and supports
    the options; the others are returned as skipped with the reason. A target named
    explicitly raises instead (``ValueError``, or ``MissingDependencyError`` naming the extra).
    Existing outputs raise ``OutputExistsError`` unless ``force``. ``target_options`` maps a
    target name to its own options (``Target.with_options``), e.g. ``{"web": {"ort_web": DIR}}``.
    ``rewrites``: the exact graph rewrites to apply (``None``: the defaults; ``()``: none, the plain graph).
    ``calibration`` and ``recipe`` apply to a quantized precision (``int8``; defaults: the built-in
    calibration images and :data:`carn_mobile.quantization.DEFAULT_RECIPE`).
    """
    shape = shape or ShapeSpec()
    quantized = precision is not None and get_precision(precision).quantized
    if (calibration is not None or recipe is not None) and not quantized:
        raise ValueError(f"--calibration and the quantization recipe apply to a quantized --precision only "
                         f"({', '.join(quantized_precisions())})")
    chosen_rewrites = parse_rewrites(rewrites)
    target_options = dict(target_options or {})
    scales = parse_scales(list(scales), available=model_scales)
    wants_all = any(t.lower() == "all" for t in targets)
    names = list_targets() if wants_all else list(dict.fromkeys(t.lower() for t in targets))
    jobs: list[ExportJob] = []
    skipped: list[SkippedTarget] = []
    unused = sorted(set(target_options) - set(names))
    if unused:
        raise ValueError(f"options were given for {', '.join(unused)}, which this run does not export")
    for name in names:
        target = get_target(name).with_options(**target_options.get(name, {}))
        explicit = not wants_all
        target_precision = precision or target.default_precision
        try:  # a bundle's parts depend on the precision (a web site's runtimes); ValueError: none makes it
            parts = target.parts(target_precision)
            for part in parts:
                part.check_available()
        except (MissingDependencyError, ValueError) as exc:
            if explicit:
                raise
            skipped.append(SkippedTarget(name, str(exc)))
            continue
        target_shape = target.resolve_shape(shape)
        if wants_all and precision is None and get_precision(target_precision).quantized:
            # "all" exports float unless a precision is named; a quantized-only target waits for one.
            skipped.append(SkippedTarget(name, f"{name} makes quantized artifacts only; pass --precision "
                                               f"{' or '.join(target.precisions)}"))
            continue
        bundle = _bundle_path(target, weights.arch, scales, target_precision, target_shape, out_dir)
        target_jobs: list[ExportJob] = []
        try:
            for part in parts:  # each part quantizes with its own quantizer and takes its own rewrites
                quantization = _quantization(part, target_precision, recipe, calibration)
                part_rewrites = chosen_rewrites if rewrites is not None else default_rewrites(quantization, part)
                for scale in scales:
                    request = ExportRequest(
                        model=weights.arch,
                        scale=scale,
                        precision=target_precision,
                        shape=target_shape,
                        image_io=image_io,
                        layout=part.layout,
                        metadata=embedded_metadata(weights.arch, scale, target_precision, weights, part.layout),
                        rewrites=part_rewrites,
                        quantization=quantization,
                    )
                    reason = part.unsupported(request)
                    if reason:
                        raise _Unsupported(reason)
                    target_jobs.append(ExportJob(part, request, artifact_path(part, request, out_dir, bundle),
                                                 bundle))
        except (RecipeRefused, _Unsupported) as exc:
            if explicit:
                raise
            skipped.append(SkippedTarget(name, str(exc)))
            # A bundle is exported whole or not at all; a plain target keeps the scales before.
            target_jobs = [] if bundle is not None else target_jobs
        jobs.extend(target_jobs)
    if not jobs:
        why = "; ".join(f"{s.target}: {s.reason}" for s in skipped)
        raise ValueError(f"nothing to export ({why})")
    if not force:
        existing = list(dict.fromkeys(str(p) for job in jobs for p in job.outputs if p.exists()))
        if existing:
            raise OutputExistsError(f"{', '.join(existing)} already exist(s); pass --force to overwrite")
    return jobs, skipped


class _Unsupported(ValueError):
    """A part cannot make a request (the message says why): refused, or skipped under ``all``."""


def artifact_path(target: Target, request: ExportRequest, out_dir: str | Path, bundle: Path | None = None) -> Path:
    """Where ``request``'s artifact goes: in ``out_dir``, or inside its ``bundle`` folder (the one
    place artifact paths are decided; ``request.shape`` is the target's resolved shape)."""
    if bundle is None:
        return Path(out_dir) / artifact_filename(request.model, request.scale, request.precision, target.suffix,
                                                 request.shape, request.image_io)
    return bundle / target.members_folder / artifact_filename(request.model, request.scale, request.precision,
                                                              target.member_suffix, request.shape, request.image_io)


def _bundle_path(target: Target, model: str, scales: Sequence[int], precision: str, shape: ShapeSpec,
                 out_dir: str | Path) -> Path | None:
    if not target.bundled:
        return None
    return Path(out_dir) / bundle_filename(model, list(scales), precision, target.suffix, shape)


def _quantization(target: Target, precision: str, recipe: Recipe | None,
                  calibration: CalibrationSource | None) -> Quantization | None:
    """The recipe as ``target``'s quantizer applies it, for a quantized ``precision`` (else ``None``)."""
    if not get_precision(precision).quantized or precision not in target.precisions:
        return None  # a precision the target does not offer is refused by Target.unsupported
    if target.quantizer is None:
        raise TypeError(f"the {target.name} target lists {precision} but declares no quantizer")
    return Quantization.for_quantizer(target.quantizer, precision, recipe or DEFAULT_RECIPE, calibration)


def default_rewrites(quantization: Quantization | None, target: Target | None = None) -> tuple[str, ...]:
    """The rewrites an export applies when none are named: :data:`DEFAULT_REWRITES`, or a
    quantization recipe's choice of them, less those ``target`` refuses (``Target.refused_rewrites``)."""
    defaults = parse_rewrites(None)
    chosen = defaults if quantization is None else parse_rewrites(list(quantization.recipe.rewrites(defaults)))
    refused = target.refused_rewrites if target is not None else {}
    return tuple(r for r in chosen if r not in refused)


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
    module = per_scale_module(model, job.request.scale)  # the parity reference: the model as trained
    exported, applied = optimized_module(module, job.request.rewrites)
    request = replace(job.request, rewrites=tuple(applied))  # what the manifest records: what was applied
    remove_stale_staging(job.artifact.parent)
    with staged_files([job.artifact, *job.companions, job.manifest], force=force) as staged:
        tmp_artifact, tmp_companions, tmp_manifest = staged[0], staged[1:-1], staged[-1]
        start = time.perf_counter()
        outcome = job.target.export(exported, request, tmp_artifact)
        export_seconds = time.perf_counter() - start

        if set(outcome.companions) != set(job.target.companions):
            raise RuntimeError(f"the {job.target.name} target wrote companions {sorted(outcome.companions)}, "
                               f"declared {list(job.target.companions)}")
        for suffix, tmp in zip(job.target.companions, tmp_companions, strict=True):
            tmp.write_bytes(outcome.companions[suffix])  # staged: gated with the artifact, committed with it
        cases = parity_inputs(request.scale, request.shape, parity_images)
        gate = check_artifact(job.target, tmp_artifact, request, module, exported, cases, policy=policy,
                              reference=outcome.reference, companions=tmp_companions)
        gate.raise_if_failed(job.artifact.name, request.precision)
        if gate.quality is not None:
            outcome.notes.append(gate.quality.headline())
        manifest = build_manifest(
            artifact=job.artifact,
            staged=tmp_artifact,
            target=job.target,
            request=request,
            weights=weights.to_json(),
            outcome=outcome,
            companions={p.name: outcome.companions[s] for p, s in zip(job.companions, job.target.companions,
                                                                      strict=True)},
            export_seconds=export_seconds,
            gate=gate,
            versions=tool_versions(job.target) | gate.report.runner_versions,
            tiling=tiling_record(receptive_field(module.net.config, request.scale), request.shape),
        )
        tmp_manifest.write_text(dumps(manifest))
    return ExportResult(job, manifest, gate.report, outcome.notes)


class ExportListener:
    """Hears what :func:`export_model` does; override the methods you need (all do nothing)."""

    def planned(self, weights: WeightsRef, jobs: Sequence[ExportJob], skipped: Sequence[SkippedTarget]) -> None:
        """Every option was checked and these artifacts will be written (``skipped`` left out)."""

    def started(self, job: ExportJob) -> None:
        """Conversion of ``job`` begins."""

    def finished(self, result: ExportResult) -> None:
        """``result`` passed parity and its artifact and manifest are in place."""

    def failed(self, job: ExportJob, error: ParityError) -> None:
        """``job`` failed parity; nothing was written for it (nor for its bundle)."""

    def bundle_finished(self, bundle: Path, manifest: dict) -> None:
        """Every member of ``bundle`` passed and the folder and its manifest are in place."""


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
    target_options: Mapping[str, Mapping[str, Any]] | None = None,
    rewrites: Sequence[str] | str | None = None,
    calibration: CalibrationSource | None = None,
    recipe: Recipe | None = None,
) -> list[ExportResult]:
    """Python API behind ``carn-export``: export ``model`` to every requested target and scale.

    ``model=None`` takes the architecture recorded in ``weights``; ``scales`` is a list or a spec
    (``"all"`` or ``None``: every scale the weights have). Every artifact passes parity before it is written:
    a :class:`ParityError` stops the run, or with ``keep_going`` the other jobs run first and
    :class:`ExportIncomplete` reports every failure at the end. A bundled target (``web``)
    writes one folder for all its scales, and only when every scale passed. ``rewrites`` picks
    the exact graph rewrites (``carn_mobile.export.rewrites``; ``None``: the defaults, ``()``: none);
    parity is always checked against the unmodified model. ``precision="int8"`` quantizes with
    ``recipe`` on ``calibration`` patches; the gate then also bounds the PSNR drop
    (``policy.max_psnr_drop_db``, default 0.1 dB).
    """
    listener = listener or ExportListener()
    ref = resolve_weights(model, weights)
    net = load_model(weights=ref)
    wanted = parse_scales("all" if scales is None else scales if isinstance(scales, str) else list(scales),
                          available=net.scales)
    jobs, skipped = plan_exports(ref, net.scales, targets, wanted, precision, shape, image_io, out_dir, force,
                                 target_options, rewrites, calibration, recipe)
    listener.planned(ref, jobs, skipped)
    results: list[ExportResult] = []
    failures: list[tuple[ExportJob, ParityError]] = []
    for group in _groups(jobs):
        try:
            if group[0].bundle is not None:
                results.extend(run_bundle(group, net, ref, force=force, policy=policy, parity_images=parity_images,
                                          listener=listener))
            else:
                results.append(_run_single(group[0], net, ref, force, policy, parity_images, listener))
        except _JobFailed as failed:
            listener.failed(failed.job, failed.error)
            if not keep_going:
                raise failed.error from None
            failures.append((failed.job, failed.error))
    if failures:
        raise ExportIncomplete(results, failures)
    return results


class _JobFailed(Exception):
    """A job's ParityError, with the job it belongs to (inside a bundle, one of several)."""

    def __init__(self, job: ExportJob, error: ParityError) -> None:
        super().__init__(str(error))
        self.job, self.error = job, error


def _run_single(job: ExportJob, model: CARN, weights: WeightsRef, force: bool, policy: ParityPolicy,
                parity_images: str | Path | None, listener: ExportListener) -> ExportResult:
    listener.started(job)
    try:
        result = run_export(job, model, weights, force=force, policy=policy, parity_images=parity_images)
    except ParityError as exc:
        raise _JobFailed(job, exc) from None
    listener.finished(result)
    return result


def _groups(jobs: Sequence[ExportJob]) -> list[list[ExportJob]]:
    """Jobs in order, one group per plain artifact and one per bundle."""
    groups: list[list[ExportJob]] = []
    for job in jobs:
        if job.bundle is not None and groups and groups[-1][0].bundle == job.bundle:
            groups[-1].append(job)
        else:
            groups.append([job])
    return groups


def run_bundle(
    jobs: Sequence[ExportJob],
    model: CARN,
    weights: WeightsRef,
    *,
    force: bool = False,
    policy: ParityPolicy = DEFAULT_POLICY,
    parity_images: str | Path | None = None,
    listener: ExportListener | None = None,
) -> list[ExportResult]:
    """Export every member of one bundle into a staged folder, then commit the folder and its manifest.

    Each member passes parity on its own (in the bundle's runtime, with the bundle's shared
    files in place); if any fails, nothing of the bundle is written.
    """
    listener = listener or ExportListener()
    target, bundle = jobs[0].target, jobs[0].bundle
    assert bundle is not None
    requests = [job.request for job in jobs]
    results: list[ExportResult] = []
    start = time.perf_counter()
    remove_stale_staging(bundle.parent)
    with staged_pair(bundle, manifest_path(bundle), force=force) as (tmp_bundle, tmp_manifest):
        tmp_bundle.mkdir()
        target.start_bundle(tmp_bundle, requests, weights)
        for job in jobs:
            listener.started(job)
            staged = replace(job, artifact=tmp_bundle / job.artifact.relative_to(bundle), bundle=None)
            try:
                result = run_export(staged, model, weights, force=True, policy=policy, parity_images=parity_images)
            except ParityError as exc:
                raise _JobFailed(job, exc) from None
            results.append(replace(result, job=job))
        outcome = target.finish_bundle(tmp_bundle, requests)
        manifest = build_bundle_manifest(
            bundle=bundle, staged=tmp_bundle, target=target, requests=requests, weights=weights.to_json(),
            members=[(r.artifact.relative_to(bundle), r.manifest, r.report.headline()) for r in results],
            outcome=outcome, export_seconds=time.perf_counter() - start, versions=tool_versions(target),
        )
        tmp_manifest.write_text(dumps(manifest))
    for result in results:
        listener.finished(result)
    listener.bundle_finished(bundle, manifest)
    return results


def tool_versions(target: Target) -> dict[str, str | None]:
    import torch

    return {"carn_mobile": __version__, "python": platform.python_version(), "torch": torch.__version__,
            **target.versions()}

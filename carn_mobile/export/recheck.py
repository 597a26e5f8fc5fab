"""Re-check an existing artifact against its manifest and a freshly built PyTorch reference."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..fileio import sha256_file
from ..parity import DEFAULT_POLICY, ParityPolicy, ParityReport, StructuralCheck, check_parity, parity_inputs
from ..precision import get_precision
from ..quantization import CalibrationSource, Quantization, Recipe
from ..quantization.quality import QualityReport
from ..runtimes import ShapeSpec
from ..weights import WeightsRef, load_model, resolve_recorded, resolve_weights
from .base import ExportRequest
from .manifest import read_manifest
from .quantized_gate import check_quality, gate_reference
from .registry import get_target
from .rewrites import optimized_module, parse_rewrites
from .wrapper import per_scale_module


@dataclass
class RecheckResult:
    """The manifest that described the artifact and the fresh parity report."""

    artifact: Path
    manifest: dict
    weights: WeightsRef
    report: ParityReport
    #: The int8 quality gate measured again (``None`` for float precisions).
    quality: QualityReport | None = None

    @property
    def passed(self) -> bool:
        return self.report.passed and (self.quality is None or self.quality.passed)


def recheck_artifact(
    artifact: str | Path,
    weights: str | Path | None = None,
    *,
    policy: ParityPolicy = DEFAULT_POLICY,
    parity_images: str | Path | None = None,
) -> RecheckResult:
    """Run the parity check of ``artifact`` again, as ``carn-parity`` does.

    The manifest beside the artifact says which model, scale, weights and shapes to use;
    ``weights`` (a shipped name or checkpoint) overrides the recorded weights. The
    artifact's sha256 must match the manifest: a changed file fails even if it still runs.
    """
    path = Path(artifact)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    manifest = read_manifest(path)
    target = get_target(manifest["target"])
    model_name = manifest["model"]
    source = resolve_weights(model_name, weights) if weights is not None else resolve_recorded(manifest["weights"])
    model = load_model(weights=source)
    scale = int(manifest["scale"])
    quantization = None
    if get_precision(manifest["precision"]).quantized:
        recorded = manifest.get("quantization", {}).get("recipe")
        if recorded is None:
            raise ValueError(f"{path.name}'s manifest has no quantization recipe; export it again")
        calibration = CalibrationSource()
        if target.reference_needs_calibration:  # the reference is quantized again: same patches needed
            record = manifest["quantization"].get("calibration", {})
            calibration = CalibrationSource.from_record(record)
            if calibration.for_scale(scale).sha256 != record.get("sha256"):
                raise ValueError(f"the calibration patches for {path.name} differ from the export's (sha256); "
                                 "re-check with the same calibration images")
        quantization = Quantization(Recipe.from_json(recorded), calibration)
    request = ExportRequest(
        model=model_name,
        scale=scale,
        precision=manifest["precision"],
        shape=ShapeSpec.from_json(manifest["shape"]),
        image_io=bool(manifest.get("image_io", False)),
        layout=manifest.get("contract", {}).get("input", {}).get("layout", "NCHW"),
        # What was exported: the recorded rewrites (none in manifests older than them).
        rewrites=parse_rewrites(list(manifest.get("export", {}).get("rewrites", []))),
        quantization=quantization,
    )
    module = per_scale_module(model, scale)
    exported, _ = optimized_module(module, request.rewrites)
    expected_sha = manifest["file"]["sha256"]

    def structural() -> list[StructuralCheck]:
        actual = sha256_file(path)
        sha = StructuralCheck("sha256 matches manifest", actual == expected_sha,
                              f"file {actual[:16]}..., manifest {expected_sha[:16]}...")
        companions = []
        for name, entry in manifest.get("companions", {}).items():
            companion = path.with_name(name)
            digest = sha256_file(companion) if companion.is_file() else None
            companions.append(StructuralCheck(f"companion {name}", digest == entry["sha256"],
                                              "matches manifest" if digest == entry["sha256"]
                                              else "missing" if digest is None else "sha256 differs"))
        return [sha, *companions, *target.structural_check(path, request, exported)]

    cases = parity_inputs(scale, request.shape, parity_images)
    report = check_parity(path, target.name, gate_reference(target, path, request, module, exported), request.precision,
                          cases, image_io=request.image_io, structural=structural, policy=policy)
    quality = check_quality(target, path, request, module, cases, policy) if report.passed else None
    return RecheckResult(path, manifest, source, report, quality)

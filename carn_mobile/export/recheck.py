"""Re-check an existing artifact (or a bundle of them) against its manifest and a freshly built
PyTorch reference, through the same gate as the export (:mod:`.gate`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..fileio import sha256_file
from ..parity import DEFAULT_POLICY, ParityPolicy, ParityReport, StructuralCheck, parity_inputs
from ..quantization.quality import QualityReport
from ..weights import WeightsRef, load_model, resolve_recorded, resolve_weights
from .base import ExportRequest
from .gate import check_artifact
from .manifest import is_bundle, read_manifest
from .rewrites import optimized_module
from .targets import get_target
from .wrapper import per_scale_module


@dataclass
class RecheckResult:
    """The manifest that described the artifact and the fresh gate results."""

    artifact: Path
    manifest: dict
    weights: WeightsRef
    report: ParityReport
    #: The quantized precision's quality gate measured again (``None`` for float precisions).
    quality: QualityReport | None = None

    @property
    def passed(self) -> bool:
        return self.report.passed and (self.quality is None or self.quality.passed)


@dataclass
class BundleRecheck:
    """A bundle re-checked: every recorded file's sha256, then every member through the gate."""

    artifact: Path
    manifest: dict
    files: list[StructuralCheck] = field(default_factory=list)
    members: list[RecheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.files) and all(m.passed for m in self.members)


def recheck_artifact(
    artifact: str | Path,
    weights: str | Path | None = None,
    *,
    policy: ParityPolicy = DEFAULT_POLICY,
    parity_images: str | Path | None = None,
) -> RecheckResult | BundleRecheck:
    """Run the gate of ``artifact`` again, as ``carn-parity`` does.

    The manifest beside the artifact says which model, scale, weights and shapes to use;
    ``weights`` (a shipped name or checkpoint) overrides the recorded weights. The
    artifact's sha256 must match the manifest: a changed file fails even if it still runs.
    A bundle (``.web``) is re-checked whole: every file against its recorded sha256, then
    every member in its own runtime.
    """
    path = Path(artifact)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    manifest = read_manifest(path)
    if is_bundle(manifest):
        return _recheck_bundle(path, manifest, weights, policy, parity_images)
    target = get_target(manifest["target"]).from_manifest(manifest)
    request = ExportRequest.from_manifest(manifest, target, path.name)
    source = resolve_weights(manifest["model"], weights) if weights is not None else resolve_recorded(
        manifest["weights"])
    module = per_scale_module(load_model(weights=source), request.scale)
    exported, _ = optimized_module(module, request.rewrites)

    def recorded_hashes() -> list[StructuralCheck]:
        expected = manifest["file"]["sha256"]
        actual = sha256_file(path)
        checks = [StructuralCheck("sha256 matches manifest", actual == expected,
                                  f"file {actual[:16]}..., manifest {expected[:16]}...")]
        checks += [_recorded_file(f"companion {name}", path.with_name(name), entry["sha256"])
                   for name, entry in manifest.get("companions", {}).items()]
        return checks

    cases = parity_inputs(request.scale, request.shape, parity_images)
    companions = [path.with_name(name) for name in manifest.get("companions", {})]
    gate = check_artifact(target, path, request, module, exported, cases, policy=policy, extra_checks=recorded_hashes,
                          companions=[p for p in companions if p.is_file()])  # a missing one fails its hash check
    return RecheckResult(path, manifest, source, gate.report, gate.quality)


def _recheck_bundle(path: Path, manifest: dict, weights: str | Path | None, policy: ParityPolicy,
                    parity_images: str | Path | None) -> BundleRecheck:
    result = BundleRecheck(path, manifest)
    recorded = manifest.get("files")
    if recorded is None:  # bundles written before per-file hashes: the folder's one hash
        actual = sha256_file(path)
        expected = manifest["file"]["sha256"]
        result.files.append(StructuralCheck("folder sha256 matches manifest", actual == expected,
                                            f"folder {actual[:16]}..., manifest {expected[:16]}..."))
    else:
        present = {str(f.relative_to(path)) for f in path.rglob("*") if f.is_file()}
        result.files += [_recorded_file(name, path / name, digest) for name, digest in sorted(recorded.items())]
        for name in sorted(present - set(recorded)):
            result.files.append(StructuralCheck(name, False, "not in the manifest"))
    for member in manifest["members"]:
        member_path = path / member["path"]
        if not member_path.is_file():
            continue  # already reported missing above
        checked = recheck_artifact(member_path, weights, policy=policy, parity_images=parity_images)
        assert isinstance(checked, RecheckResult)  # a member is a single artifact
        result.members.append(checked)
    return result


def _recorded_file(name: str, file: Path, expected: str) -> StructuralCheck:
    """Whether ``file`` is there with the sha256 its manifest recorded."""
    actual = sha256_file(file) if file.is_file() else None
    detail = "matches manifest" if actual == expected else "missing" if actual is None else "sha256 differs"
    return StructuralCheck(name, actual == expected, detail)

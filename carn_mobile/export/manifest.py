"""Artifact naming and the JSON manifests written beside every artifact: the one owner of both
formats, the single artifact's and the bundle's.

``export/carn-m_x4_fp32.onnx`` gets ``export/carn-m_x4_fp32.onnx.json``. The manifest holds
what the artifact is (the request: model, scale, target, precision, I/O contract, accepted
shapes, rewrites and quantization as applied, :meth:`ExportRequest.to_manifest`), where its
weights came from (enough to rebuild the PyTorch reference), its size and sha256, the gate's
results and the tool versions. A bundle (``carn-m_x2-3-4_fp32.web``) gets one too, listing its
members (each with its own manifest inside) and the sha256 of every file. ``carn-parity`` reads
both back (:func:`read_manifest`, :meth:`ExportRequest.from_manifest`).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..fileio import sha256_file
from ..runtimes import ShapeSpec

if TYPE_CHECKING:
    from .base import ExportOutcome, ExportRequest, Target
    from .gate import GateResult

#: Identifies the manifest layout; bump the number on incompatible changes.
MANIFEST_FORMAT = "carn-mobile/export-manifest@1"
#: Layout of a bundle's own manifest (``carn-m_x2-3-4_fp32.web.json``).
BUNDLE_FORMAT = "carn-mobile/export-bundle@1"
MANIFEST_SUFFIX = ".json"
_REQUIRED = {
    MANIFEST_FORMAT: ("format", "artifact", "model", "scale", "target", "precision", "shape", "weights", "file"),
    BUNDLE_FORMAT: ("format", "artifact", "model", "scales", "target", "precision", "members", "weights", "file"),
}


def artifact_filename(
    model: str, scale: int | str, precision: str, suffix: str, shape: ShapeSpec, image_io: bool = False
) -> str:
    """``<model>_x<scale>_<precision>[_<HxW>|_enum<N>][_image]<suffix>``, e.g. ``carn-m_x4_fp16.mlpackage``.

    ``scale`` may be a label such as ``"2-3-4"`` (see :func:`bundle_filename`).
    """
    parts = [model, f"x{scale}", precision]
    if shape.tag():
        parts.append(shape.tag())
    if image_io:
        parts.append("image")
    return "_".join(parts) + suffix


def bundle_filename(model: str, scales: list[int], precision: str, suffix: str, shape: ShapeSpec) -> str:
    """``<model>_x<s1>-<s2>..._<precision>[_<shape>]<suffix>``, e.g. ``carn-m_x2-3-4_fp32.web``."""
    return artifact_filename(model, "-".join(str(s) for s in sorted(scales)), precision, suffix, shape)


def manifest_path(artifact: str | Path) -> Path:
    """The manifest beside ``artifact`` (its full name plus ``.json``)."""
    p = Path(artifact)
    return p.with_name(p.name + MANIFEST_SUFFIX)


def dumps(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2, sort_keys=False) + "\n"


def read_manifest(artifact: str | Path) -> dict[str, Any]:
    """Load and sanity-check the manifest of ``artifact`` (a single artifact's or a bundle's);
    ``FileNotFoundError`` if absent, ``ValueError`` if unusable."""
    path = manifest_path(artifact)
    if not path.is_file():
        raise FileNotFoundError(
            f"no manifest {path.name} beside {Path(artifact).name}; carn-parity needs the manifest "
            "that carn-export writes with every artifact"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") not in _REQUIRED:
        raise ValueError(f"{path} is not a carn-mobile export manifest (format {MANIFEST_FORMAT} or {BUNDLE_FORMAT})")
    missing = [k for k in _REQUIRED[data["format"]] if k not in data]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}")
    return data


def is_bundle(manifest: dict[str, Any]) -> bool:
    """Whether ``manifest`` describes a bundle (a folder of per-scale members)."""
    return manifest.get("format") == BUNDLE_FORMAT


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def build_manifest(
    *,
    artifact: Path,
    staged: Path,
    target: Target,
    request: ExportRequest,
    weights: dict[str, Any],
    outcome: ExportOutcome,
    companions: dict[str, bytes],
    export_seconds: float,
    gate: GateResult,
    versions: dict[str, str | None],
    tiling: dict[str, Any],
) -> dict[str, Any]:
    """The manifest of ``artifact`` (written at ``staged`` until committed), in plain JSON types.

    ``request`` is the one the target was handed, its rewrites those applied; ``companions``
    the bytes of each file beside the artifact, by name; ``tiling`` how an app tiles exactly
    with it (:func:`carn_mobile.upscaling.tiling.tiling_record`).
    """
    record = request.to_manifest()
    export = record.pop("export") | {"seconds": round(export_seconds, 2), "notes": outcome.notes,
                                     "details": outcome.details}
    quantization = record.pop("quantization", None)
    return {
        "format": MANIFEST_FORMAT,
        "artifact": artifact.name,
        "target": target.name,
        "target_description": target.description,
        **record,
        "tiling": tiling,
        "weights": weights,
        "file": {"size_bytes": size_of(staged), "sha256": sha256_file(staged)},
        **({"companions": {name: {"size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                           for name, data in companions.items()}} if companions else {}),
        "export": export,
        "parity": gate.to_json(),
        **({"quantization": quantization} if quantization is not None else {}),
        "versions": versions,
        "created_utc": _now(),
    }


def build_bundle_manifest(
    *,
    bundle: Path,
    staged: Path,
    target: Target,
    requests: list[ExportRequest],
    weights: dict[str, Any],
    members: list[tuple[Path, dict[str, Any], str]],
    outcome: ExportOutcome,
    export_seconds: float,
    versions: dict[str, str | None],
) -> dict[str, Any]:
    """The manifest of ``bundle`` (staged at ``staged``): its members, given as (path inside the
    bundle, member manifest, parity headline), and the sha256 of every file, so a re-check names
    a changed one."""
    files = sorted(f for f in staged.rglob("*") if f.is_file())
    return {
        "format": BUNDLE_FORMAT,
        "artifact": bundle.name,
        "target": target.name,
        "target_description": target.description,
        "model": requests[0].model,
        "scales": list(dict.fromkeys(r.scale for r in requests)),  # a site has a member per runtime and scale
        "precision": requests[0].precision,
        "shape": requests[0].shape.to_json(),
        "weights": weights,
        "members": [{"scale": m["scale"], "path": str(path), "size_bytes": m["file"]["size_bytes"],
                     "sha256": m["file"]["sha256"], "parity": headline} for path, m, headline in members],
        "file": {"size_bytes": size_of(staged), "sha256": sha256_file(staged)},
        "files": {str(f.relative_to(staged)): sha256_file(f) for f in files},
        "export": {"seconds": round(export_seconds, 2), "notes": outcome.notes, "details": outcome.details},
        "versions": versions,
        "created_utc": _now(),
    }


def size_of(path: Path) -> int:
    """Bytes of a file, or of every file in a folder."""
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size

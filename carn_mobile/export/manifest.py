"""Artifact naming and the JSON manifest written beside every artifact.

``export/carn-m_x4_fp32.onnx`` gets ``export/carn-m_x4_fp32.onnx.json``. The manifest holds
what the artifact is (model, scale, target, precision, I/O contract, accepted shapes), where
its weights came from (enough to rebuild the PyTorch reference), its size and sha256, the
parity results and the tool versions. ``carn-parity`` reads it back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..runtimes import ShapeSpec

#: Identifies the manifest layout; bump the number on incompatible changes.
MANIFEST_FORMAT = "carn-mobile/export-manifest@1"
MANIFEST_SUFFIX = ".json"
_REQUIRED = ("format", "artifact", "model", "scale", "target", "precision", "shape", "weights", "file")


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
    """Load and sanity-check the manifest of ``artifact``; ``ValueError`` if absent or unusable."""
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
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path} is not a carn-mobile export manifest (format {MANIFEST_FORMAT})")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}")
    return data


def build_manifest(
    *,
    artifact: Path,
    target: str,
    target_description: str,
    model: str,
    scale: int,
    precision: str,
    shape: ShapeSpec,
    image_io: bool,
    weights: dict[str, Any],
    layout: str = "NCHW",
    size_bytes: int,
    sha256: str,
    export_seconds: float,
    export_notes: list[str],
    export_details: dict[str, Any],
    parity: dict[str, Any],
    versions: dict[str, str | None],
    companions: dict[str, dict[str, Any]] | None = None,
    rewrites: list[str] | None = None,
) -> dict[str, Any]:
    """The manifest of one artifact (plain JSON types only); ``companions``: files beside it;
    ``rewrites``: the exact graph rewrites the artifact carries (``carn_mobile.export.rewrites``)."""
    from datetime import datetime, timezone

    from ..precision import get_precision
    from ..runtimes import contract_json

    return {
        "format": MANIFEST_FORMAT,
        "artifact": artifact.name,
        "target": target,
        "target_description": target_description,
        "model": model,
        "scale": scale,
        "precision": precision,
        "precision_details": get_precision(precision).to_json(),  # the precision table's row
        "image_io": image_io,
        "contract": contract_json(scale, shape, image_io, layout),
        "shape": shape.to_json(),
        "weights": weights,
        "file": {"size_bytes": size_bytes, "sha256": sha256},
        **({"companions": companions} if companions else {}),
        "export": {"seconds": round(export_seconds, 2), "rewrites": list(rewrites or []), "notes": export_notes,
                   "details": export_details},
        "parity": parity,
        "versions": versions,
        "created_utc": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    }

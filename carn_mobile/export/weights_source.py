"""Which weights an artifact was made from, recorded so its PyTorch reference can be rebuilt."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..fileio import sha256_file
from ..models import CARN
from ..weights import WeightsError, get_weights, list_weights, load_model, read_metadata, verify_file


@dataclass(frozen=True)
class WeightsSource:
    """Shipped weights (``name``) or a checkpoint file (``path``), with its sha256 and licence."""

    model: str
    sha256: str
    license: str
    name: str | None = None
    path: str | None = None

    @property
    def label(self) -> str:
        return f"shipped weights {self.name!r}" if self.name else f"checkpoint {self.path}"

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> WeightsSource:
        return cls(model=d["model"], sha256=d["sha256"], license=d.get("license", "unknown"),
                   name=d.get("name"), path=d.get("path"))


def _is_shipped(weights: str | Path | None) -> bool:
    return weights is None or (isinstance(weights, str) and weights.lower() in list_weights())


def resolve_weights(model: str | None, weights: str | Path | None = None) -> WeightsSource:
    """Describe the weights ``load_model(model, weights)`` would use, checking their sha256.

    ``model=None`` means: the architecture recorded in the weights (``carn-m`` by default).
    Raises ``WeightsError`` for a model without shipped weights, shipped weights made for
    another model, or a shipped file whose checksum is wrong.
    """
    if _is_shipped(weights):
        entry = get_weights(str(weights or model or "carn-m"))
        if model is not None and entry.arch != model.lower():
            raise WeightsError(f"shipped weights {entry.name!r} are for model {entry.arch}, not {model}")
        verify_file(entry)
        return WeightsSource(model=entry.arch, sha256=entry.sha256, license=entry.license, name=entry.name)
    path = Path(weights).expanduser().resolve()
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist or is not a file")
    recorded = (read_metadata(path) or {}).get("arch")
    return WeightsSource(
        model=(model or recorded or "carn-m").lower(),
        sha256=sha256_file(path),
        license="not recorded (user checkpoint)",
        path=str(path),
    )


def load_from_source(source: WeightsSource) -> CARN:
    """Load the model a manifest names, refusing weights whose sha256 changed since export."""
    if source.name:
        entry = get_weights(source.name)
        if entry.sha256 != source.sha256:
            raise WeightsError(
                f"shipped weights {source.name!r} now have sha256 {entry.sha256}, but the artifact was "
                f"made from {source.sha256}; pass the original checkpoint with --weights"
            )
        return load_model(source.model, source.name)
    path = Path(source.path or "")
    if not path.is_file():
        raise WeightsError(
            f"the artifact was made from {path}, which no longer exists; pass that checkpoint with --weights"
        )
    actual = sha256_file(path)
    if actual != source.sha256:
        raise WeightsError(
            f"{path} has sha256 {actual}, but the artifact was made from {source.sha256}; "
            "pass the original checkpoint with --weights"
        )
    return load_model(source.model, path)

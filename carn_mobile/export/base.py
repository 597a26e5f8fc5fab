"""The interface every export target implements, and what an export is asked to produce."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..parity import StructuralCheck
from ..precision import Precision, Tolerance, get_precision
from ..quantization import Quantization, QuantizerSpec
from ..runtimes import ShapeSpec
from .rewrites import DEFAULT_REWRITES, parse_rewrites
from .wrapper import SuperResolver


@dataclass(frozen=True)
class ExportRequest:
    """One artifact to produce: which scale, precision and input shapes, and what to embed."""

    model: str
    scale: int
    precision: str  # a name in the precision table (carn_mobile.precision)
    shape: ShapeSpec  # resolved: a dynamic spec carries its maximum
    image_io: bool = False
    #: I/O tensor layout (``carn_mobile.runtimes.LAYOUTS``); NCHW unless the target offers NHWC.
    layout: str = "NCHW"
    #: String key/values embedded in the artifact's own metadata where the format has some.
    metadata: dict[str, str] = field(default_factory=dict)
    #: Exact graph rewrites (``carn_mobile.export.rewrites``) applied before the target traces.
    rewrites: tuple[str, ...] = DEFAULT_REWRITES
    #: Recipe and calibration source, for a quantized precision (``None`` otherwise).
    quantization: Quantization | None = None

    @property
    def precision_row(self) -> Precision:
        """What :attr:`precision` means: compute and weight dtypes, parity tolerance."""
        return get_precision(self.precision)

    def example_size(self) -> tuple[int, int]:
        """(H, W) of the input used to trace the module: an accepted size."""
        if self.shape.kind == "dynamic":
            lo, hi = self.shape.bounds
            return min(max(lo, 32), hi), min(max(lo, 48), hi)  # unequal sides: no H/W confusion
        return self.shape.sizes[0]

    def export_dims(self) -> dict | None:
        """``torch.export`` dims for H and W of the input, or ``None`` for a fixed-size export."""
        from ..runtimes import INPUT_NAME

        if self.shape.kind == "fixed":
            return None
        lo, hi = self.shape.bounds
        # torch.export specialises sizes 0 and 1, so the symbolic range starts at 2.
        height = torch.export.Dim("height", min=max(lo, 2), max=hi)
        width = torch.export.Dim("width", min=max(lo, 2), max=hi)
        return {INPUT_NAME: {2: height, 3: width}}

    def example_input(self) -> torch.Tensor:
        """An NCHW input of :meth:`example_size`, used to trace the module."""
        h, w = self.example_size()
        return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))

    def to_manifest(self) -> dict[str, Any]:
        """This request's part of an artifact manifest (:meth:`from_manifest` reads it back)."""
        from ..runtimes import contract_json

        record: dict[str, Any] = {
            "model": self.model,
            "scale": self.scale,
            "precision": self.precision,
            "precision_details": self.precision_row.to_json(),  # the precision table's row
            "image_io": self.image_io,
            "contract": contract_json(self.scale, self.shape, self.image_io, self.layout),
            "shape": self.shape.to_json(),
            "export": {"rewrites": list(self.rewrites)},
        }
        if self.quantization is not None:
            record["quantization"] = self.quantization.to_json(self.scale)
        return record

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any], target: Target, artifact: str = "the artifact") -> ExportRequest:
        """The request an artifact manifest records, as ``target`` exported it (``ValueError`` when
        the manifest cannot say it)."""
        precision = get_precision(manifest["precision"])
        quantization = None
        if precision.quantized:
            if target.quantizer is None:
                raise ValueError(f"{artifact}: the {target.name} target has no quantizer for {precision.name}")
            # The reference is quantized again only where the target recomputes it.
            quantization = Quantization.from_json(manifest.get("quantization"), target.quantizer, precision.name,
                                                  target.reference_needs_calibration, artifact)
        return cls(
            model=manifest["model"],
            scale=int(manifest["scale"]),
            precision=precision.name,
            shape=ShapeSpec.from_json(manifest["shape"]),
            image_io=bool(manifest.get("image_io", False)),
            layout=manifest.get("contract", {}).get("input", {}).get("layout", "NCHW"),
            # What was exported: the recorded rewrites (none in manifests older than them).
            rewrites=parse_rewrites(list(manifest.get("export", {}).get("rewrites", []))),
            quantization=quantization,
        )


@dataclass
class ExportOutcome:
    """What a target reports besides the file: notes for the user and details for the manifest."""

    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    #: Files written beside the artifact, by suffix (one per ``Target.companions`` entry).
    companions: dict[str, bytes] = field(default_factory=dict)
    #: A quantized export's reference, when converting computed it anyway (else the gate asks
    #: :meth:`Target.quantized_reference`): NCHW float32 in and out.
    reference: Callable[[np.ndarray], np.ndarray] | None = None


@dataclass(frozen=True)
class TargetOption:
    """A command-line option a target declares; ``carn-export`` adds it to the target's group and
    hands its value to :meth:`Target.with_options` under ``dest``."""

    flag: str
    dest: str
    help: str
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    #: An on/off flag that takes no value (``True`` when given).
    switch: bool = False


class Target(ABC):
    """One export format. Subclass it in a module of this package, decorate it with
    :func:`carn_mobile.export.register_target` and list the module in
    :data:`carn_mobile.export.targets.TARGET_MODULES`; the CLI, parity, the manifests, the
    bench and the upscaler pick it up from there."""

    #: Registry and ``--target`` name.
    name: ClassVar[str]
    #: Artifact suffix, e.g. ``".onnx"``; the target owns it (runners do not know suffixes).
    suffix: ClassVar[str]
    #: Endings of other files this target's runners run (companions an app loads instead).
    opens: ClassVar[tuple[str, ...]] = ()
    #: Runners (``carn_mobile.runtimes``) that execute the artifacts, best first: parity uses the
    #: first that is available here.
    runners: ClassVar[tuple[str, ...]]
    #: Name under which ``carn-bench`` and ``carn-upscale`` run this target's artifacts
    #: (``None``: not offered there, e.g. when no real runtime exists on common hosts).
    backend: ClassVar[str | None] = None
    #: Position in listings and in ``--target all`` (lower first).
    rank: ClassVar[int] = 100
    #: One line for ``--help`` and manifests.
    description: ClassVar[str] = ""
    #: pip extra that installs the converter.
    extra: ClassVar[str] = "export"
    #: Modules the converter needs (checked before any work starts).
    requires: ClassVar[tuple[str, ...]] = ()
    #: Names from the precision table this target can produce.
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    default_precision: ClassVar[str] = "fp32"
    #: Why some precision is not offered, for the error message.
    precision_note: ClassVar[str] = ""
    #: Largest LR side of a dynamic export unless the user names one.
    default_max_side: ClassVar[int] = 1024
    supports_image_io: ClassVar[bool] = False
    #: Suffixes of files written beside each artifact (appended to its name), e.g. an
    #: operator list for a reduced runtime build; committed with the artifact, or not at all.
    companions: ClassVar[tuple[str, ...]] = ()
    #: I/O layout of this target's artifacts (a target with a layout option sets it per instance).
    layout: str = "NCHW"
    #: True when one artifact holds every scale of a run: a folder whose per-scale members
    #: (each parity-gated, each with its manifest) sit in :attr:`members_folder` with
    #: :attr:`member_suffix`; the whole folder is committed at once, or nothing is.
    bundled: ClassVar[bool] = False
    member_suffix: ClassVar[str] = ""
    members_folder: ClassVar[str] = "models"
    #: Fidelity tolerances of this target's runtime where they differ from the precision table's
    #: (an integer engine whose requantization rounds differently from the literal reference).
    fidelity: ClassVar[dict[str, Tolerance]] = {}
    #: The quantizer that applies the recipe for this target's quantized precisions (``None``: none).
    quantizer: ClassVar[QuantizerSpec | None] = None
    #: Options of this target alone (``carn-export`` shows them in the target's own group).
    options: ClassVar[tuple[TargetOption, ...]] = ()
    #: ``platform.machine()`` -> why this target cannot be exported there whatever is installed, and
    #: what to do instead (said instead of "install the extra", which that platform cannot do).
    platform_limits: ClassVar[dict[str, str]] = {}
    #: Name of the per-layer profiler ``carn-bench --profile`` runs this target's artifacts with
    #: (``carn_mobile.bench.profile.PROFILERS``; ``None``: not profiled).
    profiler: ClassVar[str | None] = None
    #: Exact rewrites (``carn_mobile.export.rewrites``) this target's graph cannot take, with the
    #: reason: left out of its defaults (a quantization recipe's additions included) and refused
    #: when named.
    refused_rewrites: ClassVar[dict[str, str]] = {}

    def resolve_shape(self, shape: ShapeSpec) -> ShapeSpec:
        """The shape this target exports for the one asked (default: a dynamic shape gets the
        target's largest side unless the user named one)."""
        return shape.with_default_max(self.default_max_side)

    def with_options(self, **options: Any) -> Target:
        """This target configured with target-specific options (none by default)."""
        if options:
            raise ValueError(f"{', '.join(sorted(options))} do(es) not apply to the {self.name} target")
        return self

    def parts(self, precision: str | None = None) -> tuple[Target, ...]:
        """The targets whose artifacts this one writes at ``precision``, one member each per scale
        (default: itself; a bundle may hold members of several kinds, e.g. a web site's models per
        runtime, which depend on the precision)."""
        return (self,)

    def start_bundle(self, folder: Path, requests: Sequence[ExportRequest], weights: Any) -> None:  # noqa: B027
        """Write a bundle's shared files into the (staged) ``folder`` before its members."""

    def finish_bundle(self, folder: Path, requests: Sequence[ExportRequest]) -> ExportOutcome:
        """Complete a bundle whose members all passed parity; notes and details for its manifest."""
        return ExportOutcome()

    def platform_limit(self) -> str | None:
        """Why this target cannot be exported on this platform whatever is installed, or ``None``."""
        import platform

        return self.platform_limits.get(platform.machine().lower())

    def check_available(self) -> None:
        """Raise ``MissingDependencyError`` (naming the extra) if the converter is missing."""
        from ..runtimes import MissingDependencyError, UnsupportedPlatformError, require
        from ..runtimes.quiet import captured_output

        try:
            with captured_output():  # converters announce themselves noisily on import
                for module in self.requires:
                    require(module, self.extra, f"the {self.name} target")
        except MissingDependencyError as exc:
            limit = self.platform_limit()
            if limit:  # "install the extra" would not help on this platform
                raise UnsupportedPlatformError(limit) from exc
            raise

    def unsupported(self, request: ExportRequest) -> str | None:
        """Why this target cannot produce ``request``, or ``None``."""
        get_precision(request.precision)  # an unknown name is a ValueError naming the table
        if request.precision not in self.precisions:
            note = f" ({self.precision_note})" if self.precision_note else ""
            return f"{self.name} supports {', '.join(self.precisions)} only, not {request.precision}{note}"
        refused = [r for r in request.rewrites if r in self.refused_rewrites]
        if refused:
            return f"the {self.name} target cannot take the {refused[0]} rewrite: {self.refused_rewrites[refused[0]]}"
        if request.image_io and not self.supports_image_io:
            from .targets import get_target, list_targets  # the registry knows every target

            offered = [t for t in list_targets() if get_target(t).supports_image_io]
            return f"{self.name} has no image I/O; --image-io applies to {', '.join(offered)} only"
        return None

    @abstractmethod
    def export(self, module: SuperResolver, request: ExportRequest, out: Path) -> ExportOutcome:
        """Write the artifact for ``module`` (float32, eval mode, ``request.rewrites`` applied) to ``out``."""

    #: Whether :meth:`quantized_reference` recomputes the quantized model (``carn-parity`` then
    #: needs the calibration data the manifest records).
    reference_needs_calibration: ClassVar[bool] = False

    def quantized_reference(self, path: Path, request: ExportRequest,
                            module: SuperResolver) -> Callable[[np.ndarray], np.ndarray]:
        """The int8 gate's reference for a quantized artifact: its own quantized model computed
        literally (a QDQ graph without fusion, a fake-quantized graph), NCHW float32 in and out;
        ``module`` is the float module that was exported. A target that lists a quantized
        precision implements it."""
        raise NotImplementedError(f"the {self.name} target has no quantized reference")

    def structural_check(self, path: Path, request: ExportRequest, module: SuperResolver) -> list[StructuralCheck]:
        """Checks of the artifact's structure that need no runtime (default: none); ``module`` is
        the one that was exported (rewrites applied)."""
        return []

    def companion_checks(self, companions: list[Path], request: ExportRequest) -> list[StructuralCheck]:
        """Checks of the companion files (staged or beside the artifact) that need no runtime."""
        return []

    def runnable_companions(self, companions: list[Path]) -> list[tuple[Path, tuple[str, ...]]]:
        """Companions an app may load instead of the artifact, each with the names (or name
        prefixes) of the parity cases the gate runs on it (default: none)."""
        return []

    def from_manifest(self, manifest: dict[str, Any]) -> Target:
        """This target with the options an artifact's manifest records (``carn-parity``)."""
        return self

    def versions(self) -> dict[str, str | None]:
        """Converter versions recorded in the manifest."""
        return {}

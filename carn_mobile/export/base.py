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
from ..precision import Precision, get_precision
from ..quantization import Quantization
from ..runtimes import ShapeSpec
from .rewrites import DEFAULT_REWRITES
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


@dataclass
class ExportOutcome:
    """What a target reports besides the file: notes for the user and details for the manifest."""

    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    #: Files written beside the artifact, by suffix (one per ``Target.companions`` entry).
    companions: dict[str, bytes] = field(default_factory=dict)


class Target(ABC):
    """One export format. Subclass it in a module of this package, decorate it with
    :func:`carn_mobile.export.register_target` and list the module in
    :data:`carn_mobile.export.registry.TARGET_MODULES`; the CLI, parity, the manifests, the
    bench and the upscaler pick it up from there."""

    #: Registry and ``--target`` name.
    name: ClassVar[str]
    #: Artifact suffix, e.g. ``".onnx"``; the target owns it (runners do not know suffixes).
    suffix: ClassVar[str]
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

    def with_options(self, **options: Any) -> Target:
        """This target configured with target-specific options (none by default)."""
        if options:
            raise ValueError(f"{', '.join(sorted(options))} do(es) not apply to the {self.name} target")
        return self

    def start_bundle(self, folder: Path, requests: Sequence[ExportRequest], weights: Any) -> None:  # noqa: B027
        """Write a bundle's shared files into the (staged) ``folder`` before its members."""

    def finish_bundle(self, folder: Path, requests: Sequence[ExportRequest]) -> ExportOutcome:
        """Complete a bundle whose members all passed parity; notes and details for its manifest."""
        return ExportOutcome()

    def check_available(self) -> None:
        """Raise ``MissingDependencyError`` (naming the extra) if the converter is missing."""
        from ..environment import platform_limit
        from ..runtimes import MissingDependencyError, UnsupportedPlatformError, require
        from ..runtimes.quiet import captured_output

        try:
            with captured_output():  # converters announce themselves noisily on import
                for module in self.requires:
                    require(module, self.extra, f"the {self.name} target")
        except MissingDependencyError as exc:
            limit = platform_limit(self.name)
            if limit:  # "install the extra" would not help on this platform
                raise UnsupportedPlatformError(limit) from exc
            raise

    def unsupported(self, request: ExportRequest) -> str | None:
        """Why this target cannot produce ``request``, or ``None``."""
        get_precision(request.precision)  # an unknown name is a ValueError naming the table
        if request.precision not in self.precisions:
            note = f" ({self.precision_note})" if self.precision_note else ""
            return f"{self.name} supports {', '.join(self.precisions)} only, not {request.precision}{note}"
        if request.image_io and not self.supports_image_io:
            return f"{self.name} has no image I/O; --image-io applies to coreml only"
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

    def versions(self) -> dict[str, str | None]:
        """Converter versions recorded in the manifest."""
        return {}

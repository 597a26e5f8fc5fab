"""Qualcomm's NPU (Hexagon HTP) through ONNX Runtime's QNN execution provider.

The artifact is the HTP-ready QDQ ONNX at one fixed input size (the HTP has no dynamic shapes),
quantized by :mod:`carn_mobile.quantization.qnn_qdq`; beside it, one EPContext model per
requested SoC with its compiled context binary embedded, so an app loads it without compiling
on the phone. The gate runs in the HTP emulator of onnxruntime-qnn: the artifact on every
parity input, each context model on two of them, the quality gate on the artifact's outputs;
coverage is checked from the compiled context models (every compute op on the HTP, or the
export fails unless ``--allow-cpu-fallback``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..parity import StructuralCheck
from ..precision import Tolerance
from ..quantization.qnn_qdq import QNN_QUANTIZER
from ..runtimes import ShapeSpec, require, version_of
from ..runtimes.qnn import DEFAULT_SOCS, Coverage, Soc, coverage, emulator_unavailable, get_soc, qnn_versions
from .base import ExportOutcome, ExportRequest, Target, TargetOption
from .targets import register_target
from .wrapper import SuperResolver

#: LR tile exported unless ``--shape`` names one: 128x128 -> 512x512 at x4, the size published
#: NPU profiles of SR nets use.
DEFAULT_TILE = 128
#: The parity inputs each context model is run on (the artifact itself runs all of them): the
#: compiled binary of the same graph, so two inputs (a picture, noise) catch a broken compile.
CONTEXT_CASES = ("test-image", "random-")
CONTEXT_SUFFIX = "_ctx.onnx"
QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}


class HtpCompileError(ValueError):
    """The QNN EP could not compile the graph for a SoC, or left a compute op to the CPU."""


@register_target
class QnnTarget(Target):
    name = "qnn"
    suffix = ".qnn.onnx"
    runners = ("qnn-htp",)
    opens = (CONTEXT_SUFFIX,)  # the EPContext models beside each artifact run in the HTP emulator too
    backend = None  # the emulator is no speed runtime: carn-bench and carn-upscale do not offer it
    rank = 75
    description = "QDQ ONNX + EPContext binaries for Qualcomm's Hexagon NPU (ONNX Runtime QNN EP), fixed size"
    extra = "qnn"
    requires = ("onnx", "onnxscript", "onnxsim", "onnxruntime", "onnxruntime_qnn")
    precisions = ("int8", "w8a16")
    default_precision = "int8"
    precision_note = "the HTP runs quantized graphs; float ones would leave it for its fp16 path or the CPU"
    quantizer = QNN_QUANTIZER
    reference_needs_calibration = False
    #: The HTP requantizes with its own rounding. Against the literal QDQ graph, at 128x128
    #: (T91+BSD200 calibration): int8 pictures 45-50 dB, random noise 39.4-40.5 dB (noise drives
    #: activations past their calibrated ranges, where the HTP saturates differently), max abs up
    #: to 0.094 (x4, noise) and 0.082 (x4, a picture); w8a16 pictures 71-90 dB, noise 40.5-41.4 dB
    #: with max abs up to 0.066. So one floor for both: 35 dB and 0.15. A wrong scale or zero point still
    #: fails it on the pictures (about 20 dB lost), and the quality gate's Y-PSNR floor against
    #: float32 (40 dB int8, 45 dB w8a16) catches what w8a16's wide margin would let through.
    fidelity = {p: Tolerance(max_abs=0.15, min_psnr_db=35.0) for p in ("int8", "w8a16")}

    options = (
        TargetOption("--soc", "socs", metavar="LIST",
                     help=f"comma-separated SoCs to compile context binaries for (default {','.join(DEFAULT_SOCS)}; "
                          "names like sm8650, see docs/qnn.md)"),
        TargetOption("--allow-cpu-fallback", "allow_cpu_fallback", switch=True,
                     help="accept a graph whose compute ops are not all on the HTP (listed in the manifest)"),
    )

    platform_limits = {
        "aarch64": "the qnn target needs onnxruntime-qnn's HTP emulator, which only its Linux x86-64 wheel has (the "
                   "qnn extra installs nothing on Linux aarch64); export qnn artifacts on x86-64",
    }

    def __init__(self, socs: tuple[Soc, ...] | None = None, allow_cpu_fallback: bool = False) -> None:
        self.socs = socs or tuple(get_soc(n) for n in DEFAULT_SOCS)
        self.allow_cpu_fallback = allow_cpu_fallback
        self.companions = tuple(f".{s.name}{CONTEXT_SUFFIX}" for s in self.socs)

    def with_options(self, **options: Any) -> Target:
        socs = options.pop("socs", None)
        allow = bool(options.pop("allow_cpu_fallback", self.allow_cpu_fallback))
        super().with_options(**options)
        chosen = self.socs
        if socs is not None:
            names = [n for n in (socs.split(",") if isinstance(socs, str) else socs) if str(n).strip()]
            if not names:
                raise ValueError("--soc needs at least one SoC name, e.g. sm8650")
            chosen = tuple(dict.fromkeys(get_soc(str(n)) for n in names))
        return QnnTarget(chosen, allow)

    def from_manifest(self, manifest: dict[str, Any]) -> Target:
        details = manifest.get("export", {}).get("details", {})
        socs = [s["name"] for s in details.get("socs", [])]
        return self.with_options(**({"socs": socs} if socs else {}),
                                 allow_cpu_fallback=bool(details.get("allow_cpu_fallback", False)))

    def check_available(self) -> None:
        super().check_available()
        reason = emulator_unavailable()
        if reason:
            from ..runtimes import UnsupportedPlatformError

            raise UnsupportedPlatformError(f"the qnn target cannot be gated here: {reason}")

    def resolve_shape(self, shape: ShapeSpec) -> ShapeSpec:
        if shape == ShapeSpec():  # nothing asked: the tile apps use
            return ShapeSpec(kind="fixed", sizes=((DEFAULT_TILE, DEFAULT_TILE),))
        return super().resolve_shape(shape)

    def unsupported(self, request: ExportRequest) -> str | None:
        if request.shape.kind != "fixed":
            return (f"the qnn target exports one fixed input size (the HTP has no dynamic shapes); pass "
                    f"--shape HxW, e.g. {DEFAULT_TILE}x{DEFAULT_TILE}")
        return super().unsupported(request)

    def export(self, module: SuperResolver, request: ExportRequest, out: Path) -> ExportOutcome:
        onnx = require("onnx", self.extra, "the qnn target")
        from ..quantization.qnn_qdq import quantize_for_htp
        from .target_onnx import OPSET, fix_input_size, onnx_model

        assert request.quantization is not None, "a quantized request carries its recipe"
        # Calibrated on the dynamic graph (patches smaller than the tile), then fixed, as for onnx int8.
        dynamic = replace(request, shape=ShapeSpec(max_side=max(request.shape.sizes[0]) + 64))
        model, notes = onnx_model(module, dynamic)
        calibration = request.quantization.calibration.for_scale(request.scale)
        with tempfile.TemporaryDirectory(prefix="carn-qnn-") as tmp:
            float_path = Path(tmp) / "float32.onnx"
            onnx.save(model, str(float_path))
            details = quantize_for_htp(float_path, out, request.quantization.recipe, calibration)
        fix_input_size(out, request)
        companions, socs = {}, []
        for soc in self.socs:
            data, cover = self.compile_for(out, soc)
            companions[f".{soc.name}{CONTEXT_SUFFIX}"] = data
            socs.append(soc.to_json() | {"file_suffix": f".{soc.name}{CONTEXT_SUFFIX}", "size_bytes": len(data),
                                         "coverage": cover.to_json()})
            notes.append(f"{soc.name} ({soc.marketing}, HTP v{soc.htp_arch}): {cover.summary()}, "
                         f"context model {len(data) / 1e6:.2f} MB")
        notes.insert(1, f"{request.precision} QDQ for the HTP: {details['quantized_convs']} convs; calibrated on "
                        f"{len(calibration.patches)} patches from {calibration.source}")
        return ExportOutcome(notes=notes, companions=companions, details={
            "opset": OPSET, **details, "socs": socs, "allow_cpu_fallback": self.allow_cpu_fallback,
            "verified_here": "numerics and partitioning in the HTP emulator; not speed",
        })

    def compile_for(self, qdq_model: Path, soc: Soc) -> tuple[bytes, Coverage]:
        """The EPContext model of ``qdq_model`` for ``soc`` and where its nodes run;
        :class:`HtpCompileError` (one line naming the SoC and the ops) when the QNN EP cannot
        compile it or leaves a compute op to the CPU (unless this target allows CPU fallback)."""
        onnx = require("onnx", self.extra, "the qnn target")
        from ..parity import one_line
        from ..runtimes.qnn import NothingOnHtp, compile_context

        try:
            data = compile_context(qdq_model, soc)
        except NothingOnHtp:
            ops = sorted({n.op_type for n in onnx.load(str(qdq_model)).graph.node} - QDQ_OPS)
            raise HtpCompileError(f"{soc.name}: the QNN EP put no node on the HTP (ops: {', '.join(ops)}); "
                                  "nothing written") from None
        except Exception as exc:  # the EP's message, in one line, naming the SoC
            raise HtpCompileError(f"the QNN EP could not compile the graph for {soc.name} ({soc.marketing}): "
                                  f"{one_line(exc)}; nothing written") from None
        cover = coverage(onnx.load_from_string(data))
        if not self.accepts(cover):
            raise HtpCompileError(f"{soc.name}: {', '.join(cover.cpu_nodes) or 'part of the graph'} would run on "
                                  f"the CPU, not the HTP ({cover.partitions} HTP partition(s)); nothing written. "
                                  "Pass --allow-cpu-fallback to accept it (the manifest then lists them)")
        return data, cover

    def quantized_reference(self, path: Path, request: ExportRequest,
                            module: SuperResolver) -> Callable[[np.ndarray], np.ndarray]:
        from ..quantization.onnx_qdq import qdq_reference

        return qdq_reference(path)  # the same QDQ graph, every Q/DQ executed literally on the CPU

    def structural_check(self, path: Path, request: ExportRequest, module: SuperResolver) -> list[StructuralCheck]:
        from .target_onnx import OnnxTarget

        # The same QDQ ONNX contract; its "input shape" check holds the input to the fixed size asked.
        checks = OnnxTarget().structural_check(path, request, module)
        return [c for c in checks if c.name != "DepthToSpace"]

    def accepts(self, cover: Coverage) -> bool:
        """Whether a compiled model's coverage passes: on the HTP, and every compute op there
        unless this target allows CPU fallback."""
        return cover.partitions >= 1 and (cover.full or self.allow_cpu_fallback)

    def companion_checks(self, companions: list[Path], request: ExportRequest) -> list[StructuralCheck]:
        onnx = require("onnx", self.extra, "checking qnn artifacts")
        checks = []
        for path in companions:
            if not path.name.endswith(CONTEXT_SUFFIX):
                continue
            try:
                cover: Coverage = coverage(onnx.load(str(path)))
            except Exception as exc:  # a corrupt context model is a failed check
                checks.append(StructuralCheck(f"HTP coverage {path.name}", False, str(exc).splitlines()[0]))
                continue
            checks.append(StructuralCheck(f"HTP coverage {path.name}", self.accepts(cover), cover.summary()))
        return checks

    def runnable_companions(self, companions: list[Path]) -> list[tuple[Path, tuple[str, ...]]]:
        return [(p, CONTEXT_CASES) for p in companions if p.name.endswith(CONTEXT_SUFFIX)]

    def versions(self) -> dict[str, str | None]:
        return {name: version_of(name) for name in ("onnx", "onnxscript", "onnxsim", "onnxruntime")} | qnn_versions()

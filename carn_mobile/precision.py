"""The precision table: what ``fp32``, ``fp16``, ``int8`` and ``w8a16`` mean, in one place.

Each row says how the exported graph computes, how its weights are stored (which the
targets' structural checks verify), how closely it must match the float32 PyTorch reference
(the parity gate) and how it is named in files and manifests. A new precision (int8) is one
more row; targets then list its name among the precisions they offer.

Tolerances, measured on CARN-M (see docs/export.md): float32 artifacts differ from PyTorch by
about 1e-6, so 1e-4 leaves room for other kernels; float16 ones by 1e-3..3e-3 at 70-75 dB, so
50 dB and 2e-2 catch a broken graph while a few wild pixels cannot hide in a good mean.

int8 is gated twice (docs/int8.md). Runtime fidelity: the artifact against the *quantized*
reference (the same int8 model executed literally, e.g. its QDQ graph with no fusion), where
integer kernels round intermediate results differently: measured on CARN-M x4, onnxruntime
mean abs 8e-4, 99.9th percentile 8.7e-3, max 2.5e-2..6e-2 (47-56 dB), XNNPACK 46-53 dB, the
lowest on random-noise inputs; 40 dB and 0.1 leave room for other kernels and CPUs yet catch a
wrong scale or zero point (which costs 20 dB). Quality: the
artifact against float32 (Y-PSNR on the parity images, floor ``min_float_psnr_db``) and the drop in
task PSNR against HR on Set5/Set14 and the built-in test image (``max_task_psnr_drop_db``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Tolerance:
    """How far an artifact's output may be from the float32 reference, on [0, 1] RGB."""

    max_abs: float
    #: Lowest PSNR in dB against the reference; ``None``: not checked (exact-ish precisions).
    min_psnr_db: float | None = None

    def to_json(self) -> dict[str, float]:
        d = {"max_abs": self.max_abs}
        if self.min_psnr_db is not None:
            d["min_psnr_db"] = self.min_psnr_db
        return d

    def loosest(self, other: Tolerance) -> Tolerance:
        """The looser of two tolerances, per limit (used when two sources of error add up)."""
        psnrs = [p for p in (self.min_psnr_db, other.min_psnr_db) if p is not None]
        return Tolerance(max(self.max_abs, other.max_abs), min(psnrs) if psnrs else None)


@dataclass(frozen=True)
class Precision:
    """One row of the table."""

    name: str
    description: str
    #: dtype the graph computes in (a ``torch`` dtype name); float32 I/O stays the contract.
    compute_dtype: str
    #: NumPy dtype name of the stored weight tensors, where a format stores them as computed.
    weight_dtype: str
    #: The parity gate: against the float32 PyTorch module, or for a quantized precision
    #: against the quantized reference of the artifact's own model.
    tolerance: Tolerance
    #: Integer arithmetic with calibrated ranges: needs a calibration set and a recipe
    #: (:mod:`carn_mobile.quantization`), and is gated on quality as well.
    quantized: bool = False
    #: Quality gate (quantized only): lowest Y-PSNR against float32 on the parity images.
    min_float_psnr_db: float | None = None
    #: Quality gate (quantized only): largest task-PSNR drop against float32, in dB.
    max_task_psnr_drop_db: float | None = None
    #: Quantized only: bits of the stored weights and of the activations; each quantizer maps them
    #: to the integer types it has (``QuantizerSpec.weight_types`` / ``activation_types``).
    weight_bits: int | None = None
    activation_bits: int | None = None

    def __post_init__(self) -> None:
        if self.quantized != (self.weight_bits is not None and self.activation_bits is not None):
            raise ValueError(f"precision {self.name}: a quantized row names its weight and activation bits")

    @property
    def lossy(self) -> bool:
        """Whether outputs differ visibly from float32 (the gate then checks PSNR too)."""
        return self.tolerance.min_psnr_db is not None

    def to_json(self) -> dict[str, Any]:
        d = {"name": self.name, "compute_dtype": self.compute_dtype, "weight_dtype": self.weight_dtype,
             "tolerance": self.tolerance.to_json()}
        if self.quantized:
            d |= {"quantized": True, "min_float_psnr_db": self.min_float_psnr_db,
                  "max_task_psnr_drop_db": self.max_task_psnr_drop_db, "weight_bits": self.weight_bits,
                  "activation_bits": self.activation_bits}
        return d


#: An 8-bit image output (Core ML image I/O) rounds to 1/255 whatever the compute precision.
EIGHT_BIT_OUTPUT = Tolerance(max_abs=2e-2, min_psnr_db=50.0)

FP32 = Precision("fp32", "float32 weights and compute", "float32", "float32", Tolerance(max_abs=1e-4))
FP16 = Precision("fp16", "float16 weights and compute (float32 I/O)", "float16", "float16",
                 Tolerance(max_abs=2e-2, min_psnr_db=50.0))

INT8 = Precision("int8", "int8 weights (per channel) and activations, calibrated (float32 I/O)", "int8", "int8",
                 Tolerance(max_abs=0.1, min_psnr_db=40.0), quantized=True, min_float_psnr_db=40.0,
                 max_task_psnr_drop_db=0.1, weight_bits=8, activation_bits=8)

#: 8-bit weights, 16-bit activations: what Qualcomm ships for SR nets whose w8a8 form loses
#: quality. Against its own quantized reference onnxruntime's CPU QDQ and the HTP emulator measured
#: 71-90 dB on pictures (CARN-M), so 55 dB and 1e-2 still catch a wrong scale (a target whose engine
#: saturates differently on noise declares its own, ``Target.fidelity``). Against float32 the 8-bit
#: weights dominate: Y-PSNR 55.5 / 52.1 / 49.3 dB at x2 / x3 / x4 (HTP, 128x128 tiles), whence the
#: 45 dB floor; the task PSNR must stay within 0.03 dB.
W8A16 = Precision("w8a16", "int8 weights (per channel), 16-bit activations, calibrated (float32 I/O)", "int16",
                  "int8", Tolerance(max_abs=1e-2, min_psnr_db=55.0), quantized=True, min_float_psnr_db=45.0,
                  max_task_psnr_drop_db=0.03, weight_bits=8, activation_bits=16)

#: name -> row, in the order the CLI lists them.
PRECISIONS: dict[str, Precision] = {p.name: p for p in (FP32, FP16, INT8, W8A16)}


def get_precision(name: str | Precision) -> Precision:
    """The row for ``name``; ``ValueError`` naming the known precisions otherwise."""
    if isinstance(name, Precision):
        return name
    try:
        return PRECISIONS[name.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown precision {name!r}; use one of {', '.join(PRECISIONS)}") from None


def list_precisions() -> list[str]:
    """Names of every precision, in table order."""
    return list(PRECISIONS)


def quantized_precisions() -> list[str]:
    """Names of the quantized precisions (calibrated, gated on quality too), in table order."""
    return [name for name, row in PRECISIONS.items() if row.quantized]


def parity_tolerance(
    precision: str | Precision, image_output: bool = False, override: Tolerance | None = None
) -> Tolerance:
    """The gate for an artifact of ``precision`` (or ``override`` in its place); an 8-bit image
    output loosens it to its rounding."""
    tol = override or get_precision(precision).tolerance
    return tol.loosest(EIGHT_BIT_OUTPUT) if image_output else tol

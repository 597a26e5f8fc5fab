"""In-memory form of an ML program: typed variables, operations, I/O descriptions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .dtypes import numpy_dtype
from .errors import InputError, ProgramStructureError, UndefinedVariableError
from .ops import supported_ops


@dataclass(frozen=True)
class TensorType:
    """A MIL tensor type: element type and shape (``None`` for a dimension fixed only at run time)."""

    dtype: str
    shape: tuple[int | None, ...] | None  # None: rank unknown (not emitted by our exports)

    def accepts(self, shape: tuple[int, ...]) -> bool:
        """Whether a concrete ``shape`` fits this type's rank and fixed dimensions."""
        if self.shape is None:
            return True
        return len(shape) == len(self.shape) and all(
            d is None or d == s for d, s in zip(self.shape, shape, strict=True)
        )

    def __str__(self) -> str:
        if self.shape is None:
            return f"{self.dtype}[*]"
        return f"{self.dtype}[{','.join('?' if d is None else str(d) for d in self.shape)}]"


@dataclass(frozen=True)
class Binding:
    """One argument of an op: a variable name, or a literal value stored inline in the op."""

    name: str | None = None
    value: Any = None


@dataclass(frozen=True)
class Operation:
    """One op of the main block, in program order."""

    type: str
    inputs: Mapping[str, tuple[Binding, ...]]
    outputs: tuple[tuple[str, TensorType | None], ...]
    has_blocks: bool = False  # control flow (cond, while_loop): never executed here

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.outputs)

    @property
    def label(self) -> str:
        """The first output's name: how errors point at this op."""
        return self.outputs[0][0] if self.outputs else "<no output>"

    def variable_inputs(self) -> list[str]:
        """Names of the variables this op reads, in argument order."""
        return [b.name for bindings in self.inputs.values() for b in bindings if b.name is not None]


@dataclass(frozen=True)
class FeatureSpec:
    """A model input or output: the program's tensor type plus the model description's view.

    ``kind`` is ``"tensor"`` (MLMultiArray) or ``"image"``. For images the program sees an
    NCHW float tensor whose channels follow ``color_layout`` and whose values are the 8-bit
    pixel values (0-255); any scale/bias preprocessing is an op inside the program.
    ``shape_choices`` (enumerated shapes) or ``shape_bounds`` (per-dimension ``(lo, hi)``, ``hi``
    ``None`` for unbounded) are the flexible-shape limits from the description, if any.
    """

    name: str
    kind: str
    type: TensorType
    color_layout: str | None = None
    description_dtype: str | None = None
    shape_choices: tuple[tuple[int, ...], ...] | None = None
    shape_bounds: tuple[tuple[int, int | None], ...] | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-friendly description, for manifests and structural checks."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "type": str(self.type)}
        if self.color_layout:
            out["color_layout"] = self.color_layout
        if self.description_dtype:
            out["description_dtype"] = self.description_dtype
        if self.shape_choices is not None:
            out["shape_choices"] = [list(s) for s in self.shape_choices]
        if self.shape_bounds is not None:
            out["shape_bounds"] = [[lo, hi] for lo, hi in self.shape_bounds]
        return out

    def prepare(self, value: Any) -> np.ndarray:
        """Check an input array against this description and convert it to the program's dtype.

        Like Core ML converting an MLMultiArray, values are cast to the declared element type;
        for an fp16 input that rounds to float16.
        """
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise InputError(f"input {self.name!r}: expected a numeric array, got dtype {arr.dtype}")
        shape = tuple(arr.shape)
        if not self.type.accepts(shape):
            raise InputError(f"input {self.name!r}: shape {list(shape)} does not fit the program's {self.type}")
        if self.shape_choices is not None and shape not in self.shape_choices:
            allowed = ", ".join(str(list(s)) for s in self.shape_choices)
            raise InputError(f"input {self.name!r}: shape {list(shape)} is not one of the enumerated shapes {allowed}")
        if self.shape_bounds is not None:
            if len(self.shape_bounds) != len(shape):
                raise InputError(f"input {self.name!r}: rank {len(shape)} does not fit the model description")
            for axis, (size, (lo, hi)) in enumerate(zip(shape, self.shape_bounds, strict=True)):
                if size < lo or (hi is not None and size > hi):
                    raise InputError(
                        f"input {self.name!r}: dimension {axis} is {size}, outside the allowed range "
                        f"[{lo}, {'inf' if hi is None else hi}]"
                    )
        if self.kind == "image":
            # What Core ML hands the program for an image: 8-bit pixel values as floats.
            if arr.size and (not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 255):
                raise InputError(
                    f"image input {self.name!r} takes pixel values in [0, 255] "
                    f"(got [{arr.min()}, {arr.max()}]); scaling is part of the program"
                )
        return arr.astype(numpy_dtype(self.type.dtype), copy=False)


@dataclass
class Program:
    """The main function of a saved ML program, ready to inspect or run.

    Build it with :func:`carn_mobile.mlprogram.load_program`. ``operations`` keep the program's
    order (MIL programs are stored topologically sorted); ``constants`` holds the value of every
    ``const`` op (inline or from the weight file), keyed by output name.
    """

    path: Path | None
    function: str
    opset: str
    inputs: tuple[FeatureSpec, ...]
    outputs: tuple[FeatureSpec, ...]
    operations: tuple[Operation, ...]
    constants: dict[str, np.ndarray]
    metadata: dict[str, str] = field(default_factory=dict)
    spec_version: int = 0
    #: The model description's texts: short_description, author, license, version, and
    #: input_descriptions / output_descriptions by feature name.
    description: dict[str, Any] = field(default_factory=dict)
    _plan: Any = field(default=None, init=False, repr=False, compare=False)

    def __repr__(self) -> str:  # the default would print every weight
        ins = ", ".join(f"{f.name}: {f.kind} {f.type}" for f in self.inputs)
        outs = ", ".join(f"{f.name}: {f.kind} {f.type}" for f in self.outputs)
        return f"Program({str(self.path)!r}, {len(self.operations)} ops, {self.precision}, ({ins}) -> ({outs}))"

    # -- inspection -----------------------------------------------------------------------
    def op_histogram(self, include_const: bool = True) -> dict[str, int]:
        """How many ops of each type the program holds (most frequent first)."""
        counts = Counter(op.type for op in self.operations if include_const or op.type != "const")
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    @property
    def precision(self) -> str:
        """``"fp16"`` when any non-const op produces fp16 values, else ``"fp32"``."""
        for op in self.operations:
            if op.type != "const" and any(t is not None and t.dtype == "fp16" for _, t in op.outputs):
                return "fp16"
        return "fp32"

    def io_summary(self) -> dict[str, Any]:
        """Inputs, outputs, opset and precision as a JSON-friendly dict."""
        return {
            "function": self.function,
            "opset": self.opset,
            "precision": self.precision,
            "inputs": [f.summary() for f in self.inputs],
            "outputs": [f.summary() for f in self.outputs],
        }

    def weight_elements(self) -> dict[str, int]:
        """Elements of the non-scalar floating-point constants (the weights), by NumPy dtype name."""
        counts: Counter[str] = Counter()
        for value in self.constants.values():
            if isinstance(value, np.ndarray) and value.size > 1 and np.issubdtype(value.dtype, np.floating):
                counts[str(value.dtype)] += int(value.size)
        return dict(counts)

    def unsupported_ops(self) -> list[Operation]:
        """Ops the NumPy executor cannot run (unknown types, or control flow with nested blocks)."""
        known = supported_ops()
        return [op for op in self.operations if op.type not in known or op.has_blocks]

    def find_ops(self, op_type: str) -> list[Operation]:
        """All ops of one type, in program order."""
        return [op for op in self.operations if op.type == op_type]

    def variable_types(self) -> dict[str, TensorType | None]:
        """Declared type of every variable: program inputs and op outputs."""
        types: dict[str, TensorType | None] = {f.name: f.type for f in self.inputs}
        for op in self.operations:
            types.update(op.outputs)
        return types

    # -- checks ---------------------------------------------------------------------------
    def validate(self) -> None:
        """Check SSA form: every name defined once, and before it is read; outputs defined.

        Raises :class:`UndefinedVariableError` for a use before definition (ops swapped or
        dropped) and :class:`ProgramStructureError` for other structural faults.
        """
        defined: set[str] = {f.name for f in self.inputs}
        for op in self.operations:
            for name in op.variable_inputs():
                if name not in defined:
                    raise UndefinedVariableError(op.type, op.label, name)
            for name in op.output_names:
                if name in defined:
                    raise ProgramStructureError(f"variable {name!r} is defined twice (op {op.type!r})")
                defined.add(name)
            if op.type == "const" and op.output_names[0] not in self.constants:
                raise ProgramStructureError(f"const {op.label!r} has no value")
        for out in self.outputs:
            if out.name not in defined:
                raise ProgramStructureError(f"program output {out.name!r} is never defined")

    # -- execution ------------------------------------------------------------------------
    def run(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Execute the program on ``inputs`` (name -> array); see :func:`run_program`."""
        from .executor import run_program

        return run_program(self, inputs)

"""Runs a loaded ML program op by op, in program order, with MIL's declared types.

Precision model: every variable is stored in the NumPy type of its declared MIL type, so fp16
tensors are ``np.float16``. Each op computes in float32 from its (exactly widened) inputs and is
rounded to its declared output type once, when it finishes. For element-wise ops this equals
IEEE fp16 arithmetic (float32 holds more than twice fp16's precision, so the double rounding
is harmless); for conv it models an fp32 accumulator. Core ML's GPU and Neural Engine use their
own accumulation orders and widths, so bit-exactness with a device is not the goal: closeness is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .dtypes import numpy_dtype
from .errors import (
    InputError,
    OpExecutionError,
    ProgramStructureError,
    UndefinedVariableError,
    UnsupportedOpError,
)
from .ops import OpArgs, get_op
from .program import Operation, Program


def _plan(program: Program) -> list[list[str]]:
    """For each op index, the variables that are read for the last time there (freed after it)."""
    if program._plan is None:
        keep = {f.name for f in program.outputs}
        last: dict[str, int] = {}
        for idx, op in enumerate(program.operations):
            for name in op.variable_inputs():
                last[name] = idx
        frees: list[list[str]] = [[] for _ in program.operations]
        for name, idx in last.items():
            if name not in keep and name not in program.constants:
                frees[idx].append(name)
        program._plan = frees
    return program._plan


def _resolve(op: Operation, env: Mapping[str, Any]) -> OpArgs:
    values: dict[str, tuple[Any, ...]] = {}
    for param, bindings in op.inputs.items():
        resolved = []
        for b in bindings:
            if b.name is None:
                resolved.append(b.value)
            elif b.name in env:
                resolved.append(env[b.name])
            else:
                raise UndefinedVariableError(op.type, op.label, b.name)
        values[param] = tuple(resolved)
    return OpArgs(values)


def _store(op: Operation, results: Any) -> list[tuple[str, np.ndarray]]:
    """Cast an op's results to their declared types and check their declared shapes."""
    if not isinstance(results, tuple):
        results = (results,)
    if len(results) != len(op.outputs):
        raise OpExecutionError(op.type, op.label, f"produced {len(results)} values for {len(op.outputs)} outputs")
    stored = []
    for (name, declared), value in zip(op.outputs, results, strict=True):
        arr = np.asarray(value)
        if declared is not None:
            # The one rounding step of the precision model: e.g. float32 result -> fp16 output.
            arr = arr.astype(numpy_dtype(declared.dtype), copy=False)
            if not declared.accepts(arr.shape):
                raise OpExecutionError(
                    op.type, op.label, f"result has shape {list(arr.shape)}, but the program declares {declared}"
                )
        stored.append((name, arr))
    return stored


def run_program(program: Program | str | os.PathLike, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Execute an ML program in NumPy and return its outputs by name.

    ``program`` is a :class:`Program` or the path of a ``.mlpackage``. ``inputs`` maps every
    model input name to an array: for a tensor input, any numeric array of the declared shape
    (cast to the declared type, e.g. fp16); for an image input, the NCHW array of pixel values
    in [0, 255] that Core ML would hand the program (channels in the image's color layout;
    scale/bias preprocessing runs as ops inside the program). Outputs come back in their
    declared type; an image output is the float tensor the program produces, before Core ML
    turns it into an 8-bit image.

    Raises :class:`UnsupportedOpError` (before running anything) for an op type that is not
    implemented, :class:`UndefinedVariableError` when an op reads a variable not yet defined,
    :class:`OpExecutionError` when an op fails or its result contradicts the declared type, and
    :class:`InputError` for missing, unexpected or ill-shaped inputs.
    """
    if not isinstance(program, Program):
        from .loader import load_program

        program = load_program(Path(program))

    for op in program.unsupported_ops()[:1]:  # fail fast, before any work
        get_op(op.type, op.label)
        raise UnsupportedOpError(op.type, op.label, "control flow (nested blocks) is not supported")

    expected = {f.name for f in program.inputs}
    missing, extra = expected - set(inputs), set(inputs) - expected
    if missing or extra:
        raise InputError(
            f"inputs {sorted(inputs)} do not match the model's {sorted(expected)}"
            + (f"; missing {sorted(missing)}" if missing else "")
            + (f"; unexpected {sorted(extra)}" if extra else "")
        )
    env: dict[str, Any] = {f.name: f.prepare(inputs[f.name]) for f in program.inputs}

    frees = _plan(program)
    for idx, op in enumerate(program.operations):
        if op.type == "const":
            name = op.output_names[0]
            if name in env:
                raise ProgramStructureError(f"variable {name!r} is defined twice (op 'const')")
            env[name] = program.constants[name]
            continue
        args = _resolve(op, env)
        try:
            results = get_op(op.type, op.label)(args)
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            detail = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            raise OpExecutionError(op.type, op.label, str(detail)) from exc
        for name, arr in _store(op, results):
            if name in env:
                raise ProgramStructureError(f"variable {name!r} is defined twice (op {op.type!r})")
            env[name] = arr
        for name in frees[idx]:
            env.pop(name, None)

    out: dict[str, np.ndarray] = {}
    for f in program.outputs:
        if f.name not in env:
            raise ProgramStructureError(f"program output {f.name!r} is never defined")
        out[f.name] = env[f.name]
    return out

"""NumPy reference executor for the ML program inside a saved Core ML ``.mlpackage``.

Core ML's own ``predict`` runs only on macOS; this package lets any OS check an export
numerically. It reads the program and its weights (:func:`load_program`; needs the optional
coremltools, ``pip install "carn-mobile[export]"``), runs the ops in program order in NumPy
with fp16 rounding wherever the program computes in fp16 (:meth:`Program.run`), and
summarises the program for structural checks (:func:`op_histogram`,
:meth:`Program.io_summary`). See ``docs/coreml-reference-executor.md``.

>>> prog = load_program("carn_m_x4.mlpackage")            # doctest: +SKIP
>>> sr = prog.run({"lr": lr})["sr"]                          # doctest: +SKIP
"""

from __future__ import annotations

import os

from .errors import (
    InputError,
    MLProgramError,
    OpExecutionError,
    PackageError,
    ProgramStructureError,
    UndefinedVariableError,
    UnsupportedOpError,
)
from .executor import run_program
from .loader import load_program, locate_spec, program_from_spec, read_spec
from .ops import apply_op, supported_ops
from .program import Binding, FeatureSpec, Operation, Program, TensorType


def op_histogram(program: Program | str | os.PathLike, include_const: bool = True) -> dict[str, int]:
    """Op type -> count for a :class:`Program` or a ``.mlpackage`` path (most frequent first)."""
    if not isinstance(program, Program):
        program = load_program(program)
    return program.op_histogram(include_const=include_const)


__all__ = [
    "Binding",
    "FeatureSpec",
    "InputError",
    "MLProgramError",
    "OpExecutionError",
    "Operation",
    "PackageError",
    "Program",
    "ProgramStructureError",
    "TensorType",
    "UndefinedVariableError",
    "UnsupportedOpError",
    "apply_op",
    "load_program",
    "locate_spec",
    "op_histogram",
    "program_from_spec",
    "read_spec",
    "run_program",
    "supported_ops",
]

"""Exceptions raised while loading or executing an ML program."""

from __future__ import annotations


class MLProgramError(ValueError):
    """Base class: a Core ML package or ML program that cannot be read or run."""


class PackageError(MLProgramError):
    """The ``.mlpackage`` is missing, incomplete or corrupt (manifest, spec or weight file)."""


class ProgramStructureError(MLProgramError):
    """The program is not a valid SSA graph (a name used before it is defined, defined twice, ...)."""


class UndefinedVariableError(ProgramStructureError):
    """An op reads a variable that no earlier op (or program input) defines."""

    def __init__(self, op_type: str, output: str, missing: str) -> None:
        self.op_type = op_type
        self.output = output
        self.missing = missing
        super().__init__(
            f"op {op_type!r} (output {output!r}) reads {missing!r} before any op defines it; "
            "the program's operations are out of order or an op was removed"
        )


class UnsupportedOpError(MLProgramError):
    """The program uses an op type that the NumPy reference executor does not implement."""

    def __init__(self, op_type: str, output: str, detail: str = "") -> None:
        self.op_type = op_type
        self.output = output
        msg = f"unsupported ML program op {op_type!r} (output {output!r})"
        super().__init__(f"{msg}: {detail}" if detail else msg)


class OpExecutionError(MLProgramError):
    """An op failed on the values it was given (bad shapes, wrong declared type, ...)."""

    def __init__(self, op_type: str, output: str, detail: str) -> None:
        self.op_type = op_type
        self.output = output
        super().__init__(f"op {op_type!r} (output {output!r}) failed: {detail}")


class InputError(MLProgramError):
    """The inputs given to ``Program.run`` do not fit the model's input descriptions."""

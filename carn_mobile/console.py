"""Consoles for everything the tools print: the terminal's real width, no wrapping elsewhere."""

from __future__ import annotations

import os
import sys
from typing import TextIO

from rich.console import Console

#: Width for output that is not a terminal (CI logs, pipes, files): wide enough that messages
#: and tables are never cut or folded at rich's default of 80 columns.
UNWRAPPED_WIDTH = 240


def make_console(file: TextIO | None = None, *, stderr: bool = False) -> Console:
    """A rich console that uses the terminal's width (or ``$COLUMNS``), and does not wrap when
    the output is not a terminal."""
    stream = file or (sys.stderr if stderr else sys.stdout)
    is_tty = hasattr(stream, "isatty") and stream.isatty()
    width = None if is_tty or os.environ.get("COLUMNS") else UNWRAPPED_WIDTH
    return Console(file=file, stderr=stderr, highlight=False, soft_wrap=True, width=width)

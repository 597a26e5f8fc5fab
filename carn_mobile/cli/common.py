"""What every console script shares: consoles, error reporting and exit codes."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence

from rich.markup import escape

from ..console import make_console

#: Exit code for bad input (a usage error, an unreadable file, a mismatch).
EXIT_ERROR = 2
#: Progress bars, warnings and errors go to stderr, results to stdout.
err_console = make_console(stderr=True)


class CLIError(Exception):
    """A user-facing failure whose message is shown as is."""


def run(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run ``main`` and turn expected failures into a one-line message and a non-zero exit."""
    try:
        return main(argv)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except (CLIError, ValueError, OSError, ImportError) as exc:
        # Escaped: messages such as pip install "carn-mobile[export]" contain brackets.
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True)
        return EXIT_ERROR


def write_reports(json_path: str | os.PathLike | None, report: dict, markdown_path: str | os.PathLike | None,
                  markdown_text: str, force: bool = False) -> None:
    """A benchmark's JSON report and Markdown table, each written atomically where a path is given."""
    from ..fileio import atomic_output

    if json_path:
        with atomic_output(json_path, force=force) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
    if markdown_path:
        with atomic_output(markdown_path, force=force) as tmp:
            tmp.write_text(markdown_text)


def exit_with(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> None:
    """Entry-point helper: ``sys.exit(run(main, argv))``."""
    sys.exit(run(main, argv))

"""What every console script shares: error reporting and exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.markup import escape

#: Exit code for bad input (a usage error, an unreadable file, a mismatch).
EXIT_ERROR = 2

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


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


def parse_scales(text: str) -> list[int]:
    """``"2,3,4"`` or ``"all"`` -> ``[2, 3, 4]``; raises ``ValueError`` on anything else."""
    if text.strip().lower() == "all":
        return [2, 3, 4]
    try:
        scales = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"scales must be comma-separated integers such as 2,3,4, got {text!r}") from None
    bad = [s for s in scales if s not in (2, 3, 4)]
    if not scales or bad:
        raise ValueError(f"scales must be among 2, 3, 4, got {text!r}")
    return scales


def exit_with(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> None:
    """Entry-point helper: ``sys.exit(run(main, argv))``."""
    sys.exit(run(main, argv))

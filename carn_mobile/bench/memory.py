"""Peak memory of one inference, as resident-set growth.

On Linux the kernel's RSS high-water mark can be reset (``/proc/self/clear_refs``), so the
peak of exactly one call is measured: ``VmHWM`` after the call minus ``VmRSS`` before it.
Elsewhere ``ru_maxrss`` cannot be reset; the growth of the process peak is reported and
marked as a lower bound.
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Callable
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _can_reset_peak() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def _maxrss_kib() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # macOS reports bytes


def peak_memory_mb(fn: Callable[[], object]) -> tuple[float, str]:
    """Run ``fn`` once; return (peak RSS growth in MiB, method used)."""
    if _STATUS.is_file() and _can_reset_peak():
        before = _status_kib("VmRSS")
        _CLEAR_REFS.write_text("5")  # VmHWM := current RSS
        fn()
        return max(0, _status_kib("VmHWM") - before) / 1024, "linux-vmhwm"
    before = _maxrss_kib()
    fn()
    return max(0, _maxrss_kib() - before) / 1024, "maxrss-growth (lower bound)"


def peak_rss_mb(fn: Callable[[], object]) -> tuple[float, str]:
    """Run ``fn`` once; return (the process's resident-set high-water mark during it, in MiB, method).

    The absolute peak, unlike :func:`peak_memory_mb`'s growth, does not depend on how much
    the allocator happened to hand back before the call: the measure for "memory stays flat".
    """
    if _STATUS.is_file() and _can_reset_peak():
        fn()
        return _status_kib("VmHWM") / 1024, "linux-vmhwm"
    fn()
    return _maxrss_kib() / 1024, "maxrss (process peak so far)"


def current_rss_mb() -> float:
    """The process's resident set now, in MiB (the process peak where ``/proc`` is missing)."""
    if _STATUS.is_file():
        return _status_kib("VmRSS") / 1024
    return _maxrss_kib() / 1024

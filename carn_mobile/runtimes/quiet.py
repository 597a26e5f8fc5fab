"""Keep converters' console chatter (progress bars, version warnings, C++ logs) off the console.

Converters print from Python and from native code, so the capture works on file descriptors
1 and 2. When the wrapped block fails, the captured text is replayed to stderr so nothing
needed for debugging is lost. Set ``CARN_VERBOSE=1`` to let everything through.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def captured_output(enabled: bool = True) -> Iterator[None]:
    """Capture everything written to stdout/stderr inside the block (no-op if not ``enabled``)."""
    if not enabled or os.environ.get("CARN_VERBOSE", "") not in ("", "0"):
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        failed = False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            if failed:
                sink.seek(0)
                text = sink.read().decode(errors="replace").strip()
                if text:
                    sys.stderr.write(f"--- converter output ---\n{text}\n--- end of converter output ---\n")

"""Overlap the stages of a stream with threads and bounded queues, so the slowest one sets the pace.

A video is decoded, upscaled and encoded frame by frame. Run one after the other, the three
costs add up; run in threads joined by small queues, they overlap (FFmpeg's decoders and
encoders and PyTorch's kernels all release the GIL), and the queues' bounds keep memory
independent of the clip's length: at most ``depth`` items wait between two stages.

* :class:`Prefetch` runs a producer (an iterator) in a thread, ahead of its consumer;
* :class:`Sink` runs a consumer (a function called per item) in a thread, behind its producer.

An error in either thread is raised in the caller's thread at its next call, and closing one
side stops the other, so nothing is left running after a failure or Ctrl-C.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")

#: Items waiting between two stages (each a decoded or upscaled frame).
DEFAULT_DEPTH = 4

_POLL_S = 0.1  # how often a blocked thread checks whether the other side gave up
_END = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _put(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put ``item`` unless ``stop`` is set first; returns whether it was put."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


class Prefetch(Generic[T]):
    """Iterate ``items`` in a background thread, at most ``depth`` items ahead of the caller.

    Iterating re-raises the producer's exception where it happened in the sequence.
    :meth:`close` (also on leaving a ``with`` block) stops the producer and waits for it, which
    must happen before whatever it reads from (a demuxer) is closed; it is safe to call twice,
    and also when iteration never began.
    """

    def __init__(self, items: Iterable[T], depth: int = DEFAULT_DEPTH, name: str = "prefetch") -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._produce, args=(items,), name=name, daemon=True)
        self._thread.start()

    def _produce(self, items: Iterable[T]) -> None:
        try:
            for item in items:
                if not _put(self._q, item, self._stop):
                    return
            _put(self._q, _END, self._stop)
        except BaseException as exc:  # handed to the consumer, which decides
            _put(self._q, _Failure(exc), self._stop)

    def __iter__(self) -> Prefetch[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        item = self._q.get()
        if item is _END:
            self.close()
            raise StopIteration
        if isinstance(item, _Failure):
            self.close()
            raise item.exc
        return item

    def close(self) -> None:
        """Stop the producer and wait for it (it finishes the item it is making)."""
        self._done = True
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Sink(Generic[T]):
    """Call ``handle(item)`` for each :meth:`put` item in a background thread, in order.

    :meth:`put` blocks while ``depth`` items wait; it raises the handler's error once one
    happened. :meth:`close` waits for the queue to drain and re-raises a late error;
    :meth:`abort` drops what waits and stops the thread (for the failure path).
    """

    def __init__(self, handle: Callable[[T], None], depth: int = DEFAULT_DEPTH, name: str = "sink") -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._handle = handle
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            try:
                item = self._q.get(timeout=_POLL_S)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if item is _END:
                return
            try:
                self._handle(item)
            except BaseException as exc:
                self._error = exc
                self._stop.set()
                return

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: T) -> None:
        """Queue ``item`` for the handler; raises the handler's error if it failed."""
        self._raise()
        if not _put(self._q, item, self._stop):
            self._raise()
            raise RuntimeError("the sink was closed")

    def close(self) -> None:
        """Wait for every queued item to be handled; raise the handler's error if any."""
        if not self._stop.is_set():
            _put(self._q, _END, self._stop)
        self._thread.join()
        self._raise()

    def abort(self) -> None:
        """Stop without handling what still waits (errors are dropped: the caller is failing already)."""
        self._stop.set()
        self._thread.join()


__all__ = ["DEFAULT_DEPTH", "Prefetch", "Sink"]

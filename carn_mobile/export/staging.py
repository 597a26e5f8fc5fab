"""Write an artifact, its companion files and its manifest so that all appear, or none does."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from ..fileio import DiskFullError, atomic_output


@contextmanager
def staged_files(paths: Sequence[Path], force: bool = False) -> Iterator[list[Path]]:
    """Yield temporary paths for ``paths``; commit them all, in order, if the block succeeds.

    Each file is renamed into place atomically, the first one first (the artifact; the
    manifest goes last); if a later one cannot be committed, the ones already committed are
    removed again. A failure inside the block leaves nothing behind and existing files untouched;
    a full disk is a :class:`~carn_mobile.fileio.DiskFullError` naming the folder and the file.
    """
    committed: list[Path] = []
    temps: list[Path] = []
    try:
        with ExitStack() as stack:
            # ExitStack unwinds last-in first-out: enter in reverse so the first path commits first.
            temps = [stack.enter_context(_committing(path, force, committed)) for path in reversed(paths)][::-1]
            yield temps
    except BaseException as exc:
        for path in committed:
            _remove(path)
        if DiskFullError.is_full(exc) and not isinstance(exc, DiskFullError):
            raise DiskFullError(paths[0].parent, _being_written(exc, paths, temps)) from exc
        raise


def _being_written(exc: OSError, paths: Sequence[Path], temps: Sequence[Path]) -> str:
    """The output whose temporary file the error names, else the first (the artifact)."""
    named = str(exc.filename or "")
    for path, tmp in zip(paths, temps, strict=False):
        if named and named.startswith(str(tmp)):
            return path.name
    return paths[0].name


@contextmanager
def _committing(path: Path, force: bool, committed: list[Path]) -> Iterator[Path]:
    with atomic_output(path, force=force) as tmp:
        yield tmp
    committed.append(path)  # reached only once atomic_output has moved the file into place


@contextmanager
def staged_pair(artifact: Path, manifest: Path, force: bool = False) -> Iterator[tuple[Path, Path]]:
    """:func:`staged_files` for an artifact and its manifest."""
    with staged_files([artifact, manifest], force=force) as (tmp_artifact, tmp_manifest):
        yield tmp_artifact, tmp_manifest


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)

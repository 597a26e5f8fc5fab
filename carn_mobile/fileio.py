"""Safe file output: atomic writes that never clobber existing files without ``force``."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class OutputExistsError(FileExistsError):
    """Raised when an output already exists and overwriting was not asked for."""


class DiskFullError(OSError):
    """The disk filled up while an output was written; the message names the folder and the file."""

    def __init__(self, folder: Path, name: str) -> None:
        super().__init__(errno.ENOSPC, f"no space left on device in {folder} while writing {name}; nothing was "
                                       "written: free some space there or choose another output folder")

    def __str__(self) -> str:
        return str(self.strerror)

    @staticmethod
    def is_full(exc: BaseException) -> bool:
        """Whether ``exc`` says the disk (or the quota) is full."""
        return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


#: Staging folders are named ``.<output name>.carn-<pid>-<random>.tmp``: the pid of the process
#: writing it, so a later run can tell a dead run's leftovers (``kill -9``) from live work.
_STAGING = re.compile(r"^\.(?P<name>.+)\.carn-(?P<pid>\d+)-[^.]+\.tmp$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def stale_staging(folder: str | os.PathLike) -> list[Path]:
    """Staging folders in ``folder`` that a dead carn-mobile process left: named by
    :func:`atomic_output` for a pid no longer running, holding nothing but that one output."""
    root = Path(folder)
    if not root.is_dir():
        return []
    stale = []
    for entry in root.iterdir():
        match = _STAGING.match(entry.name)
        if not match or not entry.is_dir() or entry.is_symlink() or _alive(int(match["pid"])):
            continue
        if {p.name for p in entry.iterdir()} <= {match["name"]}:
            stale.append(entry)
    return sorted(stale)


def remove_stale_staging(folder: str | os.PathLike) -> list[Path]:
    """Remove :func:`stale_staging` leftovers in ``folder``; returns what was removed."""
    removed = stale_staging(folder)
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def check_writable(path: Path, force: bool) -> None:
    """Fail early if ``path`` exists (without ``force``) or its folder cannot be created."""
    if path.exists() and not force:
        raise OutputExistsError(f"{path} already exists; pass --force to overwrite it")


@contextmanager
def atomic_output(path: str | os.PathLike, force: bool = False, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    On any exception the temporary file or folder is removed, so a failed write leaves
    nothing behind and an existing output is untouched. A process killed outright leaves its
    staging folder, which :func:`remove_stale_staging` recognises later.
    """
    final = Path(path)
    check_writable(final, force)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.carn-{os.getpid()}-", suffix=".tmp", dir=final.parent))
    target = tmp / final.name
    try:
        if directory:
            target.mkdir()
        yield target
        if not target.exists():
            raise RuntimeError(f"nothing was written for {final}")
        _apply_umask(target)  # mkdtemp's private 0700/0600 modes must not leak into outputs
        check_writable(final, force)  # something may have appeared meanwhile
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        os.replace(target, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _apply_umask(path: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file (or of every file in a folder, in sorted path order)."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()

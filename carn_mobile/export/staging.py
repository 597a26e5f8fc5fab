"""Write an artifact and its manifest so that both appear, or neither does."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..fileio import atomic_output


@contextmanager
def staged_pair(artifact: Path, manifest: Path, force: bool = False) -> Iterator[tuple[Path, Path]]:
    """Yield temporary paths for the artifact and its manifest; commit both if the block succeeds.

    Each file is renamed into place atomically, the artifact first; if the manifest cannot
    be committed afterwards, the new artifact is removed again. A failure inside the block
    leaves nothing behind and existing files untouched.
    """
    artifact_committed = False
    try:
        with atomic_output(manifest, force=force) as tmp_manifest:
            with atomic_output(artifact, force=force) as tmp_artifact:
                yield tmp_artifact, tmp_manifest
            artifact_committed = True
    except BaseException:
        if artifact_committed:
            if artifact.is_dir() and not artifact.is_symlink():
                shutil.rmtree(artifact, ignore_errors=True)
            else:
                artifact.unlink(missing_ok=True)
        raise

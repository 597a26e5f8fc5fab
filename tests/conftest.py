"""Shared test helpers: where ``../shared`` is, and fixtures that skip clearly without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_root() -> Path:
    """The read-only data folder: ``$CARN_SHARED``, else ``<repo>/../shared``."""
    env = os.environ.get("CARN_SHARED")
    return Path(env) if env else REPO_ROOT.parent / "shared"


def require_shared(*parts: str) -> Path:
    """Path under the shared folder; skips the calling test when it is missing."""
    path = shared_root().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (shared data; set CARN_SHARED to its location)")
    return path


@pytest.fixture
def set5_dir() -> Path:
    return require_shared("data", "benchmark", "Set5")


@pytest.fixture
def set14_dir() -> Path:
    return require_shared("data", "benchmark", "Set14")


@pytest.fixture
def authors_carn_m() -> Path:
    return require_shared("weights", "carn_m.pth")


@pytest.fixture
def t91_dir() -> Path:
    return require_shared("data", "train", "T91")


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test, restored after: small inputs gain nothing from two, and
    two threads crawl when the two cores are shared with other work."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

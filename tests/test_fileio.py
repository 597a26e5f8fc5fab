"""Atomic outputs: nothing half-written, nothing overwritten without force."""

from __future__ import annotations

import os

import pytest

from carn_mobile.fileio import OutputExistsError, atomic_output, sha256_file


def test_file_appears_only_on_success(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_output(target) as tmp:
        tmp.write_text("hello")
        assert not target.exists()
    assert target.read_text() == "hello"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_failure_leaves_nothing(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_output(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_force(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("keep me")
    with pytest.raises(OutputExistsError, match="--force"):
        with atomic_output(target) as tmp:
            tmp.write_text("new")
    assert target.read_text() == "keep me"
    with atomic_output(target, force=True) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_directory_outputs_replace_whole_folders(tmp_path):
    target = tmp_path / "pkg.mlpackage"
    with atomic_output(target, directory=True) as tmp:
        (tmp / "a.bin").write_bytes(b"1")
    with atomic_output(target, force=True, directory=True) as tmp:
        (tmp / "b.bin").write_bytes(b"2")
    assert sorted(p.name for p in target.iterdir()) == ["b.bin"]


def test_outputs_get_normal_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        with atomic_output(tmp_path / "f.bin") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(umask)
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == 0o644


def test_sha256_of_files_and_folders(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_bytes(b"abc")
    (tmp_path / "f").write_bytes(b"abc")
    assert sha256_file(tmp_path / "f") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    before = sha256_file(tmp_path / "d")
    (tmp_path / "d" / "x").write_bytes(b"abd")
    assert sha256_file(tmp_path / "d") != before

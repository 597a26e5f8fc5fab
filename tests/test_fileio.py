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


def _dead_pid() -> int:
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_killed_runs_staging_folder_is_recognised_and_removed(tmp_path):
    from carn_mobile.fileio import remove_stale_staging, stale_staging

    dead = tmp_path / f".carn-m_x2_fp16.mlpackage.carn-{_dead_pid()}-k3j2.tmp"
    (dead / "carn-m_x2_fp16.mlpackage").mkdir(parents=True)
    (dead / "carn-m_x2_fp16.mlpackage" / "Manifest.json").write_text("{}")
    live = tmp_path / f".carn-m_x2_fp16.mlpackage.json.carn-{os.getpid()}-a1.tmp"  # this process: still at work
    live.mkdir()
    foreign = tmp_path / ".notes.txt.x9.tmp"  # not named by carn-mobile: not ours to remove
    foreign.mkdir()
    crowded = tmp_path / f".a.onnx.carn-{_dead_pid()}-zz.tmp"  # holds more than its one output: keep
    (crowded / "other").mkdir(parents=True)
    assert stale_staging(tmp_path) == [dead]
    assert remove_stale_staging(tmp_path) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, foreign.name, crowded.name])


def test_staging_names_carry_the_writing_process(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_output(target) as tmp:
        assert tmp.parent.name.startswith(f".out.txt.carn-{os.getpid()}-") and tmp.parent.name.endswith(".tmp")
        tmp.write_text("x")


def test_a_full_disk_names_the_folder_and_the_file_and_leaves_nothing(tmp_path):
    import errno

    from carn_mobile.export.staging import staged_files
    from carn_mobile.fileio import DiskFullError

    out = tmp_path / "out"
    paths = [out / "model.onnx", out / "model.onnx.json"]
    with pytest.raises(DiskFullError) as raised:
        with staged_files(paths) as (artifact, manifest):
            artifact.write_text("partial")
            raise OSError(errno.ENOSPC, "No space left on device", str(manifest))
    message = str(raised.value)
    assert message.startswith(f"no space left on device in {out} while writing model.onnx.json")
    assert "Errno" not in message and raised.value.errno == errno.ENOSPC
    assert list(out.iterdir()) == []

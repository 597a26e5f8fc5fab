"""``carn-upscale``: batches of files, folders and globs; safe outputs; summary and exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from carn_mobile.cli.upscale import main
from carn_mobile.fileio import sha256_file

RNG = np.random.default_rng(5)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    return info.value.code


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file below ``folder`` (to prove inputs stay unchanged)."""
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[Path]:
    """Temporary files or folders of atomic writes (``.<name>.*.tmp``) left anywhere below."""
    return [p for p in folder.rglob(".*") if p.name.endswith(".tmp")]


def rgb(path: Path, size=(12, 10), mode="RGB", **save) -> Path:
    w, h = size
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    a = RNG.integers(0, 256, (h, w, channels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a[..., 0] if channels == 1 else a, mode).save(path, **save)
    return path


# ----------------------------------------------------------------------------- single images


def test_single_file_beside_input(tmp_path, capsys):
    src = rgb(tmp_path / "a.png")
    digest = sha256_file(src)
    assert run([src, "--scale", "3"]) == 0
    out = tmp_path / "a_x3.png"
    assert Image.open(out).size == (36, 30)
    captured = capsys.readouterr()
    assert "done 1, skipped 0, failed 0" in captured.out and "a_x3.png" in captured.out
    assert sha256_file(src) == digest and not leftovers(tmp_path)


def test_output_file_and_format(tmp_path):
    src = rgb(tmp_path / "a.png", mode="RGBA")
    assert run([src, "-o", tmp_path / "out" / "big.webp", "--scale", "2"]) == 0
    with Image.open(tmp_path / "out" / "big.webp") as im:
        assert im.format == "WEBP" and im.mode == "RGBA" and im.size == (24, 20)
    assert run([src, "-o", tmp_path / "o2", "--format", "jpg", "--scale", "2", "--quality", "80"]) == 0
    with Image.open(tmp_path / "o2" / "a_x2.jpg") as im:
        assert im.format == "JPEG" and im.mode == "RGB"


def test_existing_output_is_skipped_then_forced(tmp_path, capsys):
    src = rgb(tmp_path / "a.png")
    out = tmp_path / "a_x2.png"
    out.write_bytes(b"precious")
    assert run([src, "--scale", "2"]) == 0  # a skip alone is not a failure
    assert out.read_bytes() == b"precious"
    assert "done 0, skipped 1, failed 0" in capsys.readouterr().out.replace("\n", " ")
    assert run([src, "--scale", "2", "--force"]) == 0
    assert Image.open(out).size == (24, 20)


def test_tiling_is_reported_and_exact(tmp_path, capsys):
    src = rgb(tmp_path / "a.png", size=(37, 29))
    assert run([src, "-o", tmp_path / "whole.png", "--scale", "4", "--tile", "0"]) == 0
    assert run([src, "-o", tmp_path / "tiled.png", "--scale", "4", "--tile", "13"]) == 0
    err = capsys.readouterr().err
    assert "tiling: 9 tiles of up to 13x13 LR px, overlap 21 (receptive field radius 20.75 LR px)" in err
    whole, tiled = np.asarray(Image.open(tmp_path / "whole.png")), np.asarray(Image.open(tmp_path / "tiled.png"))
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1  # float-equal before rounding


def test_auto_tiling_under_max_memory(tmp_path, capsys):
    src = rgb(tmp_path / "a.png", size=(70, 50))
    assert run([src, "--scale", "2", "--max-memory", "20M"]) == 0
    assert "tiling automatically" in capsys.readouterr().err


def test_small_overlap_warns(tmp_path, capsys):
    src = rgb(tmp_path / "a.png", size=(30, 20))
    assert run([src, "--scale", "2", "--tile", "10", "--overlap", "4"]) == 0
    assert "warning: --overlap 4 is below the receptive field" in capsys.readouterr().err


def test_modes_icc_and_16bit_through_the_cli(tmp_path, png_bytes):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgb(tmp_path / "in" / "icc.jpg", icc_profile=icc, quality=95)
    rgb(tmp_path / "in" / "gray.png", mode="L")
    Image.fromarray(RNG.integers(0, 256, (10, 12, 3), dtype=np.uint8)).convert("P").save(tmp_path / "in" / "pal.gif")
    (tmp_path / "in" / "deep.png").write_bytes(png_bytes(RNG.integers(0, 65536, (10, 12, 4), dtype=np.uint16), 6))
    Image.fromarray(RNG.integers(0, 256, (10, 12, 4), dtype=np.uint8), "CMYK").save(tmp_path / "in" / "ink.jpg")
    before = snapshot(tmp_path / "in")
    assert run([tmp_path / "in", "-o", tmp_path / "out", "--scale", "2", "--no-progress"]) == 0
    out = tmp_path / "out"
    with Image.open(out / "icc_x2.jpg") as im:
        assert im.info.get("icc_profile") == icc
    with Image.open(out / "gray_x2.png") as im:
        assert im.mode == "L"
    with Image.open(out / "pal_x2.png") as im:  # GIF is not an output format: PNG
        assert im.mode == "RGB" and im.size == (24, 20)
    with Image.open(out / "ink_x2.jpg") as im:
        assert im.mode == "RGB"
    from carn_mobile.upscaling.image_read import read_image

    deep = read_image(out / "deep_x2.png")
    assert deep.bit_depth == 16 and deep.alpha is not None and deep.pixels.shape == (20, 24, 3)
    assert snapshot(tmp_path / "in") == before


# ----------------------------------------------------------------------------- batches


def test_folder_with_broken_files_continues_and_summarises(tmp_path, capsys, make_broken_files):
    folder = tmp_path / "in"
    expected = make_broken_files(folder)
    for name in ("good1.png", "good2.jpg"):
        rgb(folder / name)
    before = snapshot(folder)
    code = run([folder, "-o", tmp_path / "out", "--scale", "2"])
    captured = capsys.readouterr()
    assert code == 1
    # every broken file has an image suffix, so each one is attempted and fails on its own
    assert f"done 2, skipped 0, failed {len(expected)}" in captured.out
    for name, fragment in expected.items():
        line = next(ln for ln in captured.out.splitlines() if ln.strip().startswith("failed") and name in ln)
        assert fragment in line, line
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good1_x2.png", "good2_x2.jpg"]
    assert snapshot(folder) == before and not leftovers(tmp_path)


def test_globs_and_missing_inputs(tmp_path, capsys):
    for name in ("a.png", "b.png", "sub/c.png", "notes.txt"):
        if name.endswith(".png"):
            rgb(tmp_path / name)
        else:
            (tmp_path / name).write_text("hi")
    code = run(
        [f"{tmp_path}/**/*.png", tmp_path / "missing.png", f"{tmp_path}/*.bmp", "-o", tmp_path / "out", "--scale", "2"]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "done 3, skipped 0, failed 2" in out
    assert "no such file or folder" in out and "pattern matched no image or video files" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_x2.png", "b_x2.png", "c_x2.png"]


def test_name_collisions_fail_clearly(tmp_path, capsys):
    rgb(tmp_path / "d1" / "x.png")
    rgb(tmp_path / "d2" / "x.png")
    rgb(tmp_path / "d2" / "x.jpg")  # same stem in one folder, -o with --format png
    rgb(tmp_path / "d2" / "y.png")
    code = run([tmp_path / "d1", tmp_path / "d2", "-o", tmp_path / "out", "--scale", "2", "--format", "png"])
    out = capsys.readouterr().out
    assert code == 1 and "done 1, skipped 0, failed 3" in out
    assert out.count("output name collision") == 3
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["y_x2.png"]


def test_output_never_overwrites_an_input(tmp_path, capsys):
    a = rgb(tmp_path / "a.png")
    victim = rgb(tmp_path / "a_x2.png")  # an input that is also a's output name
    digest = sha256_file(victim)
    code = run([a, victim, "--scale", "2", "--force"])
    out = capsys.readouterr().out
    assert code == 1 and "would overwrite the input" in out
    assert sha256_file(victim) == digest
    assert run([a, "-o", a, "--scale", "2", "--force"]) == 1
    assert "would overwrite the input" in capsys.readouterr().out


def test_usage_errors_exit_2_and_write_nothing(tmp_path, capsys):
    a, b = rgb(tmp_path / "a.png"), rgb(tmp_path / "b.png")
    before = snapshot(tmp_path)
    cases = [
        ([a, b, "-o", tmp_path / "one.png", "--scale", "2"], "names one output file but there are 2 inputs"),
        ([tmp_path, "--scale", "2"], "folders and globs need -o OUT_DIR"),
        ([a, "--scale", "5"], "invalid choice: 5"),
        ([a], "the following arguments are required: --scale"),
        ([a, "-o", tmp_path / "x.tif", "--scale", "2"], "unsupported output suffix '.tif'"),
        ([a, "-o", tmp_path / "x.png", "--format", "jpg", "--scale", "2"], "contradicts the output file name"),
        ([a, "-o", a / "sub", "--scale", "2"], "is not a folder"),
        ([a, "--scale", "2", "--weights", tmp_path / "nope.pth"], "does not exist"),
        ([a, "--scale", "2", "--tile", "-1"], "tile size must be >= 0"),
        ([a, "--scale", "2", "--max-memory", "lots"], "cannot read 'lots' as a size"),
        ([a, "--scale", "2", "--backend", "tensorrt"], "invalid choice: 'tensorrt'"),
    ]
    for argv, message in cases:
        assert run(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert snapshot(tmp_path) == before


def test_weights_without_the_scale(tmp_path, capsys):
    from carn_mobile.models import carn_m
    from carn_mobile.weights import save_weights

    ckpt = save_weights(carn_m(scale=4), tmp_path / "x4.safetensors", arch="carn-m")
    src = rgb(tmp_path / "a.png")
    assert run([src, "--scale", "2", "--weights", ckpt]) == 2
    assert "x2 not available" in capsys.readouterr().err
    assert run([src, "--scale", "4", "--weights", ckpt]) == 0


def test_max_pixels_flag(tmp_path, capsys):
    src = rgb(tmp_path / "a.png", size=(30, 20))
    assert run([src, "--scale", "2", "--max-pixels", "599"]) == 1
    assert "30x20 = 600 pixels exceeds the limit of 599" in capsys.readouterr().out
    assert not (tmp_path / "a_x2.png").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes through permission bits")
def test_unreadable_input_and_unwritable_output(tmp_path, capsys):
    src = rgb(tmp_path / "a.png")
    src.chmod(0)
    try:
        assert run([src, "-o", tmp_path / "out", "--scale", "2"]) == 1
        assert "permission denied" in capsys.readouterr().out
    finally:
        src.chmod(0o644)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert run([src, "-o", locked, "--scale", "2"]) == 2
    assert "not writable" in capsys.readouterr().err


def test_write_failure_mid_batch_leaves_nothing(tmp_path, capsys, monkeypatch):
    rgb(tmp_path / "in" / "a.png")
    rgb(tmp_path / "in" / "b.png")
    calls = []

    def save_then_fail(self, fp, *args, **kwargs):
        calls.append(fp)
        Path(fp).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", save_then_fail)
    code = run([tmp_path / "in", "-o", tmp_path / "out", "--scale", "2"])
    assert code == 1 and len(calls) == 2
    assert "No space left on device" in capsys.readouterr().out
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_console_script_runs(tmp_path):
    src = rgb(tmp_path / "a.png")
    exe = Path(sys.executable).with_name("carn-upscale")
    if not exe.exists():
        pytest.skip("carn-upscale is not installed in this environment")
    r = subprocess.run([exe, src, "--scale", "2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "a_x2.png").exists()


def test_a_file_written_by_this_run_is_never_replaced(tmp_path, capsys):
    # Stands in for a case-insensitive disk, where b_x2.png and B_x2.png are one file.
    rgb(tmp_path / "in" / "a.png")
    rgb(tmp_path / "in" / "b.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "b_x2.png").symlink_to(out / "a_x2.png")
    assert run([tmp_path / "in", "-o", out, "--scale", "2", "--force"]) == 1
    assert "a file this batch already wrote" in capsys.readouterr().out
    assert Image.open(out / "a_x2.png").size == (24, 20)

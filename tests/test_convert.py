"""carn-convert: strict check of a checkpoint, safetensors out, nothing half-written."""

from __future__ import annotations

import pytest
import torch

from carn_mobile.cli.convert import main as convert_main
from carn_mobile.models import carn_m
from carn_mobile.weights import load_model


def _run(argv) -> int:
    with pytest.raises(SystemExit) as exit_info:
        convert_main([str(a) for a in argv])
    return exit_info.value.code


@pytest.fixture
def pth(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save(carn_m().state_dict(), path)
    return path


def test_converts_and_refuses_to_overwrite(pth, tmp_path, capsys):
    dst = tmp_path / "out.safetensors"
    assert _run([pth, dst]) == 0
    assert "414,787 params" in capsys.readouterr().out
    assert load_model(weights=dst).arch == "carn-m"
    before = dst.read_bytes()
    assert _run([pth, dst]) == 2
    assert "--force" in capsys.readouterr().err
    assert dst.read_bytes() == before
    assert _run([pth, dst, "--force"]) == 0


@pytest.mark.parametrize("kind", ["garbage", "wrong_suffix", "wrong_model"])
def test_failures_write_nothing(pth, tmp_path, capsys, kind):
    src, dst, extra = pth, tmp_path / "out.safetensors", []
    if kind == "garbage":
        src = tmp_path / "bad.pth"
        src.write_bytes(b"not a checkpoint")
    elif kind == "wrong_suffix":
        dst = tmp_path / "out.pth"
    else:
        extra = ["--model", "carn"]
    assert _run([src, dst, *extra]) == 2
    err = capsys.readouterr().err
    assert {"garbage": "cannot read", "wrong_suffix": "must end in .safetensors", "wrong_model": "missing keys"}[
        kind
    ] in err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({pth.name, src.name})

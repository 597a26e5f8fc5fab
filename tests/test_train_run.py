"""carn-train end to end on tiny synthetic data: outputs, run-folder rules, clear errors, fine-tuning, carn-eval."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from carn_mobile.cli.eval import main as eval_main
from carn_mobile.cli.train import main as train_main
from carn_mobile.weights import load_model, read_state_dict

# A 3.5k-parameter CARN-M that trains a step in milliseconds.
TINY = ["--model", "carn-m", "--model-arg", "channels=8", "--model-arg", "num_blocks=1", "--model-arg",
        "units_per_block=2", "--threads", "1", "--batch-size", "4", "--patch-size", "8", "--no-progress"]


def _run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exc:
        train_main(argv)
    return exc.value.code


def _images(folder: Path, n: int, size: tuple[int, int] = (48, 56), seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        # Smooth content plus noise, closer to photos than pure noise.
        yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
        base = 127 + 80 * np.sin(xx / (3 + i) + rng.uniform(0, 6))[..., None] * np.cos(yy / 5)[..., None]
        img = np.clip(base + rng.normal(0, 20, (*size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"im{i}.png")
    return folder


@pytest.fixture
def data(tmp_path) -> Path:
    return _images(tmp_path / "train", 4)


@pytest.fixture
def val(tmp_path) -> Path:
    return _images(tmp_path / "val", 2, seed=1)


def test_run_writes_config_weights_logs_and_curves(tmp_path, data, val, capsys) -> None:
    cfg_file = tmp_path / "recipe.json"
    cfg_file.write_text(json.dumps({"steps": 100, "lr": 5e-4, "log_every": 2, "val_every": 4, "seed": 3}))
    out = tmp_path / "run"
    argv = [*TINY, "--config", str(cfg_file), "--steps", "8", "--scale", "multi", "--data", str(data),
            "--val", str(val), "--out", str(out), "--checkpoint-every", "4"]
    assert _run(argv) == 0
    captured = capsys.readouterr()
    assert "8 steps" in captured.out and "val PSNR" in captured.out
    assert "bicubic val PSNR" in captured.err

    saved = json.loads((out / "config.json").read_text())
    assert saved["steps"] == 8 and saved["lr"] == 5e-4 and saved["seed"] == 3  # flag > file > default
    assert saved["scales"] == [2, 3, 4] and saved["data"] == [str(data.resolve())]
    state = read_state_dict(out / "model.safetensors")
    branches = {k.split(".")[1] for k in state if k.startswith("upsample.")}
    assert branches == {"up2", "up3", "up4"}
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-000000008"]  # only the latest is kept

    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8]
    assert rows[0]["val_psnr"] == "" and float(rows[1]["val_psnr"]) > 0
    assert set(rows[0]) >= {"loss", "lr", "steps_per_s", "val_x2", "val_x3", "val_x4"}
    log = json.loads((out / "log.json").read_text())
    assert set(log["bicubic_psnr"]) == {"val_x2", "val_x3", "val_x4"} and log["best"]["step"] in (4, 8)
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 8 and summary["arch"] == "carn-m" and len(summary["sha256"]) == 64
    assert summary["model_config"]["channels"] == 8


def test_finished_run_goes_straight_to_carn_eval(tmp_path, data, capsys) -> None:
    bench = _images(tmp_path / "bench" / "HR", 1, size=(24, 30)).parent
    out = tmp_path / "run"
    assert _run([*TINY, "--scale", "2,4", "--steps", "2", "--data", str(data), "--out", str(out)]) == 0
    # The weights file carries the architecture, so even this small variant loads as trained.
    model = load_model(weights=out / "model.safetensors")
    assert model.scales == (2, 4) and model.config.channels == 8
    with pytest.raises(SystemExit) as exc:
        eval_main(["--weights", str(out / "model.safetensors"), "--scale", "2,4", "--data", str(bench),
                   "--no-progress"])
    assert exc.value.code in (0, None)
    assert "bench" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--data", "{tmp}/missing"], "does not exist"),
        (["--data", "{tmp}/empty"], "holds no images"),
        (["--data", "{data}", "--patch-size", "40"], "patch size 40 at x2 needs HR images of at least 80x80"),
        (["--data", "{data}", "--scale", "5"], "bad scale spec"),
        (["--data", "{data}", "--scale", "x4"], "bad scale spec"),
        (["--data", "{data}", "--bf16"], "--bf16 needs a CUDA device"),
        (["--data", "{data}", "--model-arg", "width=3"], "unknown field(s) width"),
        (["--data", "{data}", "--model-arg", "channels"], "KEY=VALUE"),
        (["--data", "{data}", "--init", "{tmp}/nothing.safetensors"], "does not exist"),
        (["--data", "{data}", "--val", "{tmp}/missing"], "validation folder"),
        (["--data", "{data}", "--val", "{tmp}/empty"], "holds no images"),
        (["--data", "{data}", "--batch-size", "0"], "batch_size must be at least 1"),
        (["--data", "{data}", "--config", "{tmp}/missing.json"], "does not exist"),
        (["--data", "{data}", "--resume", "--force"], "exclude each other"),
        (["--data", "{data}", "--resume"], "nothing to resume"),
        ([], "no training data"),
    ],
)
def test_bad_input_fails_clearly_and_writes_nothing(tmp_path, data, capsys, extra, message) -> None:
    (tmp_path / "empty").mkdir()
    out = tmp_path / "run"
    argv = [a.format(tmp=tmp_path, data=data) for a in extra]
    assert _run([*TINY, "--steps", "2", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and message in err
    assert not out.exists()


def test_non_empty_run_dir_is_refused_then_force_starts_over(tmp_path, data, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    base = [*TINY, "--data", str(data), "--out", str(out), "--log-every", "1"]
    assert _run([*base, "--steps", "2"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]

    assert _run([*base, "--steps", "3", "--force"]) == 0
    assert _run([*base, "--steps", "2", "--force"]) == 0
    # Old outputs are replaced, files carn-train did not write are kept.
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-000000002"]
    assert len(list(csv.DictReader((out / "log.csv").open()))) == 2
    assert (out / "notes.txt").read_text() == "mine"


def test_resume_refuses_recipe_changes_and_config_files(tmp_path, data, capsys) -> None:
    out = tmp_path / "run"
    assert _run([*TINY, "--data", str(data), "--out", str(out), "--steps", "2"]) == 0
    before = sorted(p.name for p in out.rglob("*"))
    assert _run(["--out", str(out), "--resume", "--steps", "4", "--lr", "1e-2", "--no-progress"]) == 2
    assert "cannot change lr when resuming" in capsys.readouterr().err
    cfg = tmp_path / "c.json"
    cfg.write_text("{}")
    assert _run(["--out", str(out), "--resume", "--config", str(cfg), "--no-progress"]) == 2
    assert "--config cannot be used with --resume" in capsys.readouterr().err
    assert sorted(p.name for p in out.rglob("*")) == before
    assert _run(["--out", str(out), "--resume", "--no-progress"]) == 0
    assert "nothing to do" in capsys.readouterr().err


def test_fine_tune_from_shipped_carn_m_single_scale(tmp_path, data) -> None:
    out = tmp_path / "run"
    # No --model: --init carn-m trains CARN-M; --scale 4 takes the x4 branch of the x2/x3/x4 weights.
    argv = ["--init", "carn-m", "--scale", "4", "--steps", "1", "--lr", "1e-9", "--batch-size", "2",
            "--patch-size", "8", "--threads", "1", "--data", str(data), "--out", str(out), "--no-progress"]
    assert _run(argv) == 0
    tuned = read_state_dict(out / "model.safetensors")
    shipped = load_model("carn-m").state_dict()
    assert not any(k.startswith("upsample.up4.") for k in tuned)
    for k, v in tuned.items():
        ref = shipped[k.replace("upsample.up.", "upsample.up4.")]
        torch.testing.assert_close(v, ref, atol=1e-6, rtol=0)


def test_fine_tune_from_a_checkpoint_file(tmp_path, data) -> None:
    first = tmp_path / "first"
    assert _run([*TINY, "--data", str(data), "--out", str(first), "--steps", "3"]) == 0
    second = tmp_path / "second"
    assert _run([*TINY, "--data", str(data), "--out", str(second), "--steps", "1", "--lr", "1e-9",
                 "--init", str(first / "model.safetensors")]) == 0
    a, b = read_state_dict(first / "model.safetensors"), read_state_dict(second / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)
    assert json.loads((second / "config.json").read_text())["init"] == str((first / "model.safetensors").resolve())


def test_init_with_wrong_architecture_fails_clearly(tmp_path, data, capsys) -> None:
    out = tmp_path / "run"
    assert _run([*TINY[2:], "--model", "carn", "--init", "carn-m", "--data", str(data), "--out", str(out)]) == 2
    assert "does not fit" in capsys.readouterr().err
    assert not out.exists()

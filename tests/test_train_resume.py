"""--resume continues exactly: a resumed run matches an uninterrupted one step for step."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from carn_mobile.cli.train import main as train_main
from carn_mobile.train import build_config, list_checkpoints, resume_config, train
from carn_mobile.train.patches import PatchBatches
from carn_mobile.weights import read_state_dict

TIMING = {"steps_per_s", "elapsed_s"}


def _run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exc:
        train_main(argv)
    return exc.value.code


@pytest.fixture
def folders(tmp_path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    out = []
    for name, n in (("train", 3), ("val", 1)):
        d = tmp_path / name
        d.mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (48, 52, 3), dtype=np.uint8)).save(d / f"{i}.png")
        out.append(d)
    return out[0], out[1]


def _overrides(data: Path, val: Path, steps: int) -> dict:
    # Multi-scale, so that the per-step scale draw is part of what must be reproduced.
    return {
        "data": [str(data)], "val": [str(val)], "model": "carn-m", "scales": "multi", "steps": steps,
        "model_args": {"channels": 8, "num_blocks": 1, "units_per_block": 2}, "batch_size": 4, "patch_size": 8,
        "lr": 1e-3, "log_every": 2, "val_every": 6, "checkpoint_every": 3, "threads": 1,
    }


def _rows(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in json.loads((run / "log.json").read_text())["rows"]]


def _assert_same_run(a: Path, b: Path) -> None:
    wa, wb = read_state_dict(a / "model.safetensors"), read_state_dict(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert _rows(a) == _rows(b)
    sa = torch.load(list_checkpoints(a / "checkpoints")[-1][1] / "state.pt", weights_only=True)
    sb = torch.load(list_checkpoints(b / "checkpoints")[-1][1] / "state.pt", weights_only=True)
    assert sa["step"] == sb["step"] and sa["scheduler"] == sb["scheduler"]
    for pid, st in sa["optimizer"]["state"].items():
        for name, t in st.items():
            assert torch.equal(t, sb["optimizer"]["state"][pid][name]), (pid, name)


def test_stop_and_resume_from_the_cli_matches_a_straight_run(tmp_path, folders) -> None:
    data, val = folders
    common = ["--model", "carn-m", "--model-arg", "channels=8", "--model-arg", "num_blocks=1",
              "--model-arg", "units_per_block=2", "--scale", "multi", "--batch-size", "4", "--patch-size", "8",
              "--lr", "1e-3", "--log-every", "2", "--val-every", "6", "--checkpoint-every", "3", "--threads", "1",
              "--data", str(data), "--val", str(val), "--no-progress"]
    assert _run([*common, "--steps", "12", "--out", str(tmp_path / "straight")]) == 0
    assert _run([*common, "--steps", "6", "--out", str(tmp_path / "split")]) == 0
    assert _run(["--out", str(tmp_path / "split"), "--resume", "--steps", "12", "--no-progress"]) == 0
    _assert_same_run(tmp_path / "straight", tmp_path / "split")
    assert [r["step"] for r in _rows(tmp_path / "split")] == [2, 3, 4, 6, 8, 9, 10, 12]
    assert json.loads((tmp_path / "split" / "config.json").read_text())["steps"] == 12


def test_interrupted_run_resumes_exactly(tmp_path, folders, monkeypatch) -> None:
    data, val = folders
    train(build_config(overrides=_overrides(data, val, 12)), tmp_path / "straight", progress=False)

    original = PatchBatches.__getitem__

    def crash_at_step_8(self, step):
        if step == 7:  # the 8th batch: the last checkpoint is at step 6
            raise KeyboardInterrupt
        return original(self, step)

    monkeypatch.setattr(PatchBatches, "__getitem__", crash_at_step_8)
    with pytest.raises(KeyboardInterrupt):
        train(build_config(overrides=_overrides(data, val, 12)), tmp_path / "crashed", progress=False)
    assert [s for s, _ in list_checkpoints(tmp_path / "crashed" / "checkpoints")] == [6]
    monkeypatch.setattr(PatchBatches, "__getitem__", original)

    result = train(resume_config(tmp_path / "crashed"), tmp_path / "crashed", resume=True, progress=False)
    assert result.steps == 12
    _assert_same_run(tmp_path / "straight", tmp_path / "crashed")


def test_training_state_is_plain_data(tmp_path, folders) -> None:
    data, val = folders
    train(build_config(overrides=_overrides(data, val, 3)), tmp_path / "run", progress=False)
    (step, path), = list_checkpoints(tmp_path / "run" / "checkpoints")
    state = torch.load(path / "state.pt", weights_only=True)  # no arbitrary unpickling needed
    assert step == state["step"] == 3
    assert set(state) >= {"format", "version", "optimizer", "scheduler", "rng", "history", "world_size"}
    assert isinstance(state["rng"]["torch"], torch.Tensor)
    assert state["scheduler"]["step_size"] == 400_000 and state["scheduler"]["gamma"] == 0.5
    final = read_state_dict(tmp_path / "run" / "model.safetensors")
    assert read_state_dict(path / "model.safetensors").keys() == final.keys()


def test_learning_rate_is_halved_on_schedule(tmp_path, folders) -> None:
    data, val = folders
    overrides = {**_overrides(data, val, 6), "lr_decay_steps": 2, "log_every": 1, "val": []}
    result = train(build_config(overrides=overrides), tmp_path / "run", progress=False)
    assert [r["lr"] for r in result.history.rows] == [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4]


def test_worker_processes_give_the_same_batches(tmp_path, folders) -> None:
    data, val = folders
    overrides = {**_overrides(data, val, 6), "val": []}
    a = train(build_config(overrides=overrides), tmp_path / "inline", progress=False)
    b = train(build_config(overrides={**overrides, "workers": 2}), tmp_path / "workers", progress=False)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k

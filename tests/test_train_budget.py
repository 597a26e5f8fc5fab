"""--time-budget plans the run to end in time and resumes on its plan; the GPU-ready code paths run on CPU."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from carn_mobile.models import build_model
from carn_mobile.train import build_config, list_checkpoints, resume_config, train
from carn_mobile.train.loop import make_loss, train_step
from carn_mobile.train.packed import storage_device
from carn_mobile.train.patches import PatchBatches
from carn_mobile.train.schedule import PLAN_AFTER_STEPS, make_scheduler, plan_steps, stretched_decay_steps
from carn_mobile.weights import read_state_dict


@pytest.fixture
def data(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    d = tmp_path / "train"
    d.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (48, 52, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return d


def _tiny(data: Path, **extra) -> dict:
    return {
        "data": [str(data)], "model": "carn-m", "scales": "multi", "steps": 100_000, "batch_size": 4,
        "patch_size": 8, "model_args": {"channels": 8, "num_blocks": 1, "units_per_block": 1}, "lr": 1e-3,
        "log_every": 5, "val_every": 0, "checkpoint_every": 0, "threads": 1, **extra,
    }


# --- the plan, as arithmetic ------------------------------------------------------------------


def test_plan_counts_the_steps_and_the_work_they_bring() -> None:
    # 10 steps/s, 100 s: 950 steps fit once 5% is kept for noise.
    assert plan_steps(100, 10, val_every=0, val_s=0, checkpoint_every=0, checkpoint_s=0, final_s=0) == 950
    # A 2 s validation every 100 steps costs 0.02 s per step on top of 0.1 s; the end needs 2.5 s.
    n = plan_steps(100, 10, val_every=100, val_s=2.0, checkpoint_every=50, checkpoint_s=0.5, final_s=2.5)
    assert n == math.floor((95 - 2.5) / (0.1 + 0.02 + 0.01))
    assert plan_steps(1, 10, val_every=0, val_s=0, checkpoint_every=0, checkpoint_s=0, final_s=5) == 0
    assert plan_steps(100, float("nan"), val_every=0, val_s=0, checkpoint_every=0, checkpoint_s=0, final_s=0) == 0
    assert stretched_decay_steps(400_000, 600_000, 3000) == 2000  # the paper's decay keeps its 2/3 share


def test_cosine_ends_at_the_final_value_and_follows_the_planned_length() -> None:
    total = {"steps": 10}
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_scheduler(opt, "cosine", 4, 0.5, total=lambda: total["steps"])
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 1.0 and all(a > b for a, b in zip(lrs, lrs[1:], strict=False))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)  # lr * lr_decay_factor at the last step
    total["steps"] = 20  # a plan made later: the curve is read at the new length from then on
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5 + 0.25 * (1 + math.cos(math.pi * 11 / 20)))
    with pytest.raises(ValueError, match="unknown learning-rate schedule"):
        make_scheduler(opt, "linear", 4, 0.5, total=lambda: 10)


def test_bad_budget_and_schedule_values_fail_with_one_line(tmp_path, data, capsys) -> None:
    from carn_mobile.cli.train import main

    for flags, message in ((["--time-budget", "-5"], "time_budget must be >= 0 seconds"),
                           (["--time-budget", "nan"], "time_budget must be >= 0 seconds")):  # fmt: skip
        with pytest.raises(SystemExit) as exc:
            main(["--data", str(data), "--out", str(tmp_path / "run"), *flags])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # checked before anything is written
    from carn_mobile.train import ConfigError

    with pytest.raises(ConfigError, match="lr_schedule must be 'step' or 'cosine'"):
        build_config(overrides=_tiny(data, lr_schedule="linear"))


# --- a budgeted run ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_budgeted_run_plans_its_length_ends_in_time_and_saves_the_plan(tmp_path, data) -> None:
    budget = 12.0
    start = time.perf_counter()
    result = train(build_config(overrides=_tiny(data, time_budget=budget, lr_schedule="cosine")), tmp_path / "run",
                   progress=False)  # fmt: skip
    took = time.perf_counter() - start
    # The whole run, data preparation and the end included. The bound is loose on purpose: a shared
    # CI machine's speed drifts after the plan is made; what this catches is a run that ignores the
    # budget (100,000 steps) or one whose end was not planned for.
    assert took <= budget * 1.25, took
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert PLAN_AFTER_STEPS < saved["steps"] < 100_000
    # The plan is realistic: the run reaches it, or the guard stops it just short, within the budget.
    assert 0.5 * saved["steps"] <= result.steps <= saved["steps"]
    rows = result.history.rows
    assert rows[-1]["step"] == result.steps
    # The cosine was followed along the planned length: the row of step n logs the rate that step used,
    # the curve's value after n - 1 steps of the plan (a guard stop ends early, not off the curve).
    planned = saved["steps"]
    on_curve = 1e-3 * (0.5 + 0.25 * (1 + math.cos(math.pi * (result.steps - 1) / planned)))
    assert rows[0]["lr"] == pytest.approx(1e-3, rel=1e-3)
    assert rows[-1]["lr"] == pytest.approx(on_curve, rel=1e-6) and rows[-1]["lr"] < 0.76e-3
    (_, ckpt), = list_checkpoints(tmp_path / "run" / "checkpoints")
    state = torch.load(ckpt / "state.pt", weights_only=True)
    assert state["plan"]["steps"] == saved["steps"] and state["plan"]["at_step"] == PLAN_AFTER_STEPS
    assert 0 < state["plan"]["end_s"] < budget  # the measured cost of the end, which the guard keeps room for


def test_a_budgeted_run_resumes_on_its_plan_exactly(tmp_path, data, monkeypatch) -> None:
    overrides = _tiny(data, time_budget=3600.0, steps=40, checkpoint_every=25)  # the plan: all 40 steps fit
    straight = train(build_config(overrides=overrides), tmp_path / "straight", progress=False)
    assert json.loads((tmp_path / "straight" / "config.json").read_text())["steps"] == 40

    original = PatchBatches.__getitem__

    def crash(self, step):
        if step == 30:
            raise KeyboardInterrupt
        return original(self, step)

    monkeypatch.setattr(PatchBatches, "__getitem__", crash)
    with pytest.raises(KeyboardInterrupt):
        train(build_config(overrides=overrides), tmp_path / "split", progress=False)
    monkeypatch.setattr(PatchBatches, "__getitem__", original)
    resumed = train(resume_config(tmp_path / "split"), tmp_path / "split", resume=True, progress=False)
    assert resumed.steps == straight.steps == 40
    a = read_state_dict(tmp_path / "straight" / "model.safetensors")
    b = read_state_dict(tmp_path / "split" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_budget_too_short_to_plan_still_stops_cleanly(tmp_path, data, monkeypatch) -> None:
    # Planning happens after 20 steps; make each step slow so that the budget runs out first.
    import carn_mobile.train.loop as loop

    real_step = loop.train_step

    def slow_step(*args, **kwargs):
        time.sleep(0.25)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", slow_step)
    result = train(build_config(overrides=_tiny(data, time_budget=2.0, log_every=2)), tmp_path / "run", progress=False)
    assert 0 < result.steps < PLAN_AFTER_STEPS
    assert (tmp_path / "run" / "model.safetensors").is_file() and list_checkpoints(tmp_path / "run" / "checkpoints")


# --- GPU-ready paths, exercised on CPU --------------------------------------------------------


def test_channels_last_and_bf16_steps_run_and_learn_on_cpu() -> None:
    torch.manual_seed(0)
    net = build_model("carn-m", channels=8, num_blocks=1, units_per_block=1, scales=(2,))
    net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, 100)
    lr = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    hr = torch.nn.functional.interpolate(lr.float(), scale_factor=2).round().clamp(0, 255).to(torch.uint8)
    losses = [float(train_step(net, opt, sched, lr, hr, 2, make_loss("l1"), torch.device("cpu"), bf16=True,
                               channels_last=True)) for _ in range(5)]  # fmt: skip
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]


@pytest.mark.slow
def test_compiled_training_runs_on_cpu(tmp_path, data) -> None:
    result = train(build_config(overrides=_tiny(data, steps=4, compile=True, channels_last=True, scales="2")),
                   tmp_path / "run", progress=False)  # fmt: skip
    assert result.steps == 4 and (tmp_path / "run" / "model.safetensors").is_file()


def test_packed_images_stay_on_the_cpu_for_cpu_training() -> None:
    assert storage_device(1 << 30, torch.device("cpu")) == torch.device("cpu")

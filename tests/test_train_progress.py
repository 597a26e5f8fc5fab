"""Progress display, ETA formatting and the throughput benchmark."""

from __future__ import annotations

import io

from rich.console import Console

from carn_mobile.train.benchmark import benchmark
from carn_mobile.train.progress import StepTimer, TrainProgress, format_eta


def test_format_eta() -> None:
    assert format_eta(59.6) == "00:01:00"
    assert format_eta(3 * 86400 + 4 * 3600 + 5 * 60 + 6) == "3d 04:05:06"
    assert format_eta(float("nan")) == format_eta(float("inf")) == "--:--:--"


def test_bar_shows_loss_psnr_speed_and_eta_on_a_terminal() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=160)
    with TrainProgress(total=100, start=0, enabled=True, console=console) as bar:
        assert bar.bar_on
        bar.update(50, 0.0312, 31.25, 2.0)
    text = buf.getvalue()
    for part in ("50/100", "loss 0.0312", "PSNR 31.25", "2.00 steps/s", "ETA 00:00:25"):
        assert part in text


def test_no_bar_without_a_terminal_or_when_disabled() -> None:
    buf = io.StringIO()
    quiet = TrainProgress(total=10, start=0, enabled=True, console=Console(file=buf))
    with quiet:
        quiet.update(5, 0.1, None, 1.0)
        quiet.print("step 5/10")
    assert not quiet.bar_on and buf.getvalue() == "step 5/10\n"
    other_rank = TrainProgress(total=10, start=0, enabled=True, active=False, console=Console(file=buf))
    other_rank.print("never shown")
    assert "never shown" not in buf.getvalue()


def test_step_timer_measures_recent_steps() -> None:
    timer = StepTimer(window=3)
    timer.reset()
    for _ in range(5):
        assert timer.lap() >= 0
    assert timer.steps_per_s > 0


def test_benchmark_reports_every_scale_and_the_recipe_time() -> None:
    r = benchmark("carn-m", (2, 4), batch_size=2, patch_size=8, steps=1, warmup=1, device="cpu", threads=1,
                  model_args={"channels": 8, "num_blocks": 1}, recipe_steps=1000)
    assert set(r["per_scale"]) == {2, 4}
    assert abs(r["recipe_s"] - 1000 * r["s_per_step"]) < 1e-9 and r["steps_per_s"] > 0

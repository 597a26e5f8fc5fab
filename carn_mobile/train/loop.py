"""The training loop: setup, steps, validation, logging, checkpoints and the final weights.

Every rank runs :func:`train`; under torchrun the model is wrapped in
``DistributedDataParallel`` and each rank draws its part of the global batch from its
own shard of the images. Only rank 0 reads or writes the run folder: it loads the
checkpoint or initial weights and the others receive them (DDP broadcasts the model,
the optimizer state is broadcast explicitly), so machines need no shared file system
for the run folder, only the training data.
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ..fileio import atomic_output, sha256_file
from ..models import CARN, build_model, config_dict, count_params
from ..weights import save_weights
from .config import RESUMABLE_FIELDS, ConfigError, TrainConfig, config_from_dict, merge_for_resume, resolve_paths
from .distributed import DeviceError, DistContext, setup, teardown
from .finetune import load_init_weights
from .history import History
from .patches import PatchBatches, TrainImages
from .progress import StepTimer, TrainProgress
from .rundir import RunDir
from .schedule import PLAN_AFTER_STEPS, WARMUP_STEPS, make_scheduler, plan_steps, stretched_decay_steps
from .state import list_checkpoints, load_checkpoint, restore_rng, rng_state, save_checkpoint
from .validate import Validator


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became NaN)."""


@dataclass
class TrainResult:
    """What a finished run produced (``model_path`` and ``history`` are set on rank 0 only)."""

    run_dir: Path
    steps: int
    model: nn.Module  # the trained network (unwrapped from DDP), on the training device
    model_path: Path | None
    history: History | None
    final_val: dict[str, float] | None
    bicubic: dict[str, float]


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The effective config saved in ``RUN_DIR/config.json``."""
    path = RunDir(Path(run_dir)).config
    try:
        values = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the run's config {path}: {exc}") from None
    return config_from_dict(values, str(path))


def resume_config(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The saved config of ``run_dir`` with run-control overrides (e.g. a larger ``steps``)."""
    RunDir(Path(run_dir)).check_resumable()
    return merge_for_resume(load_run_config(run_dir), overrides or {})


def build_train_model(cfg: TrainConfig) -> CARN:
    """The model the config describes, freshly initialised (Sec. 4.2 uniform init)."""
    return build_model(cfg.model, scales=cfg.scales, **dict(cfg.model_args))


def train(
    cfg: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train as ``cfg`` says, writing the run into ``out`` (see :mod:`carn_mobile.train.rundir`).

    ``resume=True`` continues the latest checkpoint in ``out`` (``cfg`` may differ from
    the saved config only in run-control fields such as ``steps``); ``force=True``
    starts over in a non-empty ``out``. Works the same in one process and under torchrun.
    """
    if resume and force:
        raise ConfigError("--resume and --force exclude each other: continue the run, or start it over")
    cfg = resolve_paths(cfg)
    ctx = setup(cfg.device)
    try:
        return _Trainer(cfg, RunDir(Path(out)), ctx, resume, force, progress).run()
    finally:
        teardown(ctx)


def make_loss(name: str) -> nn.Module:
    """``l1`` (the paper's loss) or ``l2``."""
    return nn.L1Loss() if name == "l1" else nn.MSELoss()


def train_step(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    lr_u8: torch.Tensor,
    hr_u8: torch.Tensor,
    scale: int,
    loss_fn: nn.Module,
    device: torch.device,
    bf16: bool = False,
    grad_clip: float = 0.0,
    channels_last: bool = False,
) -> torch.Tensor:
    """One optimisation step on a uint8 NCHW batch; returns the (detached, on-device) loss.

    The loss is taken in float32 even under bf16 autocast. Gradients are cleared to None,
    so the upsampling branches of the scales not used in this step are left untouched
    by Adam instead of being decayed with zero gradients.
    """
    lr = lr_u8.to(device, non_blocking=True).float().div_(255.0)
    hr = hr_u8.to(device, non_blocking=True).float().div_(255.0)
    if channels_last:
        lr = lr.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with autocast:
        sr = net(lr, scale)
    loss = loss_fn(sr.float(), hr)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_([p for p in net.parameters() if p.requires_grad], grad_clip)
    optimizer.step()
    scheduler.step()
    return loss.detach()


class _Trainer:
    def __init__(
        self, cfg: TrainConfig, run: RunDir, ctx: DistContext, resume: bool, force: bool, progress: bool
    ) -> None:
        self.t0 = time.perf_counter()  # the budget counts from here: data preparation is part of the run
        self.cfg, self.run_dir, self.ctx = cfg, run, ctx
        self.resume, self.force = resume, force
        self.out = TrainProgress(cfg.steps, 0, enabled=progress, active=ctx.is_main)

    # --- setup: everything that can fail happens before anything is written ----------------

    def _check_run_dir(self) -> None:
        if not self.ctx.is_main:
            return
        if self.resume:
            self.run_dir.check_resumable()
            saved = load_run_config(self.run_dir.root)
            changed = sorted(
                k for k in saved.to_json()
                if k not in RESUMABLE_FIELDS and getattr(saved, k) != getattr(self.cfg, k)
            )
            if changed:
                raise ConfigError(f"cannot change {', '.join(changed)} when resuming {self.run_dir.root}")
        else:
            self.run_dir.check_new(self.force)

    def _setup(self) -> None:
        cfg, ctx = self.cfg, self.ctx
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if cfg.bf16 and ctx.device.type != "cuda":
            raise DeviceError(f"--bf16 needs a CUDA device; this run is on {ctx.device.type}")
        if cfg.batch_size % ctx.world_size:
            raise ConfigError(
                f"batch size {cfg.batch_size} (global) cannot be split evenly over {ctx.world_size} processes"
            )
        ctx.all_ok(self._check_run_dir)

        torch.manual_seed(cfg.seed)  # the same initial weights on every rank and in every rerun
        self.model = build_train_model(cfg)
        self.init_source = ctx.all_ok(self._load_init) if (cfg.init and not self.resume) else None

        def load_images() -> TrainImages:
            return TrainImages(
                cfg.data,
                cfg.scales,
                cfg.patch_size,
                rank=ctx.rank,
                world_size=ctx.world_size,
                cache_dir=cfg.lr_cache,
            )

        # The validation sets first: they are quick to check, the training images may take minutes.
        self.validator = ctx.all_ok(lambda: Validator(cfg.val, cfg.scales) if ctx.is_main else None)
        self.out.print(f"preparing training images and their bicubic LR (x{', x'.join(map(str, cfg.scales))}) ...")
        self.images = ctx.all_ok(load_images)
        self.bicubic = self.validator.bicubic() if self.validator else {}

    def _load_init(self) -> str | None:
        return load_init_weights(self.model, self.cfg.init) if self.ctx.is_main else None

    def _prepare_outputs(self) -> int:
        """Create the run folder (rank 0) and restore the checkpoint; returns the first step."""
        cfg, ctx = self.cfg, self.ctx
        self.history = History(self.validator.keys if self.validator else [], self.bicubic)
        payload: list[Any] = [None]
        if ctx.is_main:
            root = self.run_dir.root
            if self.resume:
                step, path = list_checkpoints(self.run_dir.checkpoints)[-1]
                state = load_checkpoint(path, self.model)
                self.history.load_state_dict(state["history"])
                self.history.rows = [r for r in self.history.rows if r["step"] <= step]
                keys = ("step", "optimizer", "scheduler", "rng", "elapsed_s", "wall_s", "plan")
                payload = [{k: state[k] for k in keys if k in state}]
                if state.get("world_size") != ctx.world_size:
                    self.out.print(
                        f"note: resuming with {ctx.world_size} process(es), the checkpoint was made with "
                        f"{state.get('world_size')}: training continues but not bit for bit as it would have"
                    )
                self.out.print(f"resuming {root} from step {step} ({path.name})")
            else:
                if self.force:
                    self.run_dir.clear()
                root.mkdir(parents=True, exist_ok=True)
            # On resume too: run-control values such as steps may have changed.
            with atomic_output(self.run_dir.config, force=True) as tmp:
                cfg.save(tmp)
        if ctx.distributed:
            dist.broadcast_object_list(payload, src=0)
        self.resume_state = payload[0]
        return int(self.resume_state["step"]) if self.resume_state else 0

    def _build_optimizer(self) -> None:
        cfg, ctx = self.cfg, self.ctx
        self.model.to(ctx.device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
        # total() is read at every step: a time-budgeted run learns its length only after a warm-up.
        self.scheduler = make_scheduler(self.optimizer, cfg.lr_schedule, cfg.lr_decay_steps, cfg.lr_decay_factor,
                                        total=lambda: self.cfg.steps)  # fmt: skip
        self.elapsed = 0.0
        self.wall_before = 0.0  # wall time of earlier sessions of this run (for --time-budget)
        self.plan: dict[str, float] | None = None
        if self.resume_state:
            self.optimizer.load_state_dict(self.resume_state["optimizer"])
            self.scheduler.load_state_dict(self.resume_state["scheduler"])
            restore_rng(self.resume_state["rng"], ctx.device)
            self.elapsed = float(self.resume_state["elapsed_s"])
            self.wall_before = float(self.resume_state.get("wall_s", self.elapsed))
            self.plan = self.resume_state.get("plan")
        if ctx.distributed:
            # Multi-scale steps leave the other scales' branches unused; every rank uses the
            # same scale in a step, so those parameters are unused on all ranks alike.
            self.net: nn.Module = DistributedDataParallel(
                self.model,
                device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                find_unused_parameters=cfg.multi_scale,
            )
        else:
            self.net = self.model
        if cfg.compile:
            self.net = torch.compile(self.net)  # validation and saving use the plain module

    # --- the loop ------------------------------------------------------------------------

    def run(self) -> TrainResult:
        cfg, ctx = self.cfg, self.ctx
        self._setup()
        start = self._prepare_outputs()
        self._build_optimizer()
        self._announce(start)
        if start >= cfg.steps:
            self.out.print(f"nothing to do: the checkpoint is at step {start} and --steps is {cfg.steps}")
            return self._finish(cfg.steps, last_val=None)

        batches = self._batches(start)
        loss_fn = make_loss(cfg.loss)
        timer = StepTimer()
        # float64 keeps long averages exact enough; MPS has no float64.
        acc_dtype = torch.float32 if ctx.device.type == "mps" else torch.float64
        loss_sum = torch.zeros((), device=ctx.device, dtype=acc_dtype)
        loss_count = 0
        interval_time = 0.0
        last_val: dict[str, float] | None = None
        plan_at = start + PLAN_AFTER_STEPS if cfg.time_budget and self.plan is None else None
        warm_mark = 0.0  # wall clock when the warm-up ended: the plan's speed includes log rows
        done = start
        self.net.train()
        with self.out:
            self.out.update(start, None, None, float("nan"))
            timer.reset()
            for done, (scale, lr_u8, hr_u8) in enumerate(batches, start=start + 1):
                step_lr = self.optimizer.param_groups[0]["lr"]
                loss = train_step(
                    self.net, self.optimizer, self.scheduler, lr_u8, hr_u8, int(scale), loss_fn,
                    ctx.device, cfg.bf16, cfg.grad_clip, cfg.channels_last,
                )
                loss_sum += loss
                loss_count += 1
                interval_time += timer.lap()  # includes waiting for the batch
                if plan_at is not None and done == start + WARMUP_STEPS:
                    warm_mark = self._synced_clock()
                planning = done == plan_at
                if planning:
                    speed_for_plan = (done - start - WARMUP_STEPS) / (self._synced_clock() - warm_mark)
                stop = self._over_budget() if cfg.time_budget and done % cfg.log_every == 0 else False
                final = done == self.cfg.steps or stop
                # Decided from the config alone: every rank must agree, as a log row is a collective.
                validate = bool(cfg.val) and (final or planning or (cfg.val_every > 0 and done % cfg.val_every == 0))
                checkpoint = final or planning or (cfg.checkpoint_every > 0 and done % cfg.checkpoint_every == 0)
                if not (validate or checkpoint or done % cfg.log_every == 0):
                    self.out.update(done, None, None, timer.steps_per_s)
                    continue
                # A row at every checkpoint means no partial loss average is ever left to save.
                mean_loss = self._mean_loss(loss_sum, loss_count)
                if not math.isfinite(mean_loss):
                    raise TrainingError(
                        f"the training loss became {mean_loss} by step {done}; lower --lr or resume from an earlier "
                        "checkpoint"
                    )
                self.elapsed += interval_time
                speed = loss_count / interval_time if interval_time > 0 else float("nan")
                t_val = time.perf_counter()
                val = self._validate() if validate and ctx.is_main and self.validator else None
                t_val = time.perf_counter() - t_val
                if val:
                    last_val = val
                if ctx.is_main:
                    row = self.history.add(done, mean_loss, step_lr, speed, self.elapsed, val)
                    self.history.write_csv(self.run_dir.log_csv)
                    if val:
                        self._write_logs()
                    # Without a bar, checkpoints also print a line: batch logs show the run is alive.
                    if val or (checkpoint and not self.out.bar_on):
                        self.out.print(self._status(done, mean_loss, row["val_psnr"], speed))
                    if planning:
                        self._plan(done, speed_for_plan, t_val)
                if planning:
                    self._share_plan()  # before the checkpoint: a resume from it follows the plan
                if ctx.is_main and checkpoint:
                    self._save_checkpoint(done)
                if stop:
                    self.out.print(f"time budget of {cfg.time_budget:.0f} s reached at step {done} "
                                   f"(planned {self.cfg.steps}): stopping cleanly")
                    break
                loss_sum.zero_()
                loss_count = 0
                interval_time = 0.0
                last = self.history.last_val() if ctx.is_main else None
                self.out.update(done, mean_loss, last["val_psnr"] if last else None, timer.steps_per_s)
                timer.reset()  # validation and checkpoint time is not step time
                if done >= self.cfg.steps:
                    break
        return self._finish(done, last_val)

    def _batches(self, start: int):
        """(scale, lr, hr) per step from ``start`` to ``cfg.steps`` (a planned run may stop earlier).

        Without worker processes the images are packed on the training device (when it has room)
        and each batch is cut there; with workers they stay in host memory and the workers cut.
        """
        cfg, ctx = self.cfg, self.ctx
        device = ctx.device if cfg.workers == 0 else torch.device("cpu")
        source = PatchBatches(self.images, cfg.batch_size // ctx.world_size, cfg.seed, rank=ctx.rank,
                              augment=cfg.augment, device=device)  # fmt: skip
        if cfg.workers == 0:
            return (source[t] for t in range(start, cfg.steps))
        return DataLoader(source, batch_size=None, sampler=range(start, cfg.steps), num_workers=cfg.workers,
                          pin_memory=ctx.device.type == "cuda")  # fmt: skip

    # --- the time budget ---------------------------------------------------------------------

    def wall_s(self) -> float:
        """Wall time this run has used so far, earlier sessions included."""
        return self.wall_before + (time.perf_counter() - self.t0)

    def _over_budget(self) -> bool:
        """Whether the budget is spent (decided on rank 0, shared: every rank stops at the same step)."""
        # The end of the run (last validation, checkpoint, logs) must fit too: stop while it still does.
        end_s = float(self.plan.get("end_s", 0.0)) if self.plan else 0.0
        flag = [self.wall_s() + end_s >= self.cfg.time_budget] if self.ctx.is_main else [False]
        if self.ctx.distributed:
            dist.broadcast_object_list(flag, src=0)
        return bool(flag[0])

    def _synced_clock(self) -> float:
        """Wall clock after the device finished its queued work (GPU steps run ahead of Python)."""
        if self.ctx.device.type == "cuda":
            torch.cuda.synchronize(self.ctx.device)
        return time.perf_counter()

    def _plan(self, done: int, steps_per_s: float, val_s: float) -> None:
        """Fix the run's length from the measured speed so that it ends within the budget (rank 0)."""
        cfg = self.cfg
        with tempfile.TemporaryDirectory(prefix="carn-ckpt-timing-") as tmp:  # what one checkpoint costs here
            checkpoint_s = time.perf_counter()
            save_checkpoint(Path(tmp), self.model, cfg.model, {"step": done, "optimizer": self.optimizer.state_dict()})
            checkpoint_s = time.perf_counter() - checkpoint_s
        logs_s = time.perf_counter()  # the end writes the logs and the curves too (matplotlib is slow to start)
        self._write_logs()
        logs_s = time.perf_counter() - logs_s
        end_s = val_s + checkpoint_s + logs_s
        more = plan_steps(
            cfg.time_budget - self.wall_s(), steps_per_s, val_every=cfg.val_every if cfg.val else 0, val_s=val_s,
            checkpoint_every=cfg.checkpoint_every, checkpoint_s=checkpoint_s, final_s=end_s,
        )  # fmt: skip
        planned = max(done, min(cfg.steps, done + more))
        decay = stretched_decay_steps(cfg.lr_decay_steps, cfg.steps, planned)
        self.plan = {"at_step": done, "steps": planned, "lr_decay_steps": decay, "upper_bound": cfg.steps,
                     "end_s": round(end_s, 3)}  # fmt: skip
        self.out.print(
            f"time budget {cfg.time_budget:.0f} s: {steps_per_s:.2f} steps/s measured, validation {val_s:.1f} s; "
            f"planned {planned} steps ({cfg.lr_schedule} schedule ends there"
            + (f", decay every {decay} steps)" if cfg.lr_schedule == "step" else ")")
        )

    def _share_plan(self) -> None:
        """Apply the plan on every rank and keep it in config.json, so that --resume follows it."""
        payload = [self.plan]
        if self.ctx.distributed:
            dist.broadcast_object_list(payload, src=0)
        self.plan = payload[0]
        assert self.plan is not None
        self.cfg = replace(self.cfg, steps=int(self.plan["steps"]), lr_decay_steps=int(self.plan["lr_decay_steps"]))
        if isinstance(self.scheduler, torch.optim.lr_scheduler.StepLR):
            self.scheduler.step_size = self.cfg.lr_decay_steps
        self.out.total = self.cfg.steps
        if self.ctx.is_main:
            with atomic_output(self.run_dir.config, force=True) as tmp:
                self.cfg.save(tmp)

    def _mean_loss(self, loss_sum: torch.Tensor, count: int) -> float:
        """Mean loss of the interval over every rank (the loss of the global batch)."""
        total = loss_sum.clone()
        if self.ctx.distributed:
            dist.all_reduce(total)
            count *= self.ctx.world_size
        return float(total.item()) / max(count, 1)

    def _validate(self) -> dict[str, float]:
        assert self.validator is not None
        return self.validator.run(self.model)

    def _save_checkpoint(self, done: int) -> None:
        state = {
            "step": done,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(self.ctx.device),
            "elapsed_s": self.elapsed,
            "wall_s": self.wall_s(),
            **({"plan": self.plan} if self.plan else {}),
            "world_size": self.ctx.world_size,
            "history": self.history.state_dict(),
        }
        save_checkpoint(self.run_dir.checkpoints, self.model, self.cfg.model, state)

    def _write_logs(self) -> None:
        title = f"{self.cfg.model} x{'/x'.join(map(str, self.cfg.scales))}"
        self.history.write_csv(self.run_dir.log_csv)
        self.history.write_json(self.run_dir.log_json, {"model": self.cfg.model, "scales": list(self.cfg.scales)})
        self.history.plot(self.run_dir.curves, title)

    def _status(self, done: int, loss: float, psnr: float | None, speed: float) -> str:
        text = f"step {done}/{self.cfg.steps}  loss {loss:.5f}  {speed:.2f} steps/s"
        last = self.history.last_val()
        if psnr is not None and last is not None:
            parts = [f"{k} {last[k]:.2f} (bicubic {self.bicubic[k]:.2f})" for k in self.history.val_keys]
            text += "  val PSNR " + ", ".join(parts)
        return text

    def _announce(self, start: int) -> None:
        cfg, ctx = self.cfg, self.ctx
        shard = f", {len(self.images)} on this rank" if ctx.distributed else ""
        skipped = {s: n for s, n in self.images.skipped.items() if n}
        lines = [
            f"{cfg.model}: {count_params(self.model):,} params, scales x{'/x'.join(map(str, cfg.scales))}"
            + (f", initialised from {self.init_source}" if self.init_source else ""),
            f"data: {self.images.total_images} images{shard}; batch {cfg.batch_size}, LR patch {cfg.patch_size}",
            f"device: {ctx.device}, {ctx.world_size} process(es); steps {start} -> {cfg.steps}",
        ]
        if skipped:
            lines.append(
                "note: images too small for a patch are not sampled at "
                + ", ".join(f"x{s} ({n} of {len(self.images)})" for s, n in skipped.items())
            )
        if self.bicubic:
            lines.append("bicubic val PSNR: " + ", ".join(f"{k} {v:.2f}" for k, v in self.bicubic.items()))
        for line in lines:
            self.out.print(line)

    def _finish(self, steps: int, last_val: dict[str, float] | None) -> TrainResult:
        """Final weights, logs and summary (rank 0); every rank returns a result."""
        model_path = None
        if self.ctx.is_main:
            if last_val is None and (row := self.history.last_val()) is not None:
                last_val = {k: row[k] for k in self.history.val_keys}
            self._write_logs()
            model_path = self._save_final(steps, last_val)
            self.out.print(f"weights: {model_path}")
        self.ctx.barrier()
        return TrainResult(
            run_dir=self.run_dir.root,
            steps=steps,
            model=self.model,
            model_path=model_path,
            history=self.history if self.ctx.is_main else None,
            final_val=last_val,
            bicubic=self.bicubic,
        )

    def _save_final(self, steps: int, last_val: dict[str, float] | None) -> Path:
        cfg = self.cfg
        path = save_weights(
            self.model,
            self.run_dir.model,
            arch=cfg.model,
            force=True,
            steps=str(steps),
            data=", ".join(Path(d).name for d in cfg.data),
            val_psnr=json.dumps(last_val or {}),
        )
        summary = {
            "arch": cfg.model,
            "model_config": config_dict(self.model),
            "params": count_params(self.model),
            "scales": list(cfg.scales),
            "steps": steps,
            "train_time_s": round(self.elapsed, 1),
            "data": list(cfg.data),
            "init": cfg.init,
            "val_psnr": last_val,
            "bicubic_psnr": self.bicubic,
            "weights": path.name,
            "sha256": sha256_file(path),
            "eval_command": (
                f"carn-eval --model {cfg.model} --weights {path} --scale {','.join(map(str, cfg.scales))} --data DIR"
            ),
        }
        with atomic_output(self.run_dir.summary, force=True) as tmp:
            tmp.write_text(json.dumps(summary, indent=2) + "\n")
        return path


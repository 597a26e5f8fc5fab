"""Training throughput: seconds per step of the real training step, per scale, and what the recipe would take.

::

    python -m carn_mobile.train.benchmark --model carn --batch-size 64 --patch-size 64 --threads 2

Random patches are used (pixel values do not change the cost of a convolution). Each
scale gets ``warmup`` untimed steps first (oneDNN/cuDNN pick their kernels per shape),
then ``steps`` timed ones. A multi-scale run draws scales uniformly, so its mean step
time is the mean over the scales.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from typing import Any

import torch

from ..models import build_model, count_params, list_models
from .config import parse_scale_spec
from .distributed import resolve_device
from .loop import make_loss, train_step
from .progress import format_eta


def benchmark(
    model: str = "carn",
    scales: Sequence[int] = (2, 3, 4),
    batch_size: int = 64,
    patch_size: int = 64,
    steps: int = 3,
    warmup: int = 1,
    device: str = "auto",
    threads: int = 0,
    model_args: dict[str, Any] | None = None,
    recipe_steps: int = 600_000,
) -> dict[str, Any]:
    """Time training steps; returns seconds per step per scale, the mean, and the projected recipe time."""
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    torch.manual_seed(0)
    net = build_model(model, scales=tuple(scales), **(model_args or {})).to(dev).train()
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=400_000, gamma=0.5)
    loss_fn = make_loss("l1")
    gen = torch.Generator().manual_seed(0)
    load_before = os.getloadavg()
    per_scale: dict[int, dict[str, float]] = {}
    for s in scales:
        lr = torch.randint(0, 256, (batch_size, 3, patch_size, patch_size), dtype=torch.uint8, generator=gen)
        hr = torch.randint(0, 256, (batch_size, 3, patch_size * s, patch_size * s), dtype=torch.uint8, generator=gen)
        for _ in range(warmup):
            train_step(net, optimizer, scheduler, lr, hr, s, loss_fn, dev)
        _sync(dev)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            train_step(net, optimizer, scheduler, lr, hr, s, loss_fn, dev)
        _sync(dev)
        per_scale[s] = {
            "s_per_step": (time.perf_counter() - wall) / steps,
            "cpu_s_per_step": (time.process_time() - cpu) / steps,
        }
    mean = sum(v["s_per_step"] for v in per_scale.values()) / len(per_scale)
    return {
        "model": model,
        "params": count_params(net),
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "patch_size": patch_size,
        "timed_steps_per_scale": steps,
        "per_scale": per_scale,
        "s_per_step": mean,
        "steps_per_s": 1.0 / mean,
        "recipe_steps": recipe_steps,
        "recipe_s": mean * recipe_steps,
        "load_average_before_after": [load_before[0], os.getloadavg()[0]],
    }


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m carn_mobile.train.benchmark", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="carn", choices=list_models())
    p.add_argument("--scale", default="multi", help="'multi' (default), 4, or a list such as 2,4")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--patch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=3, help="timed steps per scale (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per scale first (default 1)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--recipe-steps", type=int, default=600_000)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    r = benchmark(
        args.model, parse_scale_spec(args.scale), args.batch_size, args.patch_size, args.steps, args.warmup,
        args.device, args.threads, recipe_steps=args.recipe_steps,
    )
    if args.json:
        print(json.dumps(r, indent=2))
        return
    print(f"{r['model']} ({r['params']:,} params) on {r['device']}, {r['threads']} threads, "
          f"batch {r['batch_size']}, LR patch {r['patch_size']}")
    for s, v in r["per_scale"].items():
        print(f"  x{s}: {v['s_per_step']:.2f} s/step ({v['cpu_s_per_step']:.2f} CPU s)")
    print(f"  mean {r['s_per_step']:.2f} s/step = {r['steps_per_s']:.4f} steps/s; "
          f"{r['recipe_steps']:,} steps would take {format_eta(r['recipe_s'])} ({r['recipe_s'] / 86400:.1f} days)")
    before, after = r["load_average_before_after"]
    print(f"  load average before/after: {before:.2f} / {after:.2f}")


if __name__ == "__main__":
    main()

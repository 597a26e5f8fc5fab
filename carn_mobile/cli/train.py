"""``carn-train``: train or fine-tune CARN / CARN-M with the paper's recipe, resumable, on one or many processes.

Run it directly for one process, or under torchrun for several::

    carn-train --model carn --scale multi --data T91 BSD200 --val Set5 --out runs/carn
    torchrun --standalone --nproc_per_node=4 -m carn_mobile.cli.train --data ... --out runs/carn
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from ..models import list_models
from ..train import TrainingError, build_config, read_config_file, resume_config, train
from ..train.config import CLI_FLAGS
from ..train.distributed import env_world
from .common import CLIError, exit_with


def build_parser() -> argparse.ArgumentParser:
    # Flags default to "absent" so that only the ones given override the config file.
    s = argparse.SUPPRESS
    p = argparse.ArgumentParser(
        prog="carn-train",
        description=(
            "Train a CARN-family model with the paper's recipe (Adam 1e-4 halved every 4e5 steps, 6e5 steps, "
            "batch 64, 64x64 LR patches, L1). Flags override --config, which overrides the defaults."
        ),
        argument_default=s,
    )
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (config, checkpoints, logs, weights)")
    p.add_argument("--config", metavar="FILE", help="JSON or TOML config file (keys as in RUN_DIR/config.json)")
    p.add_argument("--model", choices=list_models(), help="architecture (default carn)")
    p.add_argument("--model-arg", action="append", metavar="KEY=VALUE", dest="model_arg",
                   help="model config override, e.g. channels=32 or groups=2 (repeatable)")
    p.add_argument("--scale", metavar="SPEC", help="'multi' (x2/x3/x4, one per batch; default), 4, or a list: 2,4")
    p.add_argument("--data", nargs="+", metavar="DIR", help="folders of HR training images")
    p.add_argument("--val", nargs="+", metavar="DIR", help="validation folders: DIR/HR (+ LR_bicubic) or images")
    p.add_argument("--init", metavar="WEIGHTS", help="fine-tune from shipped weights (e.g. carn-m) or a checkpoint")
    p.add_argument("--steps", type=int, metavar="N", help="total training steps (default 600000)")
    p.add_argument("--batch-size", type=int, metavar="N", help="global batch size (default 64)")
    p.add_argument("--patch-size", type=int, metavar="N", help="LR patch size (default 64)")
    p.add_argument("--lr", type=float, metavar="X", help="initial learning rate (default 1e-4)")
    p.add_argument("--lr-decay-steps", type=int, metavar="N", help="halve the learning rate every N steps (4e5)")
    p.add_argument("--grad-clip", type=float, metavar="X",
                   help="clip the gradient norm to X (default 0: off, as in the paper; the authors' code used 10)")
    p.add_argument("--seed", type=int, metavar="N", help="seed of initialisation and sampling (default 0)")
    p.add_argument("--val-every", type=int, metavar="N", help="validate every N steps (default 1000; 0: at the end)")
    p.add_argument("--checkpoint-every", type=int, metavar="N", help="checkpoint every N steps (default 1000)")
    p.add_argument("--log-every", type=int, metavar="N", help="one log row per N steps (default 100)")
    p.add_argument("--workers", type=int, metavar="N", help="DataLoader processes making batches (default 0)")
    p.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA only)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format (faster convolutions on GPUs)")
    p.add_argument("--compile", action="store_true", help="torch.compile the training step's forward pass")
    p.add_argument("--time-budget", type=float, metavar="SECONDS",
                   help="end the run within this wall time: after a warm-up the speed is measured and the "
                        "steps (at most --steps) and the learning-rate schedule are fitted to the budget")
    p.add_argument("--lr-schedule", choices=("step", "cosine"),
                   help="step: x lr_decay_factor every --lr-decay-steps (paper, default); cosine: down to "
                        "lr x lr_decay_factor at the last step")
    p.add_argument("--lr-cache", metavar="DIR", help="cache bicubic LR images in DIR across runs")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its latest checkpoint")
    p.add_argument("--force", action="store_true", help="start over in a non-empty RUN_DIR (deletes its outputs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (status lines only)")
    return p


def parse_model_args(items: Sequence[str]) -> dict[str, Any]:
    """``["channels=32", "recursive=true"]`` -> ``{"channels": 32, "recursive": True}`` (values read as JSON)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CLIError(f"--model-arg expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value  # a bare word such as residual_e
    return out


def _main(argv: Sequence[str] | None) -> int:
    args = vars(build_parser().parse_args(argv))
    # Only flags given appear in args (SUPPRESS defaults); each maps to the TrainConfig field of that name.
    overrides = {field: args[flag] for field, flag in CLI_FLAGS.items() if flag in args}
    if "model_arg" in args:
        overrides["model_args"] = parse_model_args(args["model_arg"])
    resume, force = bool(args.get("resume")), bool(args.get("force"))
    if resume and force:
        raise CLIError("--resume and --force exclude each other: continue the run, or start it over")
    if resume:
        if "config" in args:
            raise CLIError("--config cannot be used with --resume: the run's own config.json is used")
        cfg = resume_config(args["out"], overrides)
    else:
        file_values = read_config_file(args["config"]) if "config" in args else {}
        cfg = build_config(file_values, overrides)
    try:
        result = train(cfg, args["out"], resume=resume, force=force, progress=not args.get("no_progress"))
    except TrainingError as exc:
        raise CLIError(str(exc)) from exc
    if result.model_path is not None:
        line = f"{result.run_dir}: {result.steps} steps, weights {result.model_path}"
        if result.final_val:
            line += ", val PSNR " + ", ".join(f"{k} {v:.2f}" for k, v in result.final_val.items())
        print(line)
    return 0


def _rank_main(argv: Sequence[str] | None) -> int:
    # Under torchrun, setup errors are raised on every rank (mirrored to rank 0 by the
    # trainer); only rank 0 reports them so the message appears once.
    rank = env_world()[0]
    if rank == 0:
        return _main(argv)
    try:
        return _main(argv)
    except (ValueError, OSError):
        return 2


def main(argv: Sequence[str] | None = None) -> None:
    exit_with(_rank_main, argv)


if __name__ == "__main__":  # torchrun -m carn_mobile.cli.train ...
    main()

"""Multi-process training through torchrun: 2 CPU processes (gloo) on a tiny config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from carn_mobile.weights import read_state_dict

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available"),
]

# Runs under torchrun: one process group for three runs (straight, first half, resumed),
# then every rank saves the weights it ended with.
RANK_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch.distributed as dist
    from safetensors.torch import save_file
    from carn_mobile.train import build_config, resume_config, train

    overrides, root = json.loads(sys.argv[1]), sys.argv[2]
    rank = int(os.environ["RANK"])
    dist.init_process_group("gloo")
    straight = train(build_config(overrides=overrides), root + "/straight", progress=False)
    train(build_config(overrides={**overrides, "steps": 4}), root + "/split", progress=False)
    resumed = train(resume_config(root + "/split", {"steps": 8}), root + "/split", resume=True, progress=False)
    for name, result in (("straight", straight), ("split", resumed)):
        state = {k: v.contiguous() for k, v in result.model.state_dict().items()}
        save_file(state, f"{root}/{name}-rank{rank}.safetensors")
    dist.destroy_process_group()
    """
)


def _images(folder: Path, sizes: list[int]) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, side in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (side, side + 4, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def test_two_processes_train_in_step_and_resume_exactly(tmp_path) -> None:
    data = _images(tmp_path / "train", [40, 44, 48, 52])
    val = _images(tmp_path / "val", [36])
    overrides = {
        "data": [str(data)], "val": [str(val)], "model": "carn-m", "scales": "multi", "steps": 8,
        "model_args": {"channels": 8, "num_blocks": 1, "units_per_block": 2}, "batch_size": 4, "patch_size": 8,
        "lr": 1e-3, "log_every": 2, "val_every": 4, "checkpoint_every": 4, "threads": 1, "device": "cpu",
    }
    script = tmp_path / "rank_script.py"
    script.write_text(RANK_SCRIPT)
    proc = _torchrun([str(script), json.dumps(overrides), str(tmp_path)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    ranks = [read_state_dict(tmp_path / f"straight-rank{r}.safetensors") for r in (0, 1)]
    saved = read_state_dict(tmp_path / "straight" / "model.safetensors")
    resumed = read_state_dict(tmp_path / "split-rank0.safetensors")
    for k in saved:
        assert torch.equal(ranks[0][k], ranks[1][k]), f"{k} differs between ranks"
        assert torch.equal(saved[k], ranks[0][k])
        assert torch.equal(resumed[k], saved[k]), f"{k}: resumed DDP run differs from the straight one"
    log = json.loads((tmp_path / "straight" / "log.json").read_text())
    assert [r["step"] for r in log["rows"]] == [2, 4, 6, 8]
    split_log = json.loads((tmp_path / "split" / "log.json").read_text())
    assert [r["loss"] for r in split_log["rows"]] == [r["loss"] for r in log["rows"]]
    assert log["rows"][-1]["val_psnr"] is not None
    # Only rank 0 writes: one run folder, one set of outputs.
    assert sorted(p.name for p in (tmp_path / "straight").iterdir()) == [
        "checkpoints", "config.json", "curves.png", "log.csv", "log.json", "model.safetensors", "summary.json"
    ]


def test_a_failure_on_one_rank_stops_all_ranks_with_its_message(tmp_path) -> None:
    # Rank 0 gets image 0 (64 px), rank 1 image 1 (20 px): too small for a 12 px LR patch at x2.
    data = _images(tmp_path / "train", [64, 20])
    out = tmp_path / "run"
    args = ["-m", "carn_mobile.cli.train", "--model", "carn-m", "--model-arg", "channels=8", "--scale", "2",
            "--patch-size", "12", "--batch-size", "2", "--steps", "2", "--threads", "1", "--device", "cpu",
            "--data", str(data), "--out", str(out), "--no-progress"]
    proc = _torchrun(args, cwd=tmp_path)
    assert proc.returncode != 0
    assert proc.stderr.count("error: another rank failed: patch size 12 at x2 needs HR images") == 1
    assert not out.exists()

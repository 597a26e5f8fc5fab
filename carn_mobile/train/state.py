"""Checkpoints: the model in safetensors and the training state in a weights-only ``torch.save`` file.

A checkpoint is a folder ``checkpoints/step-NNNNNNNNN/`` holding ``model.safetensors``
(the same format as the final weights) and ``state.pt``: optimizer, LR scheduler, step,
RNG states, the log so far and the partial loss average. ``state.pt`` holds only
tensors, numbers, strings, lists and dicts, so ``torch.load(weights_only=True)`` reads
it without unpickling arbitrary objects.

The folder appears atomically under a new name and older ones are removed only after
it is in place: an interrupted save never leaves the run without a complete checkpoint.
"""

from __future__ import annotations

import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..fileio import atomic_output
from ..weights import WeightsError, load_state_into, read_state_dict, save_weights

STATE_FORMAT = "carn-mobile-train-state"
STATE_VERSION = 1
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.pt"
_STEP_DIR = re.compile(r"^step-(\d+)$")


class CheckpointError(ValueError):
    """A missing, unreadable or inconsistent checkpoint."""


def rng_state(device: torch.device) -> dict[str, Any]:
    """torch's global RNG states as tensors (the sampler needs none: its draws derive from the step)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def step_dir(folder: Path, step: int) -> Path:
    return folder / f"step-{step:09d}"


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """Complete checkpoint folders under ``folder`` as ``(step, path)``, oldest first."""
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and (p / MODEL_FILE).is_file() and (p / STATE_FILE).is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def save_checkpoint(folder: Path, model: nn.Module, arch: str, state: dict[str, Any], keep: int = 1) -> Path:
    """Write ``model`` and ``state`` (which must hold ``step``) as a new checkpoint; keep the newest ``keep``."""
    step = int(state["step"])
    target = step_dir(folder, step)
    payload = {"format": STATE_FORMAT, "version": STATE_VERSION, **state}
    with atomic_output(target, force=True, directory=True) as tmp:
        save_weights(model, tmp / MODEL_FILE, arch=arch, step=str(step))
        torch.save(payload, tmp / STATE_FILE)
    for old_step, old in list_checkpoints(folder)[:-keep]:
        if old_step != step:
            shutil.rmtree(old, ignore_errors=True)
    return target


def load_checkpoint(path: Path, model: nn.Module) -> dict[str, Any]:
    """Load a checkpoint folder's weights into ``model`` (strictly) and return its training state."""
    state_file = path / STATE_FILE
    try:
        state = torch.load(state_file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read training state {state_file}: {first}") from exc
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{state_file} is not a carn-train training state")
    if state.get("version") != STATE_VERSION:
        raise CheckpointError(
            f"{state_file} has training-state version {state.get('version')}; this carn-mobile reads {STATE_VERSION}"
        )
    try:
        load_state_into(model, read_state_dict(path / MODEL_FILE), str(path / MODEL_FILE))
    except WeightsError as exc:
        raise CheckpointError(str(exc)) from exc
    return state

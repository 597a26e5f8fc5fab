"""Device choice and ``torch.distributed`` setup for runs launched by torchrun (or not).

torchrun sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``;
without them the run is a single process and no process group is created. The backend
is NCCL when training on CUDA and gloo otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


class DeviceError(ValueError):
    """A device that was asked for but is not available."""


class PeerError(ValueError):
    """Another rank failed during setup; its message is repeated here."""


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA (this process's local GPU), then MPS, then the CPU."""
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps and mps.is_available())
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if mps_ok else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: CUDA is not available on this machine")
        index = int(name[5:]) if name.startswith("cuda:") else local_rank % torch.cuda.device_count()
        if index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    if name == "mps":
        if not mps_ok:
            raise DeviceError("--device mps: Apple's MPS backend is not available on this machine")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise DeviceError(f"unknown device {name!r}")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank, the number of processes and its device."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    owns_group: bool = False  # True when setup() created the process group (and teardown ends it)

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_ok(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on every rank; if it fails on any rank, raise on all of them.

        Used for setup steps that may fail on some ranks only (a rank's data shard, files
        only rank 0 checks), so that no rank is left waiting in a collective for ever.
        """
        result: T | None = None
        error: str | None = None
        caught: BaseException | None = None
        try:
            result = fn()
        except (ValueError, OSError) as exc:
            error, caught = str(exc), exc
        if self.distributed:
            errors: list[str | None] = [None] * self.world_size
            dist.all_gather_object(errors, error)
            first = next((e for e in errors if e), None)
            if first is not None and caught is None:
                raise PeerError(f"another rank failed: {first}")
        if caught is not None:
            raise caught
        return result  # type: ignore[return-value]


def env_world() -> tuple[int, int, int]:
    """``(rank, local_rank, world_size)`` from torchrun's environment (0, 0, 1 without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, local, world


def setup(device_name: str = "auto") -> DistContext:
    """Pick the device and, under torchrun, join the process group (NCCL on CUDA, else gloo).

    A process group the caller already initialised is used as it is (and left open).
    """
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
        device = resolve_device(device_name, local_rank)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return DistContext(rank, local_rank, world, device, owns_group=False)
    rank, local_rank, world = env_world()
    device = resolve_device(device_name, local_rank)
    if world == 1:
        return DistContext(rank, local_rank, world, device)
    if device.type == "mps":
        raise DeviceError("multi-process training is not supported on MPS; use --device cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistContext(rank, local_rank, world, device, owns_group=True)


def teardown(ctx: DistContext) -> None:
    """Leave the process group if :func:`setup` created it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()

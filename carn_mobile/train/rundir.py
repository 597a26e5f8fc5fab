"""The run folder: its layout, and the rules for starting, restarting and resuming a run in it.

::

    RUN_DIR/
      config.json                   effective config (what --resume reads)
      checkpoints/step-NNNNNNNNN/   latest checkpoint: model.safetensors + state.pt
      log.csv, log.json             loss, learning rate, speed, validation PSNR
      curves.png                    loss and PSNR curves
      model.safetensors             final weights (carn-eval --weights, carn-export)
      summary.json                  what a weights-registry entry needs (sha256, steps, PSNR)
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path


class RunDirError(ValueError):
    """A run folder that cannot be used as asked (non-empty, nothing to resume, ...)."""


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run folder."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def log_csv(self) -> Path:
        return self.root / "log.csv"

    @property
    def log_json(self) -> Path:
        return self.root / "log.json"

    @property
    def curves(self) -> Path:
        return self.root / "curves.png"

    @property
    def model(self) -> Path:
        return self.root / "model.safetensors"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    def owned(self) -> list[Path]:
        """Everything carn-train writes here (what ``--force`` removes; nothing else is touched)."""
        return [self.config, self.checkpoints, self.log_csv, self.log_json, self.curves, self.model, self.summary]

    def check_new(self, force: bool) -> None:
        """A new run needs a missing or empty folder, unless ``force``."""
        if self.root.exists() and not self.root.is_dir():
            raise RunDirError(f"--out {self.root} exists and is not a folder")
        if self.root.is_dir() and any(self.root.iterdir()) and not force:
            raise RunDirError(
                f"run folder {self.root} is not empty; pass --resume to continue the run in it "
                "or --force to start over (this deletes its checkpoints, logs and weights)"
            )

    def clear(self) -> None:
        """Remove carn-train's own outputs (for ``--force``)."""
        for p in self.owned():
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()

    def check_resumable(self) -> None:
        """``--resume`` needs the saved config and at least one complete checkpoint."""
        from .state import list_checkpoints

        if not self.config.is_file():
            raise RunDirError(f"nothing to resume in {self.root}: no config.json (start a new run without --resume)")
        if not list_checkpoints(self.checkpoints):
            raise RunDirError(
                f"nothing to resume in {self.root}: no complete checkpoint under checkpoints/ "
                "(the run stopped before its first checkpoint; start over with --force)"
            )

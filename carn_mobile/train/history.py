"""The training log: rows of (step, loss, lr, speed, validation PSNR) as CSV, JSON and a PNG of the curves.

One row is written every ``log_every`` steps and at every validation; ``loss`` is the
mean training loss since the previous row and the PSNR cells are empty on rows without a
validation. The whole history also travels inside the training state, so ``--resume``
rewrites the files exactly as an uninterrupted run would have them.
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from ..fileio import atomic_output

BASE_COLUMNS = ("step", "loss", "lr", "steps_per_s", "elapsed_s", "val_psnr")


class History:
    """Log rows in memory, with writers for ``log.csv``, ``log.json`` and ``curves.png``."""

    def __init__(self, val_keys: Sequence[str] = (), bicubic: Mapping[str, float] | None = None) -> None:
        self.val_keys = list(val_keys)
        self.bicubic = dict(bicubic or {})
        self.rows: list[dict[str, Any]] = []

    @property
    def columns(self) -> list[str]:
        return [*BASE_COLUMNS, *self.val_keys]

    def add(
        self,
        step: int,
        loss: float | None,
        lr: float,
        steps_per_s: float,
        elapsed_s: float,
        val: Mapping[str, float] | None = None,
    ) -> dict[str, Any]:
        """Append a row; ``val`` maps validation keys to PSNR (their mean goes in ``val_psnr``)."""
        row: dict[str, Any] = {
            "step": step,
            "loss": loss,
            "lr": lr,
            "steps_per_s": steps_per_s,
            "elapsed_s": elapsed_s,
            "val_psnr": float(sum(val.values()) / len(val)) if val else None,
        }
        for k in self.val_keys:
            row[k] = val.get(k) if val else None
        self.rows.append(row)
        return row

    def last_val(self) -> dict[str, Any] | None:
        """The latest row with a validation, or None."""
        return next((r for r in reversed(self.rows) if r["val_psnr"] is not None), None)

    def best_val(self) -> dict[str, Any] | None:
        """The row with the highest mean validation PSNR, or None."""
        rows = [r for r in self.rows if r["val_psnr"] is not None]
        return max(rows, key=lambda r: r["val_psnr"]) if rows else None

    # --- persistence inside the training state (plain lists: loadable with weights_only) ----

    def state_dict(self) -> dict[str, Any]:
        cols = self.columns
        return {
            "val_keys": list(self.val_keys),
            "bicubic_keys": list(self.bicubic),
            "bicubic_values": [float(v) for v in self.bicubic.values()],
            "columns": cols,
            "rows": [[r[c] for c in cols] for r in self.rows],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.val_keys = list(state["val_keys"])
        self.bicubic = dict(zip(state["bicubic_keys"], state["bicubic_values"], strict=True))
        cols = list(state["columns"])
        self.rows = [dict(zip(cols, values, strict=True)) for values in state["rows"]]

    # --- files ------------------------------------------------------------------------

    def write_csv(self, path: str | os.PathLike) -> None:
        with atomic_output(path, force=True) as tmp:
            with open(tmp, "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(self.columns)
                for r in self.rows:
                    writer.writerow(["" if r[c] is None else _fmt(r[c]) for c in self.columns])

    def write_json(self, path: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> None:
        payload = {
            **(extra or {}),
            "bicubic_psnr": self.bicubic,
            "best": self.best_val(),
            "columns": self.columns,
            "rows": self.rows,
        }
        with atomic_output(path, force=True) as tmp:
            tmp.write_text(json.dumps(_json_safe(payload), indent=1) + "\n")

    def plot(self, path: str | os.PathLike, title: str = "") -> bool:
        """Write the loss and PSNR curves as a PNG; False (with a warning) if matplotlib is missing."""
        try:
            import matplotlib

            matplotlib.use("Agg")  # files only: never needs a display
            import matplotlib.pyplot as plt
        except ImportError:
            warnings.warn("matplotlib is not installed: no curves.png (pip install matplotlib)", stacklevel=2)
            return False
        train = [r for r in self.rows if r["loss"] is not None]
        val = [r for r in self.rows if r["val_psnr"] is not None]
        fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
        try:
            ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1)
            ax_loss.set_xlabel("step")
            ax_loss.set_ylabel("training loss")
            if train and min(r["loss"] for r in train) > 0:
                ax_loss.set_yscale("log")
            ax_loss.grid(alpha=0.3)
            for i, key in enumerate(self.val_keys):
                pts = [(r["step"], r[key]) for r in val if r[key] is not None]
                colour = f"C{i % 10}"
                if pts:
                    ax_psnr.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, color=colour, label=key)
                if key in self.bicubic:
                    ax_psnr.axhline(self.bicubic[key], color=colour, ls="--", lw=0.8, label=f"{key} bicubic")
            ax_psnr.set_xlabel("step")
            ax_psnr.set_ylabel("validation PSNR (dB, Y)")
            ax_psnr.grid(alpha=0.3)
            if self.val_keys:
                ax_psnr.legend(fontsize=7)
            else:
                ax_psnr.text(0.5, 0.5, "no validation set", ha="center", va="center", transform=ax_psnr.transAxes)
            if title:
                fig.suptitle(title)
            with atomic_output(path, force=True) as tmp:
                fig.savefig(tmp, format="png", dpi=100)
        finally:
            plt.close(fig)
        return True


def _fmt(v: Any) -> str:
    # repr is the shortest text that reads back to the same float: the CSV loses nothing.
    return repr(v) if isinstance(v, float) else str(v)


def _json_safe(obj: Any) -> Any:
    """NaN/inf are not JSON: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj

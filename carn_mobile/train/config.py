"""Training configuration: the paper's recipe (Sec. 4.2) as a dataclass, plus file/CLI merging.

Precedence is defaults < config file (JSON or TOML) < command-line flags. The effective
config is written to ``RUN_DIR/config.json`` and is what ``--resume`` reads back.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..models import PAPER_SCALES, CARNConfig, list_models, parse_scales
from ..weights import get_weights, is_shipped_name

#: The scales of a multi-scale run (``--scale multi`` or ``all``): the paper's x2/x3/x4.
MULTI_SCALES = PAPER_SCALES

#: Fields that may differ from the saved config when resuming: they control the run
#: (length, reporting, hardware), not the recipe. ``steps`` may grow to train longer.
RESUMABLE_FIELDS = frozenset(
    {"steps", "val", "val_every", "checkpoint_every", "log_every", "workers", "device", "threads", "lr_cache", "bf16",
     "channels_last", "compile", "time_budget"}
)


class ConfigError(ValueError):
    """An invalid configuration value or file."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; the defaults are the paper's recipe."""

    data: tuple[str, ...] = ()  # folders of HR training images
    val: tuple[str, ...] = ()  # benchmark folders (DIR/HR, optional DIR/LR_bicubic) or plain image folders
    model: str = "carn"
    model_args: Mapping[str, Any] = field(default_factory=dict)  # CARNConfig overrides, e.g. channels, groups
    scales: tuple[int, ...] = field(default=MULTI_SCALES, metadata={"flag": "scale"})  # one per batch when several
    init: str | None = None  # shipped weights name or checkpoint file to fine-tune from
    steps: int = 600_000
    batch_size: int = 64  # global batch: split evenly across DDP ranks
    patch_size: int = 64  # LR patch side; the HR patch is patch_size * scale
    lr: float = 1e-4
    lr_decay_steps: int = 400_000  # the learning rate is multiplied by lr_decay_factor this often
    lr_decay_factor: float = 0.5  # also the final value of the cosine schedule, as a share of lr
    lr_schedule: str = "step"  # "step" (paper) or "cosine"; both end at lr * lr_decay_factor
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    loss: str = "l1"  # "l1" (paper) or "l2"
    grad_clip: float = 0.0  # max gradient norm; 0 disables (the paper does not clip)
    augment: bool = True  # random horizontal flips and 90-degree rotations
    seed: int = 0
    val_every: int = 1000  # steps between validations; 0: only at the end
    checkpoint_every: int = 1000  # steps between checkpoints; 0: only at the end
    log_every: int = 100  # steps averaged into one log row
    workers: int = 0  # DataLoader worker processes assembling batches
    device: str = "auto"  # auto, cpu, cuda, cuda:N or mps
    bf16: bool = False  # bfloat16 autocast (CUDA only)
    channels_last: bool = False  # NHWC memory format for the model and batches (faster convs on GPUs)
    compile: bool = False  # torch.compile the training forward pass
    time_budget: float = 0.0  # seconds of wall time for the whole run; 0: off (--steps decides)
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    lr_cache: str | None = None  # folder caching bicubic LR images across runs

    def __post_init__(self) -> None:
        validate(self)

    @property
    def multi_scale(self) -> bool:
        return len(self.scales) > 1

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly dict (tuples as lists) that :func:`config_from_dict` reads back."""
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        d["model_args"] = dict(self.model_args)
        return d

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")


def parse_scale_spec(spec: str | int | list | tuple) -> tuple[int, ...]:
    """``"multi"`` -> (2, 3, 4); ``"4"`` or 4 -> (4,); ``"2,4"`` or [2, 4] -> (2, 4).

    :func:`carn_mobile.models.parse_scales` with its errors as :class:`ConfigError`.
    """
    try:
        return parse_scales(spec)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


# --- type coercion for values coming from JSON/TOML -----------------------------------------------


def _int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{name} must be an integer, got {v!r}")
    return v


def _float(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{name} must be a number, got {v!r}")
    return float(v)


def _bool(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"{name} must be true or false, got {v!r}")
    return v


def _str(name: str, v: Any) -> str:
    if not isinstance(v, str):
        raise ConfigError(f"{name} must be a string, got {v!r}")
    return v


def _opt_str(name: str, v: Any) -> str | None:
    return None if v is None else _str(name, v)


def _paths(name: str, v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, (list, tuple)) or not all(isinstance(p, str) for p in v):
        raise ConfigError(f"{name} must be a list of folders, got {v!r}")
    return tuple(v)


def _betas(name: str, v: Any) -> tuple[float, float]:
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise ConfigError(f"{name} must be two numbers such as [0.9, 0.999], got {v!r}")
    return (_float(name, v[0]), _float(name, v[1]))


def _model_args(name: str, v: Any) -> dict[str, Any]:
    if not isinstance(v, Mapping):
        raise ConfigError(f"{name} must be a table of CARNConfig fields, got {v!r}")
    return dict(v)


#: How a value of each field type is checked; a field's ``metadata["coerce"]`` overrides it.
_BY_TYPE: dict[str, Callable[[str, Any], Any]] = {
    "tuple[str, ...]": _paths,
    "str": _str,
    "str | None": _opt_str,
    "Mapping[str, Any]": _model_args,
    "int": _int,
    "float": _float,
    "bool": _bool,
    "tuple[float, float]": _betas,
    "tuple[int, ...]": lambda _n, v: parse_scale_spec(v),
}
#: Field name -> checker, derived from the dataclass (its annotations are strings here).
_COERCE: dict[str, Callable[[str, Any], Any]] = {
    f.name: f.metadata.get("coerce") or _BY_TYPE[str(f.type)] for f in fields(TrainConfig)
}
#: Field name -> ``carn-train`` flag dest (``--scale`` sets ``scales``), derived likewise.
CLI_FLAGS: dict[str, str] = {f.name: f.metadata.get("flag", f.name) for f in fields(TrainConfig)}

_MODEL_ARG_KEYS = frozenset(f.name for f in fields(CARNConfig)) - {"scales"}


def coerce_fields(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Check names and types of config values read from ``source`` (a file or the CLI)."""
    unknown = sorted(set(values) - set(_COERCE))
    if unknown:
        raise ConfigError(f"{source}: unknown config key(s) {', '.join(unknown)}; known: {', '.join(sorted(_COERCE))}")
    return {k: _COERCE[k](k, v) for k, v in values.items()}


def validate(cfg: TrainConfig) -> None:
    """Raise :class:`ConfigError` naming the first value outside its range."""
    if cfg.model.lower() not in list_models():
        raise ConfigError(f"unknown model {cfg.model!r}; known models: {', '.join(list_models())}")
    bad_args = sorted(set(cfg.model_args) - _MODEL_ARG_KEYS)
    if bad_args:
        raise ConfigError(
            f"model_args: unknown field(s) {', '.join(bad_args)} (scales are set with --scale); "
            f"known: {', '.join(sorted(_MODEL_ARG_KEYS))}"
        )
    checks = [
        (cfg.steps >= 1, "steps must be at least 1"),
        (cfg.batch_size >= 1, "batch_size must be at least 1"),
        (cfg.patch_size >= 4, "patch_size must be at least 4"),
        (cfg.lr > 0 and math.isfinite(cfg.lr), "lr must be a positive number"),
        (cfg.lr_decay_steps >= 1, "lr_decay_steps must be at least 1"),
        (0 < cfg.lr_decay_factor <= 1, "lr_decay_factor must be in (0, 1]"),
        (all(0 <= b < 1 for b in cfg.betas), "betas must be in [0, 1)"),
        (cfg.eps > 0, "eps must be positive"),
        (cfg.loss in ("l1", "l2"), f"loss must be 'l1' or 'l2', not {cfg.loss!r}"),
        (cfg.lr_schedule in ("step", "cosine"), f"lr_schedule must be 'step' or 'cosine', not {cfg.lr_schedule!r}"),
        (cfg.time_budget >= 0 and math.isfinite(cfg.time_budget), "time_budget must be >= 0 seconds (0: off)"),
        (cfg.grad_clip >= 0, "grad_clip must be >= 0 (0 disables clipping)"),
        (cfg.seed >= 0, "seed must be >= 0"),
        (cfg.val_every >= 0, "val_every must be >= 0 (0: validate only at the end)"),
        (cfg.checkpoint_every >= 0, "checkpoint_every must be >= 0 (0: checkpoint only at the end)"),
        (cfg.log_every >= 1, "log_every must be at least 1"),
        (cfg.workers >= 0, "workers must be >= 0"),
        (cfg.threads >= 0, "threads must be >= 0 (0: torch's default)"),
        (_valid_device(cfg.device), f"device must be auto, cpu, cuda, cuda:N or mps, not {cfg.device!r}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    parse_scale_spec(list(cfg.scales))


def _valid_device(text: str) -> bool:
    if text in ("auto", "cpu", "cuda", "mps"):
        return True
    return text.startswith("cuda:") and text[5:].isdigit()


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON (``.json``) or TOML (``.toml``) config file into checked field values."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        if p.suffix.lower() == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                raise ConfigError("TOML config files need Python 3.11 or newer; use JSON") from None
            with open(p, "rb") as fh:
                raw = tomllib.load(fh)
        elif p.suffix.lower() == ".json":
            raw = json.loads(p.read_text())
        else:
            raise ConfigError(f"config file {p} must end in .json or .toml")
    except (json.JSONDecodeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"cannot parse {p}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p} must hold an object/table of config keys")
    raw.pop("$schema", None)
    return coerce_fields(raw, str(p))


def config_from_dict(values: Mapping[str, Any], source: str = "config") -> TrainConfig:
    """Build a config from JSON-like values (unknown keys and wrong types are errors)."""
    return TrainConfig(**coerce_fields(values, source))


def _absolute(path: str) -> str:
    return str(Path(path).expanduser().resolve())


def resolve_paths(cfg: TrainConfig) -> TrainConfig:
    """Absolute data/val/cache/init paths, so a saved config works from any directory."""
    init = cfg.init
    if init is not None and not is_shipped_name(init):
        init = _absolute(init)
    return replace(
        cfg,
        data=tuple(_absolute(p) for p in cfg.data),
        val=tuple(_absolute(p) for p in cfg.val),
        lr_cache=_absolute(cfg.lr_cache) if cfg.lr_cache else None,
        init=init,
    )


def build_config(
    file_values: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None
) -> TrainConfig:
    """Defaults, then a config file's values, then explicit overrides (e.g. CLI flags).

    When fine-tuning from shipped weights and no model was named, the model is the
    weights' architecture (``init: carn-m`` alone trains CARN-M).
    """
    values: dict[str, Any] = dict(file_values or {})
    values.update(coerce_fields(overrides or {}, "command line"))
    if values.get("init") and "model" not in values and is_shipped_name(values["init"]):
        values["model"] = get_weights(values["init"]).arch
    cfg = TrainConfig(**values)
    if not cfg.data:
        raise ConfigError("no training data: pass --data DIR [DIR ...] or set data in the config file")
    return resolve_paths(cfg)


def merge_for_resume(saved: TrainConfig, overrides: Mapping[str, Any]) -> TrainConfig:
    """The saved config with run-control overrides applied; recipe changes are refused."""
    values = coerce_fields(overrides, "command line")
    candidate = resolve_paths(replace(saved, **values))
    changed = sorted(
        k for k in values if k not in RESUMABLE_FIELDS and getattr(candidate, k) != getattr(saved, k)
    )
    if changed:
        raise ConfigError(
            f"cannot change {', '.join(changed)} when resuming (the run was made with "
            + ", ".join(f"{k}={getattr(saved, k)!r}" for k in changed)
            + f"); only {', '.join(sorted(RESUMABLE_FIELDS))} may change"
        )
    return candidate

"""Weights registry and safe checkpoint loading.

Each shipped checkpoint is a :class:`Weights` entry (in the spirit of torchvision's
``Weights`` enums) that carries its file, checksum, licence and measured metadata. User
checkpoints are read without unpickling arbitrary objects: safetensors, or
``torch.load(weights_only=True)`` for the authors' ``.pth`` files.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .fileio import atomic_output, sha256_file
from .models import CARN, CARNConfig, build_model, config_dict, list_models

_PKG_DIR = Path(__file__).resolve().parent


class WeightsError(ValueError):
    """A checkpoint that cannot be read or does not fit the model."""


@dataclass(frozen=True)
class Weights:
    """A shipped checkpoint and what was measured with it."""

    name: str
    arch: str  # model registry name
    filename: str
    sha256: str
    scales: tuple[int, ...]
    license: str
    provenance: str
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        """Location of the file; raises ``WeightsError`` if the install lacks it."""
        for folder in weights_dirs():
            candidate = folder / self.filename
            if candidate.is_file():
                return candidate
        searched = ", ".join(str(d) for d in weights_dirs())
        raise WeightsError(f"weights file {self.filename} for {self.name!r} not found (searched {searched})")


# Metrics measured with `carn-eval` (Y channel, border = scale, uint8 output); see models/carn_m.md.
CARN_M_AUTHORS = Weights(
    name="carn-m",
    arch="carn-m",
    filename="carn_m.safetensors",
    sha256="a173e468d44f73ddfaff16d572236b21d2f2269f9f59390b57bfe9cd17eaf7c9",
    scales=(2, 3, 4),
    license="MIT, (c) 2018 Namhyuk Ahn (see models/LICENSE-carn_m.txt)",
    provenance=(
        "Authors' released CARN-M checkpoint (CARN-pytorch, carn_m.pth, sha256 "
        "d48a759a84509351facb6b7c6d5bd6edec98b98519b8c464ee4ab44d2ba964ff), converted to "
        "safetensors unchanged"
    ),
    meta={
        "params": 414787,
        "params_per_scale": {2: 257027, 3: 303427, 4: 294147},
        "mult_adds_1280x720": {2: 91.17e9, 3: 46.12e9, 4: 32.48e9},
        # (PSNR dB, SSIM) per dataset and scale, from `carn-eval --data Set5 Set14 --scale 2,3,4`.
        "metrics": {
            "Set5": {2: (37.68, 0.9595), 3: (34.06, 0.9248), 4: (31.88, 0.8910)},
            "Set14": {2: (33.31, 0.9152), 3: (30.11, 0.8377), 4: (28.42, 0.7772)},
        },
        "paper_psnr": {"Set5": {2: 37.53, 3: 33.99, 4: 31.92}, "Set14": {2: 33.26, 3: 30.08, 4: 28.42}},
    },
)

_REGISTRY: dict[str, Weights] = {w.name: w for w in (CARN_M_AUTHORS,)}


def weights_dirs() -> list[Path]:
    """Folders searched for shipped weights: ``$CARN_WEIGHTS_DIR``, the installed package data,
    then the source checkout's ``models/``."""
    dirs = []
    if os.environ.get("CARN_WEIGHTS_DIR"):
        dirs.append(Path(os.environ["CARN_WEIGHTS_DIR"]))
    dirs += [_PKG_DIR / "_models", _PKG_DIR.parent / "models"]
    return dirs


def list_weights() -> list[str]:
    """Names of the shipped weights."""
    return sorted(_REGISTRY)


def get_weights(name: str) -> Weights:
    """Registry entry for ``name``; a clear ``WeightsError`` when none is shipped."""
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        shipped = ", ".join(list_weights())
        raise WeightsError(
            f"no shipped weights named {name!r} (shipped: {shipped}); pass a checkpoint file with --weights"
        ) from None


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint's tensors without executing pickled code.

    ``.safetensors`` files are read directly; anything else goes through
    ``torch.load(weights_only=True)``. A dict wrapping the weights under ``state_dict``
    or ``model`` and DDP's ``module.`` prefix are accepted.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"checkpoint {p} does not exist or is not a file")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(p), device="cpu")
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as exc:
        kind = "safetensors" if p.suffix == ".safetensors" else "PyTorch (weights_only)"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"cannot read {p} as a {kind} checkpoint: {first}") from exc
    except Exception as exc:  # safetensors raises its own error type
        raise WeightsError(f"cannot read {p}: {type(exc).__name__}: {exc}") from exc
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{p} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def infer_scales(state: Mapping[str, torch.Tensor]) -> tuple[int, ...]:
    """Upsampling scales present in a CARN state dict (``up{s}`` branches or a single ``up``)."""
    multi = sorted({int(m.group(1)) for k in state if (m := re.match(r"upsample\.up(\d+)\.", k))})
    if multi:
        return tuple(multi)
    stage_convs = [v for k, v in state.items() if re.match(r"upsample\.up\.body\.\d+\.weight$", k)]
    if not stage_convs or "entry.weight" not in state:
        raise WeightsError("no upsampler or entry weights found: not a CARN checkpoint")
    # Each stage's conv widens C channels to C*r*r before PixelShuffle(r).
    r = {4: 2, 9: 3}.get(stage_convs[0].shape[0] // state["entry.weight"].shape[0])
    if r is None:
        raise WeightsError(f"cannot infer the scale from upsampler weights of shape {tuple(stage_convs[0].shape)}")
    return (r ** len(stage_convs),)


def load_state_into(model: CARN, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> CARN:
    """Strictly load ``state`` into ``model``; errors name missing, unexpected and misshaped keys."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state)
        if state[k].shape != expected[k].shape
    )
    if missing or unexpected or misshaped:
        lines = [f"{source} does not fit {describe_arch(model)}:"]
        groups = (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", misshaped))
        for label, keys in groups:
            if keys:
                shown = ", ".join(keys[:8]) + (f" ... (+{len(keys) - 8} more)" if len(keys) > 8 else "")
                lines.append(f"  {label} ({len(keys)}): {shown}")
        raise WeightsError("\n".join(lines))
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True)
    return model


def describe_arch(model: CARN) -> str:
    cfg = model.config
    return f"{cfg.block} blocks, groups={cfg.groups}, recursive={cfg.recursive}, scales={list(cfg.scales)}"


def read_metadata(path: str | os.PathLike) -> dict[str, Any] | None:
    """The carn-mobile header of a safetensors file written by :func:`save_weights` (else None)."""
    p = Path(path)
    if p.suffix != ".safetensors":
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="pt") as fh:
            raw = (fh.metadata() or {}).get("carn_mobile")
    except Exception as exc:  # safetensors raises its own error type
        raise WeightsError(f"cannot read {p}: {type(exc).__name__}: {exc}") from exc
    if raw is None:
        return None
    try:
        info = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{p} has a malformed carn_mobile header: {exc}") from exc
    if not isinstance(info, dict):
        raise WeightsError(f"{p} has a malformed carn_mobile header")
    return info


def _config_from_metadata(info: dict[str, Any], source: str) -> CARNConfig:
    try:
        cfg = dict(info["config"])
        cfg["scales"] = tuple(cfg["scales"])
        return CARNConfig(**cfg)
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{source}: unusable model config in its header ({exc})") from exc


def is_shipped_name(text: object) -> bool:
    """Whether ``text`` names shipped weights (rather than a checkpoint path)."""
    return isinstance(text, str) and text.lower() in _REGISTRY


@dataclass(frozen=True)
class WeightsRef:
    """What a weights argument (a shipped name or a checkpoint path) resolved to.

    ``entry`` is the registry entry for shipped weights and ``None`` for a file; ``arch`` is
    the architecture the weights are for (the entry's, the file's header, the caller's
    ``model``, else ``carn-m``). Made by :func:`resolve_weights`, the one place that decides.
    """

    path: Path
    entry: Weights | None
    sha256: str
    arch: str
    #: The carn-mobile header of a file written by :func:`save_weights` (None otherwise).
    header: Mapping[str, Any] | None = None

    @property
    def name(self) -> str | None:
        return self.entry.name if self.entry else None

    @property
    def spec(self) -> str:
        """What to pass back as ``weights`` to get the same file: the name, or the path."""
        return self.entry.name if self.entry else str(self.path)

    @property
    def license(self) -> str:
        return self.entry.license if self.entry else "not recorded (user checkpoint)"

    @property
    def label(self) -> str:
        return f"shipped weights {self.entry.name!r}" if self.entry else f"checkpoint {self.path}"

    def to_json(self) -> dict[str, Any]:
        """The record manifests keep: enough to find and check these weights again."""
        where = {"name": self.entry.name} if self.entry else {"path": str(self.path)}
        return {"model": self.arch, **where, "sha256": self.sha256, "license": self.license}


def resolve_weights(model: str | None = None, weights: str | os.PathLike | None = None) -> WeightsRef:
    """Decide what ``weights`` means for ``model``: shipped weights or a checkpoint file.

    ``weights=None`` means the shipped weights named like ``model`` (default ``carn-m``). A
    shipped file must match its registry sha256. Raises :class:`WeightsError` for a model
    without shipped weights, weights made for another architecture, or a missing file.
    """
    if weights is None or is_shipped_name(weights):
        entry = get_weights(str(weights or model or "carn-m"))
        if model is not None and model.lower() != entry.arch:
            raise WeightsError(f"shipped weights {entry.name!r} are a {entry.arch} model, not {model}")
        verify_file(entry)
        return WeightsRef(entry.path, entry, entry.sha256, entry.arch)
    path = Path(weights).expanduser().resolve()
    if not path.is_file():
        if isinstance(weights, str) and weights.lower() in list_models():
            get_weights(weights)  # a model name without shipped weights: say so, not "no such file"
        raise WeightsError(f"checkpoint {weights} does not exist or is not a file")
    header = read_metadata(path)
    recorded = str(header.get("arch", "")).lower() if header else ""
    if recorded and model is not None and model.lower() != recorded:
        raise WeightsError(f"{weights} holds a {recorded} model, not {model}; pass --model {recorded}")
    arch = recorded or (model or "carn-m").lower()
    return WeightsRef(path, None, sha256_file(path), arch, header)


def resolve_recorded(record: Mapping[str, Any]) -> WeightsRef:
    """The weights a manifest records, refusing ones whose sha256 changed since (see :meth:`WeightsRef.to_json`)."""
    model, sha = str(record["model"]), str(record["sha256"])
    if record.get("name"):
        entry = get_weights(str(record["name"]))
        if entry.sha256 != sha:
            raise WeightsError(
                f"shipped weights {entry.name!r} now have sha256 {entry.sha256}, but the artifact was "
                f"made from {sha}; pass the original checkpoint with --weights"
            )
        return resolve_weights(model, entry.name)
    path = Path(str(record.get("path") or ""))
    if not path.is_file():
        raise WeightsError(
            f"the artifact was made from {path}, which no longer exists; pass that checkpoint with --weights"
        )
    ref = resolve_weights(model, path)
    if ref.sha256 != sha:
        raise WeightsError(
            f"{path} has sha256 {ref.sha256}, but the artifact was made from {sha}; "
            "pass the original checkpoint with --weights"
        )
    return ref


def load_model(
    model: str | None = None, weights: str | os.PathLike | WeightsRef | None = None, *, trainable: bool = False
) -> CARN:
    """Build a model and load its weights, in eval mode, frozen unless ``trainable``.

    ``weights`` is a shipped weights name, a checkpoint path or a resolved :class:`WeightsRef`;
    without it, the shipped weights named like ``model`` (default ``carn-m``). Files written by
    :func:`save_weights` (e.g. by ``carn-train``) carry their architecture, so any variant loads
    as trained; for other files the architecture is ``model`` and the scales come from the
    checkpoint, so the authors' single-scale files (``upsample.up.*``) load too.
    """
    ref = weights if isinstance(weights, WeightsRef) else resolve_weights(model, weights)
    source = f"{ref.label} ({ref.path})" if ref.entry else str(ref.path)
    state = read_state_dict(ref.path)
    if ref.header is not None:
        net = CARN(_config_from_metadata(dict(ref.header), source))
    else:
        net = build_model(ref.arch, scales=infer_scales(state))
    net.arch = ref.arch  # the registry name, for reports and manifests
    load_state_into(net, state, source).eval()
    if not trainable:
        net.requires_grad_(False)  # inference: no autograd graph, no warnings
    return net


def save_weights(model: CARN, path: str | os.PathLike, arch: str, force: bool = False, **extra: str) -> Path:
    """Write ``model``'s weights as safetensors (atomically) with its config in the header."""
    from safetensors.torch import save_file

    # One JSON entry: safetensors stores metadata in a hash map, so several keys would come
    # out in a random order and make the file's sha256 differ from run to run.
    info = {"arch": arch, "config": config_dict(model), **extra}
    meta = {"carn_mobile": json.dumps(info, sort_keys=True)}
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_output(path, force=force) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return Path(path)


def verify_file(entry: Weights) -> None:
    """Raise ``WeightsError`` if a shipped file's sha256 differs from the registry."""
    actual = sha256_file(entry.path)
    if actual != entry.sha256:
        raise WeightsError(f"{entry.path} sha256 {actual} does not match the registry's {entry.sha256}")

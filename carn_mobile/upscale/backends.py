"""Inference backends behind one small interface: ``run(lr) -> sr`` for a fixed scale.

A backend only runs the network: ``lr`` is an ``N x 3 x h x w`` float32 array of RGB in
[0, 1] and the result is ``N x 3 x sh x sw`` float32, unclamped (tiling, clamping and
quantisation happen around it). ``config`` describes the network's architecture, which the
tiler needs for the receptive field and the memory estimate.

New backends register a factory in :data:`BACKENDS` under the name ``--backend`` takes.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from ..models import CARN, CARNConfig
from ..weights import load_model


@runtime_checkable
class Backend(Protocol):
    """What the upscaler needs from an inference engine."""

    name: str
    scale: int
    config: CARNConfig

    def run(self, lr: np.ndarray) -> np.ndarray:
        """``N x 3 x h x w`` float32 in [0, 1] -> ``N x 3 x (h*scale) x (w*scale)`` float32."""
        ...


class TorchBackend:
    """A CARN run by PyTorch in inference mode (CPU by default)."""

    name = "torch"

    def __init__(self, model: CARN, scale: int, device: str | torch.device = "cpu") -> None:
        if not isinstance(model, CARN):
            raise TypeError(f"the torch backend needs a carn_mobile CARN model, got {type(model).__name__}")
        if scale not in model.scales:
            raise ValueError(f"scale x{scale} not available; this model has {list(model.scales)}")
        self.scale = int(scale)
        self.config = model.config
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    def run(self, lr: np.ndarray) -> np.ndarray:
        if lr.ndim != 4 or lr.shape[1] != 3:
            raise ValueError(f"expected an N x 3 x H x W array, got shape {lr.shape}")
        x = torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float32)).to(self.device)
        with torch.inference_mode():
            y = self.model(x, self.scale)
        return y.to("cpu").numpy()


# Loaded models by (name, weights file, its size and mtime): the Python API may be called per
# image, and reading the weights each time would dominate small images.
_MODEL_CACHE: OrderedDict[tuple, CARN] = OrderedDict()
_CACHE_SIZE = 4


def resolve_model(model: str | CARN | None = "carn-m", weights: str | os.PathLike | None = None) -> CARN:
    """A ready CARN: ``model`` itself if it is one, else ``load_model(model, weights)``, cached.

    ``model=None`` takes the architecture recorded in ``weights`` (``carn-m`` by default).
    """
    if isinstance(model, torch.nn.Module):
        if weights is not None:
            raise ValueError("pass weights only with a model name, not with a model object")
        if not isinstance(model, CARN):
            raise TypeError(f"model must be a model name or a carn_mobile CARN, got {type(model).__name__}")
        return model.eval()
    if model is not None and not isinstance(model, str):
        raise TypeError(f"model must be a model name or a CARN, got {type(model).__name__}")
    key: tuple = ((model or "").lower(), None if weights is None else str(weights))
    if weights is not None and Path(weights).is_file():
        st = Path(weights).stat()
        key += (st.st_size, st.st_mtime_ns)
    if key in _MODEL_CACHE:
        _MODEL_CACHE.move_to_end(key)
        return _MODEL_CACHE[key]
    net = load_model(model, weights)
    _MODEL_CACHE[key] = net
    while len(_MODEL_CACHE) > _CACHE_SIZE:
        _MODEL_CACHE.popitem(last=False)
    return net


def _torch_backend(
    model: str | CARN, weights: str | os.PathLike | None, scale: int, device: str = "cpu"
) -> TorchBackend:
    return TorchBackend(resolve_model(model, weights), scale, device)


class OnnxRuntimeBackend:
    """The per-scale ONNX export of a model, run by onnxruntime (the engine Android apps embed).

    The artifact comes from ``carn-export`` (parity-gated) and is cached per weights checksum
    under ``$CARN_CACHE_DIR`` (default ``~/.cache/carn-mobile``), so only the first use exports.
    """

    name = "onnxruntime"

    def __init__(self, model: CARN, artifact: Path, scale: int) -> None:
        from ..runtimes import get_runner

        self.scale = int(scale)
        self.config = model.config
        self.artifact = artifact
        self._run = get_runner("onnxruntime").load(artifact)

    def run(self, lr: np.ndarray) -> np.ndarray:
        if lr.ndim != 4 or lr.shape[1] != 3:
            raise ValueError(f"expected an N x 3 x H x W array, got shape {lr.shape}")
        # The exported contract takes one image at a time; its output is already clamped,
        # which tiling tolerates (clamping is per pixel).
        return np.concatenate([self._run(lr[i : i + 1]) for i in range(lr.shape[0])])


def cache_dir() -> Path:
    """Where exported artifacts for the onnxruntime backend are kept."""
    return Path(os.environ.get("CARN_CACHE_DIR") or Path.home() / ".cache" / "carn-mobile")


def _onnx_artifact(model: str | None, weights: str | os.PathLike | None, scale: int) -> tuple[CARN, Path]:
    from ..export import artifact_filename, export_model, read_manifest, resolve_weights
    from ..fileio import sha256_file
    from ..runtimes import parse_shape

    source = resolve_weights(model, weights)
    folder = cache_dir() / "onnx" / source.sha256[:16]
    path = folder / artifact_filename(source.model, scale, "fp32", ".onnx", parse_shape("dynamic"))
    net = resolve_model(model, weights)
    if path.is_file():
        manifest = read_manifest(path)
        if manifest["file"]["sha256"] == sha256_file(path) and manifest["parity"]["status"] == "passed":
            return net, path
    export_model(source.model, source.name or source.path, targets=["onnx"], scales=[scale], out_dir=folder,
                 force=True)  # fmt: skip
    return net, path


def _onnxruntime_backend(
    model: str | CARN | None, weights: str | os.PathLike | None, scale: int, device: str = "cpu"
) -> OnnxRuntimeBackend:
    if isinstance(model, torch.nn.Module):
        raise ValueError("the onnxruntime backend exports from a model name or weights file, not a model object")
    net, artifact = _onnx_artifact(model, weights, scale)
    if scale not in net.scales:
        raise ValueError(f"scale x{scale} not available; this model has {list(net.scales)}")
    return OnnxRuntimeBackend(net, artifact, scale)


#: ``--backend`` name -> factory ``(model, weights, scale, device) -> Backend``.
BACKENDS: dict[str, Callable[..., Backend]] = {"torch": _torch_backend, "onnxruntime": _onnxruntime_backend}


def available_backends() -> list[str]:
    """Names accepted by ``--backend``."""
    return sorted(BACKENDS)


def create_backend(
    name: str = "torch",
    *,
    model: str | CARN | None = "carn-m",
    weights: str | os.PathLike | None = None,
    scale: int = 4,
    device: str = "cpu",
) -> Backend:
    """Build the backend ``name`` for ``model`` at ``scale``."""
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(available_backends())}") from None
    return factory(model, weights, scale, device)

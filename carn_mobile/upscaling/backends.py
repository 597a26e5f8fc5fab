"""Inference backends behind one small interface: ``run(lr) -> sr`` for a fixed scale.

A backend only runs the network: ``lr`` is an ``N x 3 x h x w`` float32 array of RGB in
[0, 1] and the result is ``N x 3 x sh x sw`` float32, unclamped (tiling, clamping and
quantisation happen around it). ``config`` describes the network's architecture, which the
tiler needs for the receptive field and the memory estimate.

The backends are ``torch`` and one per export target that names a backend (``Target.backend``):
that target's cached export run by its runner, so a new target reaches ``--backend`` by itself.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from ..models import CARN, CARNConfig, check_scale
from ..weights import WeightsRef, load_model, resolve_weights

log = logging.getLogger("carn_mobile.upscaling.cache")


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
    """A CARN run by PyTorch in inference mode (CPU by default).

    Runs the single-scale network with the export's exact graph rewrites
    (``carn_mobile.export.rewrites``) in channels-last memory format: 2x faster than the plain
    model on CPU for CARN-M x4 (docs/benchmark.md), same outputs up to float rounding.
    ``optimize=False`` runs the model as it is; ``rewrites`` picks rewrites by name instead.
    """

    name = "torch"

    def __init__(self, model: CARN, scale: int, device: str | torch.device = "cpu", optimize: bool = True,
                 rewrites: Sequence[str] | None = None) -> None:
        if not isinstance(model, CARN):
            raise TypeError(f"the torch backend needs a carn_mobile CARN model, got {type(model).__name__}")
        from ..export.rewrites import optimized_module
        from ..export.wrapper import per_scale_module

        self.scale = check_scale(scale, model.scales)
        self.config = model.config
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        single = per_scale_module(model, self.scale)
        if not optimize:
            rewrites = ()
        single, self.rewrites = optimized_module(single, rewrites)
        # NHWC lets oneDNN (CPU) and cuDNN run the convs without layout conversions between them.
        self.memory_format = torch.channels_last if optimize else torch.contiguous_format
        self.network = single.net.to(self.device, memory_format=self.memory_format).eval()

    def run(self, lr: np.ndarray) -> np.ndarray:
        if lr.ndim != 4 or lr.shape[1] != 3:
            raise ValueError(f"expected an N x 3 x H x W array, got shape {lr.shape}")
        x = torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float32)).to(self.device)
        with torch.inference_mode():
            y = self.network(x.contiguous(memory_format=self.memory_format))
        return y.to("cpu").contiguous().numpy()


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
    model: str | CARN, weights: str | os.PathLike | None, scale: int, device: str = "cpu", precision: str = "fp32"
) -> TorchBackend:
    # create_backend has checked the precision: torch runs fp32 only.
    return TorchBackend(resolve_model(model, weights), scale, device)


class ArtifactBackend:
    """A per-scale export of a model, run in its target's own runtime (the engine apps embed).

    The artifact comes from ``carn-export`` (parity-gated, dynamic H/W) and is cached per target
    and weights checksum under ``$CARN_CACHE_DIR`` (default ``~/.cache/carn-mobile``), so only
    the first use exports. ``max_side`` is the largest LR side the artifact accepts (ExecuTorch
    plans memory for it); the upscaler tiles so that no call exceeds it.
    """

    def __init__(self, name: str, model: CARN, artifact: Path, scale: int) -> None:
        from ..export import ExportRequest, get_target, open_artifact, read_manifest
        from ..runtimes import RunnerUnavailable

        manifest = read_manifest(artifact)
        target = get_target(manifest["target"])
        shape = ExportRequest.from_manifest(manifest, target, artifact.name).shape
        try:
            opened = open_artifact(artifact, target)  # the gate's own runner rule
        except RunnerUnavailable as exc:
            raise RuntimeError(f"the {name} backend cannot run here: {exc}") from None
        self.name = name
        self.scale = int(scale)
        self.config = model.config
        self.artifact = artifact
        self.precision: str = manifest["precision"]
        #: The quality gate's measured drop, for a quantized artifact (``None`` for float ones).
        self.quality: str | None = quality_line(manifest)
        self.max_side: int | None = shape.bounds[1] if shape.kind == "dynamic" else None
        self._run = opened

    def run(self, lr: np.ndarray) -> np.ndarray:
        if lr.ndim != 4 or lr.shape[1] != 3:
            raise ValueError(f"expected an N x 3 x H x W array, got shape {lr.shape}")
        # The exported contract takes one image at a time; its output is already clamped,
        # which tiling tolerates (clamping is per pixel).
        return np.concatenate([self._run(lr[i : i + 1]) for i in range(lr.shape[0])])


def quality_line(manifest: dict) -> str | None:
    """The export quality gate's headline for a quantized artifact, with its drop limit:
    ``"quality passed: Y-PSNR vs fp32 45.6 dB; task PSNR drop Set5 +0.024, ... dB (gate <= 0.1 dB)"``."""
    from ..quantization.quality import QualityReport

    record = manifest.get("parity", {}).get("quality")
    if not record:
        return None
    report = QualityReport.from_json(record)
    limit = report.limits.get("max_task_psnr_drop_db")
    return report.headline() + (f" (gate <= {limit:g} dB)" if limit is not None else "")


#: The artifact backends that run each reduced precision fastest, best first, from
#: benchmarks/int8-x86_64-2core (CARN-M, 2 threads): ExecuTorch int8 ran 2.4-2.5x faster than
#: onnxruntime fp32, LiteRT int8 2.3-2.9x (faster than ExecuTorch at x3 and x4, slower at x2, so
#: ExecuTorch stays first), onnxruntime int8 1.0-1.2x; in fp16 onnxruntime beat ExecuTorch, though
#: both ran slower than fp32 on a CPU without fp16 arithmetic (that folder's earlier recording).
PRECISION_BACKENDS: dict[str, tuple[str, ...]] = {
    "int8": ("executorch", "onnxruntime"),
    "fp16": ("onnxruntime", "executorch"),
}


def backend_precisions(name: str) -> tuple[str, ...]:
    """The precisions backend ``name`` can run (``torch``: fp32; an artifact backend: its target's)."""
    from ..export import artifact_backends, get_target

    if name == "torch":
        return ("fp32",)
    target = artifact_backends().get(name)
    return get_target(target).precisions if target else ()


def choose_backend(precision: str = "fp32", backend: str | None = None) -> str:
    """The backend that runs ``precision``: ``backend`` when given, else ``torch`` for fp32 and
    the fastest installed artifact backend for the others (:data:`PRECISION_BACKENDS`).
    ``ValueError`` in one line, naming the backends that can, when that is impossible."""
    from ..export import artifact_backends, get_target
    from ..precision import get_precision
    from ..runtimes import MissingDependencyError

    precision = get_precision(precision).name  # an unknown name: one line listing the known ones
    able = [b for b in ("torch", *sorted(artifact_backends())) if precision in backend_precisions(b)]
    if backend is not None:
        if precision not in backend_precisions(backend):
            if backend not in backend_factories():
                raise ValueError(f"unknown backend {backend!r}; available: {', '.join(available_backends())}")
            raise ValueError(f"the {backend} backend runs {', '.join(backend_precisions(backend))} only; "
                             f"{precision} runs on: {', '.join(able) or 'no backend'}")
        return backend
    if precision == "fp32":
        return "torch"
    missing = []
    for name in PRECISION_BACKENDS.get(precision, ()):
        try:
            get_target(artifact_backends()[name]).check_available()
        except MissingDependencyError as exc:
            missing.append(str(exc))
            continue
        return name
    raise ValueError(f"no installed backend runs {precision}: {'; '.join(missing) or 'none offers it'}")


def cache_dir() -> Path:
    """Where exported artifacts for the artifact backends are kept."""
    return Path(os.environ.get("CARN_CACHE_DIR") or Path.home() / ".cache" / "carn-mobile")


def cached_artifact(target: str, ref: WeightsRef, scale: int, precision: str = "fp32") -> Path:
    """The cached, parity-checked dynamic ``target`` export of the weights at ``scale`` in
    ``precision`` (made on first use; a quantized one calibrated on the built-in images, so the
    same weights always give the same artifact, and gated on its quality like any int8 export)."""
    from ..export import ExportRequest, export_model, get_target, read_manifest
    from ..export.pipeline import artifact_path, default_rewrites
    from ..export.rewrites import parse_rewrites
    from ..fileio import sha256_file
    from ..precision import get_precision
    from ..quantization import CalibrationSource
    from ..runtimes import parse_shape

    adapter = get_target(target)
    folder = cache_dir() / target / ref.sha256[:16]
    shape = parse_shape("dynamic").with_default_max(adapter.default_max_side)
    path = artifact_path(adapter, ExportRequest(ref.arch, scale, precision, shape), folder)  # where export writes it
    if path.exists():
        manifest = read_manifest(path)
        try:
            recorded = ExportRequest.from_manifest(manifest, adapter, path.name)
            current = parse_rewrites(list(recorded.rewrites)) == default_rewrites(recorded.quantization, adapter)
        except ValueError:  # a manifest this version cannot read back: export again
            current = False
        if manifest["file"]["sha256"] == sha256_file(path) and manifest["parity"]["status"] == "passed" and current:
            return path
    calibration = CalibrationSource() if get_precision(precision).quantized else None
    log.info("first use of the %s backend at x%d in %s: exporting and checking the artifact once, into %s "
             "(reused while it matches)", target, scale, precision, path)
    export_model(ref.arch, ref.spec, targets=[target], scales=[scale], precision=precision, out_dir=folder,
                 force=True, calibration=calibration)
    return path


def _artifact_factory(name: str, target: str) -> Callable[..., Backend]:
    def factory(model: str | CARN | None, weights: str | os.PathLike | None, scale: int, device: str = "cpu",
                precision: str = "fp32"):
        if isinstance(model, torch.nn.Module):
            raise ValueError(f"the {name} backend exports from a model name or weights file, not a model object")
        net = resolve_model(model, weights)
        check_scale(scale, net.scales)
        artifact = cached_artifact(target, resolve_weights(model, weights), scale, precision)
        backend = ArtifactBackend(name, net, artifact, scale)
        if backend.quality is not None:
            log.info("%s on the %s backend (%s); its export measured: %s", precision, name, artifact.name,
                     backend.quality)
        return backend

    return factory


def backend_factories() -> dict[str, Callable[..., Backend]]:
    """``--backend`` name -> factory ``(model, weights, scale, device) -> Backend``: ``torch``, then
    every export target that names a backend (:func:`carn_mobile.export.artifact_backends`)."""
    from ..export import artifact_backends

    factories: dict[str, Callable[..., Backend]] = {"torch": _torch_backend}
    for name, target in artifact_backends().items():
        factories[name] = _artifact_factory(name, target)
    return factories


def available_backends() -> list[str]:
    """Names accepted by ``--backend``."""
    return sorted(backend_factories())


def create_backend(
    name: str | None = "torch",
    *,
    model: str | CARN | None = "carn-m",
    weights: str | os.PathLike | None = None,
    scale: int = 4,
    device: str = "cpu",
    precision: str = "fp32",
) -> Backend:
    """Build the backend ``name`` for ``model`` at ``scale``, running ``precision``; ``name=None``
    takes the one :func:`choose_backend` picks for ``precision``, and a backend that cannot run it
    is refused there in one line."""
    name = choose_backend(precision, name)  # an unknown name is refused there too
    return backend_factories()[name](model, weights, scale, device, precision)

"""The benchmark sweep: per (model, scale) params and Mult-Adds, then per backend latency,
peak memory, artifact size and achieved MAC/s against the machine's convolution ceiling.

Artifacts for the non-PyTorch backends are made by ``carn_mobile.export`` (so they pass the
same parity gate as any export) in a temporary folder, at exactly the benchmarked LR size.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..complexity import PAPER_HR, mult_adds, params_for_scale
from ..models import CARN, build_model
from ..sizes import WxH
from ..weights import is_shipped_name, load_model, save_weights
from .ceiling import Ceiling, measure_ceiling
from .machine import describe_machine
from .memory import peak_memory_mb
from .timing import measure


def backend_targets() -> dict[str, str | None]:
    """Backend name -> export target whose artifact it runs (``None``: the PyTorch model itself).

    Derived from the target registry: every target that names a backend is benchmarked.
    """
    from ..export import artifact_backends

    return {"torch": None, **artifact_backends()}


@dataclass
class BenchSettings:
    """What to measure; the defaults are the paper's 720p setting on every backend."""

    hr: WxH = PAPER_HR
    models: Sequence[str] = ("carn", "carn-m")
    scales: Sequence[int] = (2, 3, 4)
    backends: Sequence[str] = field(default_factory=lambda: tuple(backend_targets()))
    threads: int = 2
    runs: int = 10
    warmup: int = 2
    #: "optimized" (the export's exact rewrites, what carn-export writes) and/or "plain" (the
    #: graph as trained, ``--no-optimize``): both give before/after rows from one run.
    graphs: Sequence[str] = ("optimized",)
    #: Precisions per backend (``carn_mobile.precision``; ``None``: each target's default); a
    #: backend without one gets a skipped row.
    precisions: Sequence[str | None] = (None,)
    notes: list[str] = field(default_factory=list)


def lr_size(hr: WxH, scale: int) -> WxH:
    """The integer LR input actually run for an ``hr`` output at ``scale``."""
    hr = WxH(*hr)
    return WxH(max(1, round(hr.width / scale)), max(1, round(hr.height / scale)))


def _model_and_weights(name: str, workdir: Path) -> tuple[CARN, str, str]:
    """(multi-scale model, weights argument for export, description). Without shipped weights
    the model is randomly initialised: latency does not depend on the weight values."""
    if is_shipped_name(name):
        return load_model(name), name, f"shipped weights {name!r}"
    net = build_model(name).eval()
    path = save_weights(net, workdir / f"{name}_random_init.safetensors", arch=name)
    return net, str(path), "random init (no shipped weights; latency does not depend on values)"


def graph_names() -> list[str]:
    """Graphs a benchmark can run: ``plain``, each rewrite alone (its own gain), ``optimized`` (all)."""
    from ..export import REWRITES

    return ["plain", *REWRITES, "optimized"]


def graph_rewrites(graph: str) -> tuple[str, ...] | None:
    """The rewrites ``export_model`` applies for ``graph`` (``None``: the defaults)."""
    if graph not in graph_names():
        raise ValueError(f"unknown graph {graph!r}; choose from {', '.join(graph_names())}")
    return None if graph == "optimized" else () if graph == "plain" else (graph,)


def each_model(names: Sequence[str], workdir: Path, notes: list[str]) -> Iterator[tuple[str, CARN, str]]:
    """(name, multi-scale model, weights argument for export) per model, noting where its weights came from."""
    for name in names:
        net, weights_arg, weights_note = _model_and_weights(name, workdir)
        notes.append(f"{name}: {weights_note}")
        yield name, net, weights_arg


#: A benchmark measures what int8 costs in quality (recorded per row) rather than gating on it.
BENCH_POLICY_DROP_DB = 100.0


def _export(target: str, weights: str, scale: int, lr: WxH, workdir: Path, graph: str = "optimized",
            precision: str | None = None):
    from ..export import export_model
    from ..parity import ParityPolicy
    from ..precision import get_precision
    from ..runtimes import parse_shape

    shape = parse_shape(f"{lr.height}x{lr.width}")  # fixed, height first: what an app at this size ships
    (result,) = export_model(
        weights=weights, targets=[target], scales=[scale], precision=precision, shape=shape,
        out_dir=workdir / f"{target}-{graph}-{precision or 'default'}", force=True, rewrites=graph_rewrites(graph),
        **({"policy": ParityPolicy(max_psnr_drop_db=BENCH_POLICY_DROP_DB)}
           if precision is not None and get_precision(precision).quantized else {}),
    )
    return result


def _skip_reason(backend: str) -> str | None:
    """Why ``backend`` cannot run here (its converter or runtime is missing), or ``None``."""
    target = backend_targets()[backend]
    if target is None:
        return None
    from ..export import get_target, usable_runners
    from ..runtimes import MissingDependencyError

    adapter = get_target(target)
    try:
        adapter.check_available()  # names the pip extra when a package is missing
    except MissingDependencyError as exc:
        return str(exc)
    usable, why_not = usable_runners(adapter)
    return None if usable else why_not


def run_benchmark(settings: BenchSettings, progress: Callable[[str, int], None] | None = None) -> dict:
    """Measure everything ``settings`` asks for; returns the report dict (see docs/benchmark.md).

    ``progress(message, rows_done)`` is called as the sweep goes.
    """

    def say(message: str) -> None:
        if progress is not None:
            progress(message, len(report["rows"]))

    torch.set_num_threads(settings.threads)
    report = {
        "machine": describe_machine(settings.threads),
        "settings": {
            "hr": str(WxH(*settings.hr)),
            "runs": settings.runs,
            "warmup": settings.warmup,
            "threads": settings.threads,
            "backends": list(settings.backends),
            "graphs": list(settings.graphs),
            "precisions": list(settings.precisions),
        },
        "ceilings": {},
        "rows": [],
        "notes": list(settings.notes),
    }
    ceilings: dict[int, Ceiling] = {}
    skip = {b: _skip_reason(b) for b in settings.backends}
    with tempfile.TemporaryDirectory(prefix="carn-bench-") as tmp:
        workdir = Path(tmp)
        for name, net, weights_arg in each_model(settings.models, workdir, report["notes"]):
            for scale in settings.scales:
                if scale not in net.scales:
                    raise ValueError(f"{name} has no x{scale} branch (it has {list(net.scales)})")
                lr = lr_size(settings.hr, scale)
                lw, lh = lr.width, lr.height
                if scale not in ceilings:
                    say(f"ceiling: conv3x3 64->64 at {lw}x{lh}")
                    ceilings[scale] = measure_ceiling(lw, lh, settings.threads, settings.runs, settings.warmup)
                    report["ceilings"][str(scale)] = ceilings[scale].to_json()
                base = {
                    "model": name,
                    "scale": scale,
                    "params": params_for_scale(net, scale),
                    "mult_adds": mult_adds(net, scale, settings.hr),
                    "lr_size": f"{lw}x{lh}",
                }
                macs_run = mult_adds(net, scale, WxH(lw * scale, lh * scale))
                torch_median: dict[str, float] = {}
                plain_median: dict[tuple[str, str], float] = {}
                fp32_median: dict[tuple[str, str], float] = {}
                for backend, graph, wanted in ((b, g, p) for b in settings.backends for g in settings.graphs
                                               for p in settings.precisions):
                    row = dict(base, backend=backend, graph=graph, precision=wanted, threads=settings.threads)
                    reason = skip[backend] or _precision_skip(backend, wanted)
                    if reason:
                        report["rows"].append(dict(row, status="skipped", reason=reason))
                        say(f"{name} x{scale} {backend} {wanted}: skipped ({reason})")
                        continue
                    say(f"{name} x{scale} {backend} ({graph}, {wanted}): preparing")
                    load, size, precision, quality = _prepare(backend, net, weights_arg, scale, lr, workdir, graph,
                                                              wanted)
                    # Memory from loading the artifact through its first inference: engines that
                    # keep an arena (onnxruntime, ExecuTorch) allocate it at load or first run.
                    loaded: list[Callable[[], object]] = []
                    peak, method = peak_memory_mb(partial(_first_run, load, loaded))
                    fn = loaded[0]
                    say(f"{name} x{scale} {backend} ({graph}): timing {settings.runs} runs")
                    lat = measure(fn, settings.runs, settings.warmup)
                    rate = macs_run / (lat.median / 1e3)
                    if backend == "torch":
                        torch_median[graph] = lat.median
                    if graph == "plain":
                        plain_median[backend, precision] = lat.median
                    if precision == "fp32":
                        fp32_median[backend, graph] = lat.median
                    row.update(
                        status="ok",
                        precision=precision,
                        size_bytes=size,
                        latency_ms=lat.to_json(),
                        spread=round(lat.spread, 3),
                        peak_mem_mb=round(peak, 1),
                        peak_mem_method=method,
                        gmacs_per_s=round(rate / 1e9, 2),
                        ceiling_fraction=round(rate / ceilings[scale].macs_per_s, 3),
                        speedup_vs_torch=round(torch_median[graph] / lat.median, 2) if graph in torch_median
                        else None,
                        speedup_vs_plain=round(plain_median[backend, precision] / lat.median, 2)
                        if graph != "plain" and (backend, precision) in plain_median else None,
                        speedup_vs_fp32=round(fp32_median[backend, graph] / lat.median, 2)
                        if precision != "fp32" and (backend, graph) in fp32_median else None,
                        **({"quality": quality} if quality else {}),
                    )
                    report["rows"].append(row)
    return report


def _first_run(load: Callable[[], Callable[[], object]], loaded: list) -> None:
    fn = load()
    fn()
    loaded.append(fn)


def _precision_skip(backend: str, precision: str | None) -> str | None:
    """Why ``backend`` has no ``precision`` artifact, or ``None``."""
    target = backend_targets()[backend]
    if precision is None:
        return None
    if target is None:
        return None if precision == "fp32" else f"the PyTorch model runs in fp32 only, not {precision}"
    from ..export import get_target

    offered = get_target(target).precisions
    return None if precision in offered else f"{target} exports {', '.join(offered)}, not {precision}"


def _prepare(backend: str, net: CARN, weights: str, scale: int, lr: WxH, workdir: Path, graph: str = "optimized",
             precision: str | None = None):
    """(loader returning a one-inference callable, artifact size in bytes, precision, int8 quality or None)."""
    x = np.random.default_rng(0).random((1, 3, lr.height, lr.width), dtype=np.float32)
    target = backend_targets()[backend]
    if target is None:  # what carn-upscale --backend torch runs
        from ..upscaling.backends import TorchBackend

        # plain: the backend as it was (no rewrites, contiguous NCHW); otherwise channels-last too.
        torch_backend = TorchBackend(net, scale, optimize=graph != "plain", rewrites=graph_rewrites(graph))
        size = sum(t.numel() * t.element_size() for t in torch_backend.network.state_dict().values())

        def load_torch() -> Callable[[], object]:
            return lambda: torch_backend.run(x)

        return load_torch, size, "fp32", None
    from ..export import get_target, open_artifact

    result = _export(target, weights, scale, lr, workdir, graph, precision)

    def load_artifact() -> Callable[[], object]:
        run = open_artifact(result.artifact, get_target(target))  # the gate's own runner rule
        return lambda: run(x)

    quality = result.manifest["parity"].get("quality")
    return load_artifact, result.size_bytes, result.manifest["precision"], quality

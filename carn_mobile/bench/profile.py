"""Where a CARN's time goes: per-operator profiles, grouped by layer kind, in two runtimes.

onnxruntime's own profiler (``SessionOptions.enable_profiling``) times every kernel of the
optimized graph it runs; ExecuTorch's ETDump times every XNNPACK operator inside the delegate.
Both are grouped by what the layer is in CARN (group convs of the residual-E blocks, cascading
1x1 fusions, upsampler convs, depth-to-space, concat copies, ...), and each conv kind's
multiply-adds (counted on the PyTorch module with hooks) give its achieved GMAC/s, to put
against the machine's conv ceiling. ``carn-bench --profile`` prints and records the tables.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..sizes import WxH
from .ceiling import measure_ceiling
from .machine import describe_machine

#: Graphs profiled side by side: as trained, and with the export's exact rewrites.
GRAPHS: tuple[str, ...] = ("plain", "optimized")


def conv_kind(kernel: int, groups: int, c_in: int, c_out: int, channels: int) -> str:
    """The CARN layer a convolution is, from its shape (``channels``: the body width, 64)."""
    if c_in == 3:
        return "entry conv 3x3" if kernel == 3 else "mean shift 1x1"
    if kernel == 1:
        return "cascade 1x1 over concat" if c_in > channels else "1x1 64->64 (residual-E mix, cascade parts)"
    if kernel == 3 and c_out == channels and c_in == channels:
        return "group conv 3x3 (residual-E)" if groups > 1 else "conv 3x3 (residual block)"
    if kernel == 3 and c_in == channels and c_out > channels:
        return "upsampler conv 3x3"
    if kernel == 3 and c_in > channels:
        return "exit conv 3x3 (before shuffle)"
    if kernel == 3:
        return "exit conv 3x3"
    return f"conv {kernel}x{kernel}"


#: Non-conv operators by their runtime names (onnxruntime op types, XNNPACK operator names).
_OP_KINDS = {
    "DepthToSpace": "depth-to-space", "Depth To Space": "depth-to-space",
    "Concat": "concat copies", "Copy": "concat copies",
    "ReorderInput": "layout reorder (NCHWc)", "ReorderOutput": "layout reorder (NCHWc)",
    "Transpose": "layout transpose (NCHW<->NHWC)",
    "Add": "elementwise (add, relu, clip)", "Sum": "elementwise (add, relu, clip)",
    "Relu": "elementwise (add, relu, clip)", "Clip": "elementwise (add, relu, clip)",
    "Clamp": "elementwise (add, relu, clip)",
}


def op_kind(name: str) -> str:
    """Layer kind of a non-conv operator, by the runtime's name for it (``Depth To Space (NHWC)``...)."""
    for prefix, kind in _OP_KINDS.items():
        if name == prefix or name.startswith(prefix + " "):
            return kind
    return name


@dataclass
class KindTime:
    """Time, calls and multiply-adds of one layer kind in one profile."""

    kind: str
    calls: int = 0
    ms: float = 0.0
    macs: int = 0

    def to_json(self, total_ms: float, ceiling_macs_per_s: float) -> dict:
        rate = self.macs / (self.ms / 1e3) if self.macs and self.ms else None
        return {"kind": self.kind, "calls": self.calls, "ms": round(self.ms, 2),
                "share": round(self.ms / total_ms, 3) if total_ms else None,
                "gmacs": round(self.macs / 1e9, 3) if self.macs else None,
                "gmacs_per_s": round(rate / 1e9, 1) if rate else None,
                "of_ceiling": round(rate / ceiling_macs_per_s, 3) if rate else None}


@dataclass(frozen=True)
class ConvCall:
    """One convolution the PyTorch module runs, in call order."""

    kind: str
    kernel: int
    macs: int


def conv_calls(module: nn.Module, x: torch.Tensor, channels: int) -> list[ConvCall]:
    """Every conv ``module`` runs on ``x``, in order, with its kind and multiply-adds."""
    calls: list[ConvCall] = []

    def hook(conv: nn.Conv2d, _inputs, out: torch.Tensor) -> None:
        k = conv.kernel_size[0]
        macs = out.numel() * (conv.in_channels // conv.groups) * k * k
        calls.append(ConvCall(conv_kind(k, conv.groups, conv.in_channels, conv.out_channels, channels), k, macs))

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.inference_mode():
            module(x)
    finally:
        for h in handles:
            h.remove()
    return calls


def _macs_by_kind(calls: Sequence[ConvCall]) -> dict[str, int]:
    macs: dict[str, int] = defaultdict(int)
    for c in calls:
        macs[c.kind] += c.macs
    return macs


def profile_onnxruntime(path: Path, x: np.ndarray, threads: int, runs: int, channels: int) -> dict[str, KindTime]:
    """Per-kind kernel time (median over ``runs`` after one warm-up) of an ONNX file in onnxruntime."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="carn-profile-") as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.log_severity_level = 3
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(runs + 1):
            session.run(None, {session.get_inputs()[0].name: x})
        events = json.loads(Path(session.end_profiling()).read_text())
    return ort_kinds(events, channels)


def ort_kinds(events: Sequence[dict], channels: int) -> dict[str, KindTime]:
    """onnxruntime profiler events (native, or ONNX Runtime Web's) grouped by CARN layer kind: each
    kernel's median over the runs after the first, a conv classified by its input and weight
    shapes as the event records them (logical NCHW shapes, also for NCHWc kernels)."""
    durations: dict[str, list[float]] = defaultdict(list)
    kinds: dict[str, str] = {}
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        name = e["name"][: -len("_kernel_time")]
        durations[name].append(e["dur"] / 1e3)  # us -> ms
        kinds.setdefault(name, _event_kind(e.get("args", {}), channels))
    out: dict[str, KindTime] = {}
    for name, times in durations.items():
        entry = out.setdefault(kinds[name], KindTime(kinds[name]))
        entry.calls += 1
        entry.ms += float(np.median(times[1:] or times))
    return out


def _event_kind(args: dict, channels: int) -> str:
    """The layer kind of one profiled kernel, from its op type and recorded shapes."""
    op = args.get("op_name", "?")
    shapes = [next(iter(s.values()), []) for s in args.get("input_type_shape", [])]
    if op in ("Conv", "FusedConv", "QLinearConv") or (op.startswith("Conv") and len(shapes) > 1):
        weight = shapes[3] if op == "QLinearConv" else shapes[1]  # QLinearConv: x, x scale, x zero point, w
        if len(weight) == 4 and len(shapes[0]) == 4 and weight[1]:
            c_in, c_out, k = shapes[0][1], weight[0], weight[2]
            return conv_kind(k, max(c_in // weight[1], 1), c_in, c_out, channels)
    return op_kind(op)


def profile_executorch(path: Path, x: torch.Tensor, runs: int, convs: Sequence[ConvCall]) -> dict[str, KindTime]:
    """Per-kind operator time (median over ``runs``) of a ``.pte`` in ExecuTorch, from its ETDump.

    XNNPACK names its operators (``Convolution (NHWC, F32) IGEMM``, ``Fully Connected`` for a
    1x1 conv, ``Copy`` for a concat); the k-th conv-like operator is the k-th conv PyTorch runs
    (same graph order), which gives its layer kind. If the counts differ, convs keep XNNPACK's names.
    """
    import warnings

    from executorch.devtools import Inspector
    from executorch.runtime import Runtime

    from ..runtimes.quiet import captured_output
    from ..runtimes.runner_executorch import follow_torch_threads

    with tempfile.TemporaryDirectory(prefix="carn-etdump-") as tmp, captured_output():
        follow_torch_threads()
        program = Runtime.get().load_program(path, enable_etdump=True)
        method = program.load_method("forward")
        for _ in range(runs + 1):  # the first is a warm-up, dropped below
            method.execute([x.contiguous()])
        dump = Path(tmp) / "run.etdp"
        program.write_etdump_result_to_file(str(dump), str(Path(tmp) / "debug.bin"))
        with warnings.catch_warnings():  # no debug buffer was asked for, and it says so
            warnings.simplefilter("ignore")
            inspector = Inspector(etdump_path=str(dump))
    return _etdump_kinds(inspector, convs)


def _etdump_kinds(inspector, convs: Sequence[ConvCall]) -> dict[str, KindTime]:
    events = [e for block in inspector.event_blocks if block.name == "Execute" for e in block.events
              if e.perf_data is not None and not e.name.startswith(("Method::", "Program::", "DELEGATE_CALL",
                                                                     "OPERATOR_CALL"))]
    conv_like = [e for e in events if e.name.startswith(("Convolution", "Fully Connected"))]
    matched = len(conv_like) == len(convs)
    conv_kinds = iter(c.kind for c in convs)
    out: dict[str, KindTime] = {}
    for e in events:
        if e.name.startswith(("Convolution", "Fully Connected")):
            kind = next(conv_kinds) if matched else e.name.split(" #")[0]
        else:
            kind = op_kind(e.name.split(" #")[0])
        entry = out.setdefault(kind, KindTime(kind))
        entry.calls += 1
        entry.ms += float(np.median(e.perf_data.raw[1:] or e.perf_data.raw))
    return out


#: Per-layer profilers by the name a target declares (``Target.profiler``): (artifact, NCHW input,
#: threads, runs, body channels, the model's conv calls) -> time per layer kind.
PROFILERS: dict[str, Callable[..., dict[str, KindTime]]] = {
    "onnxruntime": lambda path, x, threads, runs, channels, convs: profile_onnxruntime(path, x, threads, runs,
                                                                                     channels),
    "executorch": lambda path, x, threads, runs, channels, convs: profile_executorch(path, torch.from_numpy(x),
                                                                                    runs, convs),
}


def profiled_backends() -> dict[str, str]:
    """Backend name -> target, for every target that declares a profiler (in target order)."""
    from ..export import get_target, list_targets

    targets = [get_target(t) for t in list_targets()]
    return {t.backend: t.name for t in targets if t.profiler and t.backend}


@dataclass
class ProfileSettings:
    """What to profile: the paper's 720p output, CARN-M, every scale, both graphs."""

    hr: WxH = WxH(1280, 720)
    models: Sequence[str] = ("carn-m",)
    scales: Sequence[int] = (2, 3, 4)
    backends: Sequence[str] = field(default_factory=lambda: tuple(profiled_backends()))
    graphs: Sequence[str] = GRAPHS
    threads: int = 2
    runs: int = 3
    notes: list[str] = field(default_factory=list)


def run_profile(settings: ProfileSettings, progress: Callable[[str], None] | None = None) -> dict:
    """Profile every (model, scale, backend, graph); returns the report (see docs/benchmark.md)."""
    from ..export import export_model, get_target, optimized_module, per_scale_module
    from ..runtimes import parse_shape
    from .suite import each_model, graph_rewrites, lr_size

    say = progress or (lambda _m: None)
    profiled = profiled_backends()
    torch.set_num_threads(settings.threads)
    report: dict = {"kind": "profile", "machine": describe_machine(settings.threads),
                    "settings": {"hr": str(WxH(*settings.hr)), "threads": settings.threads, "runs": settings.runs},
                    "ceilings": {}, "profiles": [], "notes": list(settings.notes)}
    with tempfile.TemporaryDirectory(prefix="carn-profile-") as tmp:
        workdir = Path(tmp)
        for name, net, weights_arg in each_model(settings.models, workdir, report["notes"]):
            for scale in settings.scales:
                lr = lr_size(settings.hr, scale)
                say(f"ceiling at {lr}")
                ceiling = measure_ceiling(lr.width, lr.height, settings.threads)
                report["ceilings"][str(scale)] = ceiling.to_json()
                x = np.random.default_rng(0).random((1, 3, lr.height, lr.width), dtype=np.float32)
                for graph in settings.graphs:
                    module, applied = optimized_module(per_scale_module(net, scale), graph_rewrites(graph))
                    convs = conv_calls(module, torch.from_numpy(x), net.config.channels)
                    macs = _macs_by_kind(convs)
                    for backend in settings.backends:
                        say(f"{name} x{scale} {backend} {graph}: exporting")
                        target = get_target(profiled[backend])
                        (result,) = export_model(weights=weights_arg, targets=[target.name], scales=[scale],
                                                 shape=parse_shape(f"{lr.height}x{lr.width}"),
                                                 out_dir=workdir / f"{target.name}-{graph}", force=True,
                                                 rewrites=applied)
                        say(f"{name} x{scale} {backend} {graph}: profiling")
                        kinds = PROFILERS[target.profiler](result.artifact, x, settings.threads, settings.runs,
                                                           net.config.channels, convs)
                        for kind, n in macs.items():
                            if kind in kinds:
                                kinds[kind].macs = n
                        total = sum(k.ms for k in kinds.values())
                        rows = sorted(kinds.values(), key=lambda k: -k.ms)
                        report["profiles"].append({
                            "model": name, "scale": scale, "backend": backend, "graph": graph,
                            "rewrites": applied, "lr_size": str(lr), "total_ms": round(total, 1),
                            "total_gmacs": round(sum(macs.values()) / 1e9, 2),
                            "kinds": [k.to_json(total, ceiling.macs_per_s) for k in rows]})
    return report


def profile_markdown(report: dict) -> str:
    """The profile report as Markdown: one table per (model, scale, backend, graph)."""
    m = report["machine"]
    lines = ["# carn-bench --profile", "",
             f"Machine: {m['cpu']} ({m['arch']}, {m['usable_cores']} usable cores), {m['os']}; "
             f"torch {m['torch']}; {report['settings']['threads']} threads. Output {report['settings']['hr']}; "
             f"per-kind time is the sum of its operators' median kernel time over {report['settings']['runs']} runs.",
             ""]
    for scale, c in sorted(report["ceilings"].items()):
        lines.append(f"- ceiling x{scale}: {c['layer']}: {c['gmacs_per_s']} GMAC/s ({c['engine']})")
    for p in report["profiles"]:
        rewrites = ", ".join(p["rewrites"]) or "none"
        lines += ["", f"## {p['model']} x{p['scale']}, {p['backend']}, {p['graph']} graph (rewrites: {rewrites})", "",
                  f"Operator time {p['total_ms']} ms for {p['total_gmacs']} GMAC (LR {p['lr_size']}).", "",
                  "| layer kind | ops | ms | share | GMAC | GMAC/s | of ceiling |", "|---|---|---|---|---|---|---|"]
        for k in p["kinds"]:
            def fmt(v, spec: str = "") -> str:
                return "-" if v is None else format(v, spec)

            lines.append(f"| {k['kind']} | {k['calls']} | {k['ms']:.1f} | {fmt(k['share'], '.1%')} | "
                         f"{fmt(k['gmacs'], '.2f')} | {fmt(k['gmacs_per_s'])} | {fmt(k['of_ceiling'], '.0%')} |")
    if report["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"

"""The runtimes a web site can carry, what each runs, and which one runs each backend by default.

One place for the decisions ``carn-export --target web --web-runtime`` and ``--precision``
expose. The defaults are measured, not assumed: ``carn-web bench`` on the 2-core x86-64 machine
of ``benchmarks/web-x86_64-2core/report.md`` (same page, image and threads, one run) found
LiteRT.js the faster WebAssembly runtime in fp32 and in int8; WebGPU's speed cannot be measured
here (headless Chromium has only a software adapter), and LiteRT.js does not run these models
fully on WebGPU, so ONNX Runtime Web stays the WebGPU runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class WebRuntime:
    """A JavaScript runtime the page can load, and the model file it runs."""

    name: str  # site.json key and --web-runtime value
    label: str  # what the page's status line says
    #: Page backend ("wasm", "webgpu") -> the precisions the runtime runs there.
    runs: dict[str, tuple[str, ...]]
    member_suffix: str  # the model file it runs
    layout: str  # the model's tensor layout
    #: Why a precision ("fp16") or a backend ("webgpu", "webgpu fp16") is not offered: a precision's
    #: reason is the export's refusal; the backend ones are here for the record (docs/web.md).
    not_offered: dict[str, str] = field(default_factory=dict)

    @property
    def backends(self) -> tuple[str, ...]:
        return tuple(self.runs)

    def backends_for(self, precision: str) -> tuple[str, ...]:
        """The backends this runtime runs ``precision`` on."""
        return tuple(b for b, precisions in self.runs.items() if precision in precisions)


WEB_RUNTIMES: dict[str, WebRuntime] = {
    "ort": WebRuntime(
        "ort", "ONNX Runtime Web", {"wasm": ("fp32", "fp16", "int8"), "webgpu": ("fp32",)}, ".onnx", "NCHW",
        not_offered={
            "webgpu fp16": "fp16 on WebGPU needs the adapter's shader-f16, which headless Chromium's software "
                           "adapter lacks, so it cannot be verified here",
            "webgpu int8": "ONNX Runtime Web's WebGPU backend has no integer convolution: a QDQ graph would run "
                           "float convs on dequantized weights",
        }),
    "litert": WebRuntime(
        "litert", "LiteRT.js", {"wasm": ("fp32", "int8")}, ".tflite", "NHWC",
        not_offered={
            "webgpu": "LiteRT.js 2.5.3's WebGPU delegate leaves RELU_0_TO_1 on the CPU and reads results back through "
                      "Asyncify, which its threaded build lacks (measured in headless Chromium)",
            "fp16": "LiteRT.js 2.5.3 ran the fp16 .tflite (float16 weights behind DEQUANTIZE) 20-40x slower than "
                    "fp32 up to 128x128 LR px and returned wrong pictures (max abs 1.0) from 128x192 on, where "
                    "ai-edge-litert's interpreter is right (measured in headless Chromium 150, x4)",
        }),
}

#: ``--web-runtime auto``: per precision and backend, the measured fastest runtime that runs it
#: correctly (a backend missing here is not offered at that precision).
DEFAULT_BY_BACKEND: dict[str, dict[str, str]] = {
    "fp32": {"wasm": "litert", "webgpu": "ort"},
    "fp16": {"wasm": "ort"},
    "int8": {"wasm": "litert"},
}

#: ``--web-runtime`` values: a runtime by name, or ``auto`` (:data:`DEFAULT_BY_BACKEND`).
CHOICES = ("auto", *WEB_RUNTIMES)
#: The precisions a web site can be made in.
PRECISIONS = tuple(DEFAULT_BY_BACKEND)


def backends_for(choice: str, precision: str = "fp32") -> dict[str, str]:
    """The runtime each backend runs on for a ``--web-runtime`` choice (``auto`` or a runtime) at
    ``precision``; ``ValueError`` naming what can when the choice cannot make it."""
    if precision not in DEFAULT_BY_BACKEND:
        raise ValueError(f"the web target makes {', '.join(PRECISIONS)} sites, not {precision}")
    if choice == "auto":
        return dict(DEFAULT_BY_BACKEND[precision])
    if choice not in WEB_RUNTIMES:
        raise ValueError(f"--web-runtime {choice!r} is not one of {', '.join(CHOICES)}")
    runtime = WEB_RUNTIMES[choice]
    backends = runtime.backends_for(precision)
    if not backends:
        able = [r.name for r in WEB_RUNTIMES.values() if r.backends_for(precision)]
        why = runtime.not_offered.get(precision, "")
        raise ValueError(f"{runtime.label} does not run {precision} on the page" + (f" ({why})" if why else "")
                         + f"; --web-runtime {' or '.join(['auto', *able])} does")
    return {backend: choice for backend in backends}


def runtimes_for(choice: str, precision: str = "fp32") -> list[str]:
    """The runtimes a site built for ``choice`` at ``precision`` carries, the WebAssembly one first."""
    return list(dict.fromkeys(backends_for(choice, precision).values()))

"""The runtimes a web site can carry, and which one runs each backend by default.

One place for the decision ``carn-export --target web --web-runtime`` exposes. The default is
measured, not assumed: ``carn-web bench`` on the 2-core x86-64 machine of
``benchmarks/web-x86_64-2core/report.md`` (same page, image and threads, one run) found LiteRT.js
the faster WebAssembly runtime for every scale; WebGPU's speed cannot be measured here (headless
Chromium has only a software adapter), and LiteRT.js does not run these models fully on WebGPU
(below), so ONNX Runtime Web stays the WebGPU runtime.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WebRuntime:
    """A JavaScript runtime the page can load, and the model file it runs."""

    name: str  # site.json key and --web-runtime value
    label: str  # what the page's status line says
    backends: tuple[str, ...]  # page backends it runs: "wasm", "webgpu"
    member_suffix: str  # the model file it runs
    layout: str  # the model's tensor layout
    #: Why a backend is not offered (the page and the docs say it).
    not_offered: str = ""


WEB_RUNTIMES: dict[str, WebRuntime] = {
    "ort": WebRuntime("ort", "ONNX Runtime Web", ("wasm", "webgpu"), ".onnx", "NCHW"),
    "litert": WebRuntime(
        "litert", "LiteRT.js", ("wasm",), ".tflite", "NHWC",
        not_offered="WebGPU: LiteRT.js 2.5.3's WebGPU delegate leaves RELU_0_TO_1 on the CPU and reads results back "
                    "through Asyncify, which its threaded build lacks (measured in headless Chromium)",
    ),
}

#: ``--web-runtime auto``: per backend, the measured fastest runtime that runs it correctly.
DEFAULT_BY_BACKEND = {"wasm": "litert", "webgpu": "ort"}

#: ``--web-runtime`` values: a runtime by name, or ``auto`` (:data:`DEFAULT_BY_BACKEND`).
CHOICES = ("auto", *WEB_RUNTIMES)


def backends_for(choice: str) -> dict[str, str]:
    """The runtime each backend runs on for a ``--web-runtime`` choice (``auto`` or a runtime)."""
    if choice == "auto":
        return dict(DEFAULT_BY_BACKEND)
    if choice not in WEB_RUNTIMES:
        raise ValueError(f"--web-runtime {choice!r} is not one of {', '.join(CHOICES)}")
    return {backend: choice for backend in WEB_RUNTIMES[choice].backends}


def runtimes_for(choice: str) -> list[str]:
    """The runtimes a site built for ``choice`` carries, the WebAssembly one first."""
    return list(dict.fromkeys(backends_for(choice).values()))

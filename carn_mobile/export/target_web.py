"""Web: a static page that upscales on the device (one folder, every scale), with the runtime per
backend chosen by measurement (:mod:`carn_mobile.web.runtimes`).

The folder (see :mod:`carn_mobile.web.site`) holds the page, site.json, the runtimes' files
(copied with ``--ort-web DIR`` / ``--litert-js DIR``, else referenced by pinned URL) and one model
per scale and runtime: for ONNX Runtime Web the ``onnx`` target's graph (opset 18, dynamic H/W),
for LiteRT.js the ``litert`` target's NHWC ``.tflite``, which the page re-sizes per tile. Each
model passes parity in headless Chromium through the page itself (runners ``onnxruntime-web``,
``litert-js``) when a browser is available, else in the runtime's Python package.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..parity import StructuralCheck
from ..runtimes import INPUT_NAME, OUTPUT_NAME
from ..web import site as web_site
from ..web.litert_js import LiteRtJsSource
from ..web.ort_web import OrtWebSource, integrity
from ..web.runtimes import CHOICES, PRECISIONS, WEB_RUNTIMES, backends_for, runtimes_for
from .base import ExportOutcome, ExportRequest, Target, TargetOption
from .target_litert import LiteRTTarget
from .target_onnx import OnnxTarget
from .targets import register_target
from .wrapper import SuperResolver

#: The models are the onnx and litert targets' files, converted and checked by them.
_ONNX = OnnxTarget()
_LITERT = LiteRTTarget("NHWC")
#: Ops whose LiteRT kernels hold no size: what lets the page re-size a .tflite by its shapes alone.
SIZE_FREE_OPS = frozenset({"ADD", "CONCATENATION", "CONV_2D", "DEPTH_TO_SPACE", "DEPTHWISE_CONV_2D", "DEQUANTIZE",
                           "MUL", "QUANTIZE", "RELU", "RELU_0_TO_1", "SPLIT", "SUB"})


@register_target
class WebTarget(Target):
    name = "web"
    suffix = ".web"
    runners = ("onnxruntime-web", "onnxruntime")
    backend = None  # runs in a browser: carn-web bench measures it
    rank = 15
    description = "static web page: LiteRT.js (WebAssembly) and ONNX Runtime Web (WebGPU), every scale, fp32/fp16/int8"
    requires = OnnxTarget.requires
    precisions = PRECISIONS
    #: The ONNX Runtime Web member's quantizer (the LiteRT.js member's is the litert target's).
    quantizer = OnnxTarget.quantizer
    bundled = True
    member_suffix = ".onnx"
    options = (
        TargetOption("--ort-web", "ort_web", metavar="DIR",
                     help="copy ONNX Runtime Web from this dist folder (node_modules/onnxruntime-web/dist) into the "
                          "site, so it works offline (default: load the pinned release by URL, integrity-checked)"),
        TargetOption("--ort-web-url", "ort_web_url", metavar="URL",
                     help="base URL of onnxruntime-web's dist folder to load instead"),
        TargetOption("--web-runtime", "web_runtime", choices=CHOICES,
                     help="runtime(s) the page carries: auto (default: per backend and precision the measured "
                          "fastest; fp32: LiteRT.js for WebAssembly and ONNX Runtime Web for WebGPU, fp16: ONNX "
                          "Runtime Web, int8: LiteRT.js), ort (ONNX Runtime Web) or litert (LiteRT.js, "
                          "WebAssembly only, fp32 and int8)"),
        TargetOption("--litert-js", "litert_js", metavar="DIR",
                     help="copy LiteRT.js from this node_modules/@litertjs folder into the site (default: load the "
                          "pinned release by URL, integrity-checked)"),
    )
    #: Which runtime this target's members are for (the base class: ONNX Runtime Web).
    runtime = "ort"

    def __init__(self, ort: OrtWebSource | None = None, litert: LiteRtJsSource | None = None,
                 choice: str = "auto") -> None:
        self.ort = ort
        self.litert = litert
        self.choice = choice

    def with_options(self, ort_web: str | Path | None = None, ort_web_url: str | None = None,
                     web_runtime: str | None = None, litert_js: str | Path | None = None, **rest: Any) -> Target:
        super().with_options(**rest)
        choice = web_runtime or "auto"
        if choice not in CHOICES:
            raise ValueError(f"--web-runtime {choice!r} is not one of {', '.join(CHOICES)}")
        carried = [name for p in PRECISIONS for name in _runtimes_or_none(choice, p)]
        if "ort" not in carried and (ort_web or ort_web_url):
            raise ValueError(f"--ort-web/--ort-web-url apply to sites with ONNX Runtime Web; --web-runtime {choice} "
                             "has none")
        if "litert" not in carried and litert_js:
            raise ValueError(f"--litert-js applies to sites with LiteRT.js; --web-runtime {choice} has none")
        return WebTarget(OrtWebSource.from_options(ort_web, ort_web_url), LiteRtJsSource.from_option(litert_js), choice)

    def parts(self, precision: str | None = None) -> tuple[Target, ...]:
        """One member target per runtime the site carries at ``precision`` (the ORT one is this
        class, LiteRT.js the subclass); ``ValueError`` when the runtime choice cannot make it."""
        kinds = {"ort": WebTarget, "litert": WebLiteRtMember}
        names = runtimes_for(self.choice, precision or self.default_precision)
        return tuple(kinds[name](self.ort, self.litert, self.choice) for name in names)

    @property
    def source(self) -> OrtWebSource:
        return self.ort or OrtWebSource.from_options()

    @property
    def litert_source(self) -> LiteRtJsSource:
        return self.litert or LiteRtJsSource.from_option()

    def start_bundle(self, folder: Path, requests: Sequence[ExportRequest], weights: Any) -> None:
        first = requests[0]
        installers = {"ort": self.source.install, "litert": self.litert_source.install}
        runtimes = {name: installers[name](folder) for name in runtimes_for(self.choice, first.precision)}
        web_site.start_site(folder, first.model, first.precision, runtimes, backends_for(self.choice, first.precision),
                            weights=weights.label, license=weights.license)

    def _convert(self, module: SuperResolver, request: ExportRequest, out: Path) -> ExportOutcome:
        return _ONNX.export(module, request, out)

    def export(self, module: SuperResolver, request: ExportRequest, out: Path) -> ExportOutcome:
        from ..upscaling.receptive_field import receptive_field

        outcome = self._convert(module, request, out)
        folder = web_site.site_of_model(out)
        # The network's receptive field (from its config), not the rewritten graph's hooks.
        overlap = receptive_field(module.net.config, request.scale).overlap
        per_pixel = web_site.bytes_per_lr_pixel(module)
        tiles = {backend: web_site.tile_for_budget(per_pixel, overlap, budget)
                 for backend, budget in web_site.TENSOR_BUDGET.items()}
        if request.shape.kind == "dynamic":
            max_side = request.shape.bounds[1]
            tiles = {b: min(t, max_side - 2 * overlap) for b, t in tiles.items()}
        else:
            max_side = None
        tiles = {b: t for b, t in tiles.items() if b in WEB_RUNTIMES[self.runtime].backends_for(request.precision)}
        entry = web_site.SiteModel(
            scale=request.scale, runtime=self.runtime, file=f"{web_site.MODELS_FOLDER}/{out.name}",
            integrity=integrity(out), overlap=overlap, tile=tiles, input=INPUT_NAME, output=OUTPUT_NAME,
            max_side=max_side, layout=request.layout,
        )
        web_site.add_model(folder, entry)
        tile_text = ", ".join(f"{t} LR px ({_BACKEND_LABELS[b]})" for b, t in tiles.items())
        outcome.notes.append(f"{WEB_RUNTIMES[self.runtime].label}: page tiles {tile_text}, overlap {overlap}; "
                             f"largest tensor {per_pixel} B per LR px")
        outcome.details |= {"overlap": overlap, "tile": tiles, "largest_tensor_bytes_per_lr_pixel": per_pixel}
        return outcome

    def _member_checks(self, path: Path, request: ExportRequest, module: SuperResolver) -> list[StructuralCheck]:
        return _ONNX.structural_check(path, request, module)

    def structural_check(self, path: Path, request: ExportRequest, module: SuperResolver) -> list[StructuralCheck]:
        checks = self._member_checks(path, request, module)
        try:
            folder = web_site.site_of_model(path)
            site = web_site.read_site_json(folder)
        except ValueError as exc:
            return [*checks, StructuralCheck("site.json", False, str(exc))]
        listed = [m for m in site["models"] if m["file"] == f"{web_site.MODELS_FOLDER}/{path.name}"]
        ok = len(listed) == 1 and listed[0]["integrity"] == integrity(path)
        checks.append(StructuralCheck("site.json lists the model", ok,
                                      "integrity matches" if ok else f"{path.name} not listed with its hash"))
        missing = [n for n in web_site.PAGE_FILES if not (folder / n).is_file()]
        checks.append(StructuralCheck("page files", not missing, f"missing {missing}" if missing else "present"))
        return checks

    def finish_bundle(self, folder: Path, requests: Sequence[ExportRequest]) -> ExportOutcome:
        site = web_site.read_site_json(folder)
        sizes = web_site.site_size(folder)
        notes = []
        for name in site["runtimes"]:
            record, label = site[name], WEB_RUNTIMES[name].label
            option = {"ort": "--ort-web DIR", "litert": "--litert-js DIR"}[name]
            notes.append(f"{label} {record['version']} copied from {record['from']}: works offline"
                         if record["source"] == "copied" else
                         f"{label} {record['version']} referenced at {record['from']} with integrity hashes "
                         f"(pass {option} for a self-contained folder)")
        runs = ", ".join(f"{_BACKEND_LABELS[b]} on {WEB_RUNTIMES[r].label}" for b, r in site["backends"].items())
        mb = {k: round(v / 1e6, 2) for k, v in sizes.items()}
        return ExportOutcome(
            notes=[*notes, f"the page runs {runs}",
                   f"site {mb['total']} MB (models {mb['models']}, ONNX Runtime Web {mb['ort']}, LiteRT.js "
                   f"{mb['litert']}, page {mb['page']})",
                   f"serve it with: carn-web serve {folder.name}"],
            details={"runtimes": {name: {k: site[name][k] for k in ("version", "source", "from")}
                                  for name in site["runtimes"]},
                     "backends": site["backends"], "size_bytes": sizes, "models": site["models"]},
        )

    def unsupported(self, request: ExportRequest) -> str | None:
        if request.precision in self.precisions and not WEB_RUNTIMES[self.runtime].backends_for(request.precision):
            return f"{WEB_RUNTIMES[self.runtime].label} does not run {request.precision} on the page"
        return super().unsupported(request)

    def quantized_reference(self, path: Path, request: ExportRequest,
                            module: SuperResolver) -> Callable[[np.ndarray], np.ndarray]:
        return _ONNX.quantized_reference(path, request, module)

    def from_manifest(self, manifest: dict[str, Any]) -> Target:
        """The member target of an artifact's manifest: LiteRT.js for a ``.tflite``, else this one."""
        if str(manifest.get("artifact", "")).endswith(WebLiteRtMember.member_suffix):
            return WebLiteRtMember(self.ort, self.litert, self.choice)
        return self

    def versions(self) -> dict[str, str | None]:
        return _ONNX.versions() | {"onnxruntime-web": self.source.version}


_BACKEND_LABELS = {"wasm": "WebAssembly", "webgpu": "WebGPU"}


def _runtimes_or_none(choice: str, precision: str) -> list[str]:
    """The runtimes ``choice`` carries at ``precision``, or none where it cannot make it."""
    try:
        return runtimes_for(choice, precision)
    except ValueError:
        return []


class WebLiteRtMember(WebTarget):
    """A web site's LiteRT.js model: the litert target's NHWC ``.tflite``, run by the page.

    Not registered: the ``web`` target makes these members when its site carries LiteRT.js.
    """

    runtime = "litert"
    member_suffix = ".tflite"
    runners = ("litert-js", "litert")
    layout = "NHWC"
    extra = LiteRTTarget.extra
    requires = LiteRTTarget.requires

    quantizer = LiteRTTarget.quantizer
    refused_rewrites = LiteRTTarget.refused_rewrites

    def _convert(self, module: SuperResolver, request: ExportRequest, out: Path) -> ExportOutcome:
        return _LITERT.export(module, request, out)

    def quantized_reference(self, path: Path, request: ExportRequest,
                            module: SuperResolver) -> Callable[[np.ndarray], np.ndarray]:
        return _LITERT.quantized_reference(path, request, module)

    def _member_checks(self, path: Path, request: ExportRequest, module: SuperResolver) -> list[StructuralCheck]:
        from .target_litert import analyze

        checks = _LITERT.structural_check(path, request, module)
        # The Android GPU delegate's op set is the litert target's concern, not the page's.
        checks = [c for c in checks if c.name != "GPU delegate ops"]
        outside = sorted(set(analyze(path)["op_counts"]) - SIZE_FREE_OPS)
        checks.append(StructuralCheck("the page can re-size it", not outside,
                                      "every op holds no size" if not outside else f"size-bound ops {outside}"))
        return checks

    def versions(self) -> dict[str, str | None]:
        return _LITERT.versions() | {"litert-js": self.litert_source.version}

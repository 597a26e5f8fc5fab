"""Web: a static page that upscales on the device with ONNX Runtime Web (one folder, every scale).

The folder (see :mod:`carn_mobile.web.site`) holds the page, one ONNX model per scale (the
``onnx`` target's graph: opset 18, dynamic H/W), site.json and, with ``--ort-web DIR``, the
ONNX Runtime Web files. Each model passes parity in headless Chromium through the page itself
(runner ``onnxruntime-web``) when a browser is available, else in Python onnxruntime.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..parity import StructuralCheck
from ..runtimes import INPUT_NAME, OUTPUT_NAME
from ..web import site as web_site
from ..web.ort_web import OrtWebSource, integrity
from .base import ExportOutcome, ExportRequest, Target, TargetOption
from .target_onnx import OnnxTarget
from .targets import register_target
from .wrapper import SuperResolver

#: The models are the onnx target's graphs, converted and checked by it.
_ONNX = OnnxTarget()


@register_target
class WebTarget(Target):
    name = "web"
    suffix = ".web"
    runners = ("onnxruntime-web", "onnxruntime")
    backend = None  # runs in a browser: carn-web bench measures it
    rank = 15
    description = "static web page with ONNX Runtime Web (WebAssembly SIMD + threads, WebGPU), every scale"
    requires = OnnxTarget.requires
    precisions = ("fp32",)
    precision_note = (
        "fp16 is not offered yet: it was not measured in ONNX Runtime Web's WebAssembly backend, which every "
        "device has; int8 is not done for the web yet (docs/int8.md)"
    )
    bundled = True
    member_suffix = ".onnx"
    options = (
        TargetOption("--ort-web", "ort_web", metavar="DIR",
                     help="copy ONNX Runtime Web from this dist folder (node_modules/onnxruntime-web/dist) into the "
                          "site, so it works offline (default: load the pinned release by URL, integrity-checked)"),
        TargetOption("--ort-web-url", "ort_web_url", metavar="URL",
                     help="base URL of onnxruntime-web's dist folder to load instead"),
    )

    def __init__(self, ort: OrtWebSource | None = None) -> None:
        self.ort = ort

    def with_options(self, ort_web: str | Path | None = None, ort_web_url: str | None = None, **rest: Any) -> Target:
        super().with_options(**rest)
        return WebTarget(OrtWebSource.from_options(ort_web, ort_web_url))

    @property
    def source(self) -> OrtWebSource:
        return self.ort or OrtWebSource.from_options()

    def start_bundle(self, folder: Path, requests: Sequence[ExportRequest], weights: Any) -> None:
        first = requests[0]
        web_site.start_site(folder, first.model, first.precision, self.source,
                            weights=weights.label, license=weights.license)

    def export(self, module: SuperResolver, request: ExportRequest, out: Path) -> ExportOutcome:
        from ..upscaling.receptive_field import receptive_field

        outcome = _ONNX.export(module, request, out)
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
        entry = web_site.SiteModel(
            scale=request.scale, file=f"{web_site.MODELS_FOLDER}/{out.name}", integrity=integrity(out),
            overlap=overlap, tile=tiles, input=INPUT_NAME, output=OUTPUT_NAME, max_side=max_side,
        )
        web_site.add_model(folder, entry)
        outcome.notes.append(f"page tiles: {tiles['wasm']} LR px (WebAssembly), {tiles['webgpu']} (WebGPU), "
                             f"overlap {overlap}; largest tensor {per_pixel} B per LR px")
        outcome.details |= {"overlap": overlap, "tile": tiles, "largest_tensor_bytes_per_lr_pixel": per_pixel}
        return outcome

    def structural_check(self, path: Path, request: ExportRequest, module: SuperResolver) -> list[StructuralCheck]:
        checks = _ONNX.structural_check(path, request, module)
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
        source = site["ort"]["source"]
        note = (f"ONNX Runtime Web {site['ort']['version']} copied from {site['ort']['from']}: works offline"
                if source == "copied" else
                f"ONNX Runtime Web {site['ort']['version']} referenced at {site['ort']['from']} with integrity "
                "hashes (pass --ort-web DIR for a self-contained folder)")
        mb = {k: round(v / 1e6, 2) for k, v in sizes.items()}
        return ExportOutcome(
            notes=[note,
                   f"site {mb['total']} MB (models {mb['models']}, ONNX Runtime Web {mb['ort']}, page {mb['page']})",
                   f"serve it with: carn-web serve {folder.name}"],
            details={"ort_web": {k: site["ort"][k] for k in ("version", "source", "from")},
                     "size_bytes": sizes, "models": site["models"]},
        )

    def versions(self) -> dict[str, str | None]:
        return _ONNX.versions() | {"onnxruntime-web": self.source.version}

"""The web site folder that ``carn-export --target web`` writes: page, script, models and site.json.

Layout::

    carn-m_x2-3-4_fp32.web/
      index.html  carn-web.js  tflite-size.js  carn-web.css   the page (ES modules, no build step)
      site.json                          what the page reads: runtimes, models, tiling, runtime files
      models/carn-m_x2_fp32.onnx(.json)  one parity-gated model (and manifest) per scale and runtime
      models/carn-m_x2_fp32.tflite(.json)
      ort/...  litert/...                ONNX Runtime Web / LiteRT.js, when copied

The page tiles like ``carn-upscale`` (same overlap rule), with a tile size per backend that
keeps the largest intermediate tensor inside a memory budget (:data:`TENSOR_BUDGET`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

SITE_FORMAT = "carn-mobile/web-site@2"
SITE_JSON = "site.json"
MODELS_FOLDER = "models"
#: The page's own files, shipped in ``carn_mobile/web/assets``.
PAGE_FILES = ("index.html", "carn-web.js", "tflite-size.js", "carn-web.css")
#: Largest output the page accepts (RGBA canvas memory: 4 bytes a pixel, plus the comparison).
MAX_OUTPUT_PIXELS = 40_000_000
#: Bytes the largest intermediate tensor of one tile may take, per backend. WebGPU's is the
#: default ``maxStorageBufferBindingSize`` (128 MiB) that every adapter guarantees; for
#: WebAssembly (4 GiB address space, less on phones) it is a choice that keeps a tile's working
#: set well under 1 GiB while the overlap costs little compute.
TENSOR_BUDGET = {"wasm": 256 * 2**20, "webgpu": 128 * 2**20}
#: Tiles are multiples of this many LR pixels.
TILE_STEP = 8


def asset(name: str) -> bytes:
    """One of the page's shipped files."""
    return resources.files("carn_mobile.web").joinpath("assets", name).read_bytes()


@torch.no_grad()
def bytes_per_lr_pixel(module: nn.Module, probe: int = 16) -> int:
    """Bytes of the largest float32 tensor ``module`` makes, per LR pixel of its input.

    Measured with forward hooks on a ``probe x probe`` input: every layer's output size grows
    with the input area, so the ratio holds for any tile.
    """
    largest = 0

    def hook(_m: nn.Module, _i: Any, out: Any) -> None:
        nonlocal largest
        if isinstance(out, torch.Tensor):
            largest = max(largest, out.numel())

    handles = [m.register_forward_hook(hook) for m in module.modules()]
    try:
        module(torch.zeros(1, 3, probe, probe))
    finally:
        for h in handles:
            h.remove()
    return math.ceil(4 * largest / (probe * probe))


def tile_for_budget(bytes_per_pixel: int, overlap: int, budget: int) -> int:
    """Largest tile core (LR px, a multiple of :data:`TILE_STEP`) whose box fits ``budget``."""
    box = math.isqrt(budget // bytes_per_pixel)
    tile = (box - 2 * overlap) // TILE_STEP * TILE_STEP
    if tile < TILE_STEP:
        raise ValueError(f"a {budget // 2**20} MiB tensor budget leaves no tile after the {overlap}-px overlap")
    return tile


@dataclass(frozen=True)
class SiteModel:
    """One model of the site, as site.json lists it."""

    scale: int
    runtime: str  # a key of carn_mobile.web.runtimes.WEB_RUNTIMES
    file: str  # relative to the site
    integrity: str
    overlap: int
    tile: dict[str, int]
    input: str
    output: str
    max_side: int | None
    layout: str  # NCHW (ONNX) or NHWC (.tflite)

    def to_json(self) -> dict[str, Any]:
        return {"scale": self.scale, "runtime": self.runtime, "layout": self.layout, "file": self.file,
                "integrity": self.integrity, "overlap": self.overlap,
                "tile": self.tile, "input": self.input, "output": self.output, "maxSide": self.max_side}


def start_site(folder: Path, model: str, precision: str, runtimes: dict[str, dict[str, Any]],
               backends: dict[str, str], weights: str, license: str) -> None:
    """Write the page and a site.json with no models yet.

    ``runtimes`` maps each runtime the site carries to its site.json record (what its source's
    ``install`` returned); ``backends`` names the runtime each backend runs on by default.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MODELS_FOLDER).mkdir(exist_ok=True)
    for name in PAGE_FILES:
        (folder / name).write_bytes(asset(name))
    site = {
        "format": SITE_FORMAT,
        "model": model,
        "precision": precision,
        "weights": weights,
        "license": license,
        "maxOutputPixels": MAX_OUTPUT_PIXELS,
        "runtimes": list(runtimes),
        "backends": backends,
        **runtimes,
        "models": [],
    }
    write_site_json(folder, site)


def read_site_json(folder: Path) -> dict[str, Any]:
    path = folder / SITE_JSON
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{folder} is not a carn-mobile web site ({SITE_JSON}: {exc})") from None
    if data.get("format") != SITE_FORMAT:
        raise ValueError(f"{path} is not a {SITE_FORMAT} file")
    return data


def write_site_json(folder: Path, site: dict[str, Any]) -> None:
    (folder / SITE_JSON).write_text(json.dumps(site, indent=2) + "\n")


def add_model(folder: Path, entry: SiteModel) -> None:
    """List ``entry`` in the site's site.json (replacing a model of the same scale and runtime)."""
    site = read_site_json(folder)
    models = [m for m in site["models"] if (m["scale"], m["runtime"]) != (entry.scale, entry.runtime)]
    site["models"] = sorted([*models, entry.to_json()], key=lambda m: (m["scale"], m["runtime"]))
    write_site_json(folder, site)


def site_of_model(model_file: Path) -> Path:
    """The site folder holding ``model_file`` in its ``models/`` folder.

    While a site is being written, a model sits one temporary folder deeper (atomic writes),
    so the nearest parent with a site.json and a models/ folder is taken.
    """
    path = model_file.resolve()
    for folder in list(path.parents)[:3]:
        if (folder / SITE_JSON).is_file() and (folder / MODELS_FOLDER).is_dir():
            return folder
    raise ValueError(f"{model_file} is not inside a web site's {MODELS_FOLDER}/ folder (no {SITE_JSON} above it)")


def site_size(folder: Path) -> dict[str, int]:
    """Bytes per part of the site: page, models, each copied runtime's folder (ort, litert), total."""
    parts = {"page": 0, "models": 0, "ort": 0, "litert": 0}
    for f in folder.rglob("*"):
        if f.is_file():
            top = f.relative_to(folder).parts[0] if len(f.relative_to(folder).parts) > 1 else ""
            parts[top if top in parts else "page"] += f.stat().st_size
    return parts | {"total": sum(parts.values())}

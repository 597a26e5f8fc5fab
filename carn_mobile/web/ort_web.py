"""Where a web site's ONNX Runtime Web comes from: copied from a local ``dist`` folder, or a pinned URL.

Nothing is downloaded at export time. With ``--ort-web DIR`` (e.g.
``node_modules/onnxruntime-web/dist``) the files are copied into the site, which then works
offline; otherwise the page loads the pinned release from ``--ort-web-url`` (default: the npm
package on a public CDN) and checks every file against the integrity hashes below, which were
taken from the npm package of :data:`PINNED_VERSION`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

#: The onnxruntime-web release the page is written and tested against.
PINNED_VERSION = "1.30.0"
#: Base URL of that release's ``dist`` folder when the site references it instead of copying it.
DEFAULT_URL = f"https://cdn.jsdelivr.net/npm/onnxruntime-web@{PINNED_VERSION}/dist/"

#: Per backend: the ES module, the threaded WebAssembly loader it imports, and the binary.
BUILDS: dict[str, dict[str, str]] = {
    "wasm": {"module": "ort.wasm.min.mjs", "glue": "ort-wasm-simd-threaded.mjs",
             "wasm": "ort-wasm-simd-threaded.wasm"},
    "webgpu": {"module": "ort.webgpu.min.mjs", "glue": "ort-wasm-simd-threaded.asyncify.mjs",
               "wasm": "ort-wasm-simd-threaded.asyncify.wasm"},
}

#: Subresource-integrity hashes of :data:`PINNED_VERSION`'s files (sha384, from its npm package).
PINNED_INTEGRITY: dict[str, str] = {
    "ort.wasm.min.mjs": "sha384-SfFfy/pvthiOsgaw3KX0bV5TfQ6Iq+oY9KutMe4SxIuHH4cl+DCSD4rTsYOoG1tJ",
    "ort-wasm-simd-threaded.mjs": "sha384-XcXA/MtAf0WpB8e023xQH9CM7RIjiugakT7x99DIwpFf7k56BIFFcAPerIF7FDad",
    "ort-wasm-simd-threaded.wasm": "sha384-vjBJ1z7qrhkTyYsNqKeF6c7N+nOJSU94czEo+tvZcu8G75JparGq9kB+kTnEUNVM",
    "ort.webgpu.min.mjs": "sha384-FPQBMbud8ICuP0Ii+Gr95KWEX9pKHtUC3lacIp0aPI8WYluKvTsEGQ3AE2Ze3QlL",
    "ort-wasm-simd-threaded.asyncify.mjs": "sha384-qViEcCGzsR/m8nlQwIsbYh7afN4thuraqFYDQY6huvmoLVoZq/eYawQ1wrv8nnhA",
    "ort-wasm-simd-threaded.asyncify.wasm": "sha384-EPVDLTxuO663dkZO/pcKJF6vOyyfq/5z9FY1oksN0UWFX2ABH4wDDZQHeNoUleWR",
}

#: Folder inside the site that holds copied files.
SITE_FOLDER = "ort"


class OrtWebError(ValueError):
    """The ONNX Runtime Web source given cannot be used (message says what to do)."""


def integrity(path: Path) -> str:
    """Subresource-integrity value (sha384) of a file, as site.json records it for every file."""
    digest = hashlib.sha384(path.read_bytes()).digest()
    return "sha384-" + base64.b64encode(digest).decode()


def file_names(backends: tuple[str, ...] = tuple(BUILDS)) -> list[str]:
    return [name for b in backends for name in BUILDS[b].values()]


def local_version(dist: Path) -> str | None:
    """The npm package version of a ``dist`` folder (from the ``package.json`` above it)."""
    manifest = dist.parent / "package.json"
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    return data.get("version") if data.get("name") == "onnxruntime-web" else None


@dataclass(frozen=True)
class OrtWebSource:
    """A checked source of ONNX Runtime Web: ``dist`` (local copy) or ``url`` (pinned reference)."""

    dist: Path | None = None
    url: str | None = None

    @classmethod
    def from_options(cls, dist: str | Path | None = None, url: str | None = None) -> OrtWebSource:
        """Validate ``--ort-web DIR`` / ``--ort-web-url URL`` (at most one; neither = the pinned URL)."""
        if dist is not None and url is not None:
            raise OrtWebError("give --ort-web DIR or --ort-web-url URL, not both")
        if dist is None:
            url = url or DEFAULT_URL
            if not url.startswith(("https://", "http://")):
                raise OrtWebError(f"--ort-web-url must be an http(s) URL of onnxruntime-web's dist folder, got {url!r}")
            return cls(url=url if url.endswith("/") else url + "/")
        folder = Path(dist).expanduser()
        if not folder.is_dir():
            raise OrtWebError(f"--ort-web {folder} is not a folder; pass onnxruntime-web's dist folder, "
                              "e.g. node_modules/onnxruntime-web/dist after `npm install onnxruntime-web`")
        missing = [n for n in file_names() if not (folder / n).is_file()]
        if missing:
            raise OrtWebError(f"--ort-web {folder} lacks {', '.join(missing)}: pass onnxruntime-web's dist folder "
                              f"(version {PINNED_VERSION} is the tested one)")
        return cls(dist=folder.resolve())

    @property
    def version(self) -> str | None:
        return local_version(self.dist) if self.dist else PINNED_VERSION

    def install(self, site: Path) -> dict:
        """Copy the files into ``site`` (local source) and return site.json's ``ort`` record."""
        builds: dict[str, dict[str, dict[str, str]]] = {}
        files: dict[str, dict[str, object]] = {}
        if self.dist is not None:
            (site / SITE_FOLDER).mkdir(exist_ok=True)
        for backend, roles in BUILDS.items():
            builds[backend] = {}
            for role, name in roles.items():
                if self.dist is not None:
                    copied = site / SITE_FOLDER / name
                    shutil.copyfile(self.dist / name, copied)
                    entry = {"url": f"{SITE_FOLDER}/{name}", "integrity": integrity(copied)}
                    files[entry["url"]] = {"size_bytes": copied.stat().st_size}
                else:
                    entry = {"url": self.url + name, "integrity": PINNED_INTEGRITY[name]}
                builds[backend][role] = entry
        return {
            "version": self.version,
            "source": "copied" if self.dist is not None else "url",
            "from": str(self.dist) if self.dist is not None else self.url,
            "builds": builds,
            "files": files,
        }

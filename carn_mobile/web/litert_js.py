"""Where a web site's LiteRT.js comes from: copied from a local ``node_modules/@litertjs``, or a pinned URL.

LiteRT.js (npm ``@litertjs/core`` with ``@litertjs/wasm-utils``) runs ``.tflite`` models with
XNNPACK compiled to WebAssembly. It ships one WebAssembly build per feature set; the page picks
one itself (:data:`BUILDS`) and loads it from integrity-checked bytes, as it does ONNX Runtime
Web. Nothing is downloaded at export time: ``--litert-js DIR`` copies the files into the site
(which then works offline), otherwise the page loads the pinned release from a CDN and checks
every file against :data:`PINNED_INTEGRITY`, taken from the npm packages of :data:`PINNED_VERSION`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from .ort_web import integrity

#: The @litertjs/core (and wasm-utils) release the page is written and tested against.
PINNED_VERSION = "2.5.3"
#: The npm registry's scope folder: ``node_modules/@litertjs`` holds ``core`` and ``wasm-utils``.
SCOPE = "@litertjs"
DEFAULT_URL = "https://cdn.jsdelivr.net/npm/"

#: The ES modules: the runtime's API and the loader helper it imports by bare name.
MODULES = {"module": "core/dist/index.js", "utils": "wasm-utils/dist/index.js"}
#: The WebAssembly builds the page chooses from, by the features they need (measured: the first
#: two fail ``WebAssembly.validate`` in a browser without relaxed SIMD):
#: ``threaded`` relaxed SIMD + threads (needs cross-origin isolation), ``relaxed`` relaxed SIMD
#: on one thread, ``compat`` plain SIMD on one thread. (The JSPI build is not shipped.)
BUILDS = {
    "threaded": "core/wasm/litert_wasm_threaded_internal",
    "relaxed": "core/wasm/litert_wasm_internal",
    "compat": "core/wasm/litert_wasm_compat_internal",
}

#: Subresource-integrity hashes (sha384) of :data:`PINNED_VERSION`'s files, from its npm packages.
PINNED_INTEGRITY: dict[str, str] = {
    "core/dist/index.js": "sha384-MapSVJ/DPwvaWpp7q+Bid9O3uY1oB0KOU1QRMP+Mm5zdz5oMme/BUyX6dVAMWnPg",
    "wasm-utils/dist/index.js": "sha384-HIPwlWsctS5BRqrnvJKDVJ8SvqKB0QmiImdr6+hpP7+8UqeMJX/qrBkdfKQV2WZ/",
    "core/wasm/litert_wasm_threaded_internal.js":
        "sha384-yzheND5ZxfO4+9po2DFoaMqr56eo7p10JiuyDXIbNqi2MOTw/8AIm1CtEe5Dqz62",
    "core/wasm/litert_wasm_threaded_internal.wasm":
        "sha384-W0YLgt+poOZCNAm54r2Ga6K2PmHezmLMKtO5RvIFQtK8ji5wvIW56LEwGn4eH0Cb",
    "core/wasm/litert_wasm_internal.js": "sha384-NB/Wc4iozynQO5jzJ2VFoMKbqMvwwFGWxJL/o63IJT6W2JfZbsSLxA2cF6H/mLpQ",
    "core/wasm/litert_wasm_internal.wasm": "sha384-AZ/Ak4CbDpjqpSr8WsnoL3Dcx6bDFA/k9b/jahok1TGHZ2OqIRjLBMiEmiNedhlC",
    "core/wasm/litert_wasm_compat_internal.js":
        "sha384-oh4nb8zDq6eVOpGeZE5gwDOJ16QujHLL8k/HEXt3XiPxr+8zn3YnkXP8P3BlJET1",
    "core/wasm/litert_wasm_compat_internal.wasm":
        "sha384-glAZ6WjS7tLRt89pbTPXvLC1c7DCaVSfL2ngn5gZJiUuPs76fWYJy7ZeFaD0PJXx",
}

#: Folder inside the site that holds copied files.
SITE_FOLDER = "litert"


class LiteRtJsError(ValueError):
    """The LiteRT.js source given cannot be used (message says what to do)."""


def file_names() -> list[str]:
    """Every file the site uses, relative to ``node_modules/@litertjs``."""
    return [*MODULES.values(), *(f"{stem}.{ext}" for stem in BUILDS.values() for ext in ("js", "wasm"))]


def local_version(scope: Path) -> str | None:
    """The version of ``@litertjs/core`` in a ``node_modules/@litertjs`` folder, if it is one."""
    try:
        data = json.loads((scope / "core" / "package.json").read_text())
    except (OSError, ValueError):
        return None
    return data.get("version") if data.get("name") == f"{SCOPE}/core" else None


def _cdn_path(name: str) -> str:
    package, rest = name.split("/", 1)
    return f"{SCOPE}/{package}@{PINNED_VERSION}/{rest}"


@dataclass(frozen=True)
class LiteRtJsSource:
    """A checked source of LiteRT.js: ``scope`` (a local ``node_modules/@litertjs``) or the pinned URL."""

    scope: Path | None = None
    url: str = DEFAULT_URL

    @classmethod
    def from_option(cls, scope: str | Path | None = None) -> LiteRtJsSource:
        """Validate ``--litert-js DIR`` (``None``: the pinned release at the CDN)."""
        if scope is None:
            return cls()
        folder = Path(scope).expanduser()
        missing = [n for n in file_names() if not (folder / n).is_file()]
        if missing:
            raise LiteRtJsError(f"--litert-js {folder} lacks {missing[0]}: pass the node_modules/@litertjs folder "
                                f"of `npm install @litertjs/core@{PINNED_VERSION}`")
        return cls(scope=folder.resolve())

    @property
    def version(self) -> str | None:
        return local_version(self.scope) if self.scope else PINNED_VERSION

    def _entry(self, site: Path, name: str, files: dict[str, dict[str, object]]) -> dict[str, str]:
        if self.scope is None:
            return {"url": self.url + _cdn_path(name), "integrity": PINNED_INTEGRITY[name]}
        package, _, rest = name.partition("/")  # both packages have a dist/index.js
        copied = site / SITE_FOLDER / f"{package}-{Path(rest).name}"
        copied.parent.mkdir(exist_ok=True)
        shutil.copyfile(self.scope / name, copied)
        url = f"{SITE_FOLDER}/{copied.name}"
        files[url] = {"size_bytes": copied.stat().st_size}
        return {"url": url, "integrity": integrity(copied)}

    def install(self, site: Path) -> dict:
        """Copy the files into ``site`` (local source) and return site.json's ``litert`` record."""
        files: dict[str, dict[str, object]] = {}
        record: dict = {role: self._entry(site, name, files) for role, name in MODULES.items()}
        record["builds"] = {build: {"glue": self._entry(site, f"{stem}.js", files),
                                    "wasm": self._entry(site, f"{stem}.wasm", files)}
                            for build, stem in BUILDS.items()}
        return {"version": self.version, "source": "copied" if self.scope else "url",
                "from": str(self.scope) if self.scope else self.url, **record, "files": files}


def offline_routes(record: dict, scope: Path) -> dict[str, str]:
    """For a by-URL site record: each file's URL -> the same file in a local ``@litertjs`` folder."""
    local = {DEFAULT_URL + _cdn_path(name): scope / name for name in file_names()}
    entries = [record["module"], record["utils"], *(f for b in record["builds"].values() for f in b.values())]
    return {e["url"]: str(local[e["url"]]) for e in entries if e["url"] in local}

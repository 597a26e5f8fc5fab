"""Web-site models run by the page itself in headless Chromium: ONNX Runtime Web and LiteRT.js.

The artifact is a model inside an exported site (``<site>.web/models/*.onnx`` or ``*.tflite``).
The runner serves the site on the loopback interface, opens its page and calls the page's own
``carnWeb.runTensor`` (the code path the page uses for each tile) on the model's runtime, so
parity covers the page's loading of the runtime and the model (for LiteRT.js also its re-sizing
of the ``.tflite`` to each input), not only the graph. A site that references its runtime by
URL is served the same release from the local npm package, checked by the page against the
pinned integrity hashes.
"""

from __future__ import annotations

import contextlib
import subprocess
import weakref
from pathlib import Path
from typing import ClassVar

import numpy as np

from .base import LoadedArtifact, Runner, RunnerUnavailable, as_model_input
from .runners import register_runner


class _PageRunner(Runner):
    """Runs one runtime's models through the page; subclasses name the runtime."""

    runtime: ClassVar[str]
    extra = "export"

    def unavailable_reason(self) -> str | None:
        from ..web.browser import find_tools

        _, why = find_tools()
        return None if why is None else f"no browser to run the page: {why}"

    def _offline_routes(self, site: dict, tools) -> dict[str, str]:
        """Where the page's by-URL runtime files are served from locally (URL -> file)."""
        raise NotImplementedError

    def load(self, path: str | Path) -> LoadedArtifact:
        import torch

        from ..web.browser import Browser, BrowserError, find_tools
        from ..web.serve import serving
        from ..web.site import read_site_json, site_of_model

        tools, why = find_tools()
        if tools is None:
            raise RunnerUnavailable(f"no browser to run the page: {why}")
        folder = site_of_model(Path(path))
        site = read_site_json(folder)
        model = next((m for m in site["models"] if Path(m["file"]).name == Path(path).name), None)
        if model is None:
            raise ValueError(f"{folder / 'site.json'} does not list {Path(path).name}")
        routes = self._offline_routes(site, tools) if site[self.runtime]["source"] == "url" else {}
        stack = contextlib.ExitStack()
        try:
            url = stack.enter_context(serving(folder))
            # While the site is being written the model sits in a temporary folder: serve it
            # from where it is, at the address the page asks for.
            routes[url + model["file"]] = str(Path(path).resolve())
            browser = stack.enter_context(Browser(tools))
            threads = max(1, torch.get_num_threads())  # the same threads as every other CPU runner
            state = browser.open(f"{url}index.html?threads={threads}", routes=routes)
            if state["state"] != "ready":
                raise BrowserError(f"the page did not start: {state['error']}")
        except BaseException:
            stack.close()
            raise
        scale, runtime = int(model["scale"]), self.runtime

        def run(lr: np.ndarray) -> np.ndarray:
            out, _ = browser.run_tensor(scale, as_model_input(lr), runtime=runtime)
            return out

        run.close = stack.close  # type: ignore[attr-defined]  # parity closes it when done
        weakref.finalize(run, stack.close)  # and if not, the browser goes with the callable
        return run

    def _package_version(self, tools) -> str | None:
        raise NotImplementedError

    def versions(self) -> dict[str, str | None]:
        from ..web.browser import find_tools

        tools, _ = find_tools()
        return {f"{self.name} (runner)": self._package_version(tools) if tools else None,
                "chromium": _chromium_version(tools.chromium) if tools else None}


@register_runner
class OnnxRuntimeWebRunner(_PageRunner):
    name = "onnxruntime-web"
    runtime = "ort"

    def _offline_routes(self, site: dict, tools) -> dict[str, str]:
        from ..web import ort_web

        dist = tools.ort_web_dist()
        if dist is None or ort_web.local_version(dist) != site["ort"]["version"]:
            raise RunnerUnavailable(f"the site loads ONNX Runtime Web {site['ort']['version']} by URL and no "
                                    "local copy of that version is installed to serve offline")
        return {entry["url"]: str(dist / Path(entry["url"]).name)
                for files in site["ort"]["builds"].values() for entry in files.values()}

    def _package_version(self, tools) -> str | None:
        from ..web.ort_web import local_version

        dist = tools.ort_web_dist()
        return local_version(dist) if dist else None


@register_runner
class LiteRtJsRunner(_PageRunner):
    name = "litert-js"
    runtime = "litert"

    def _offline_routes(self, site: dict, tools) -> dict[str, str]:
        from ..web import litert_js

        scope = tools.litert_scope()
        if scope is None or litert_js.local_version(scope) != site["litert"]["version"]:
            raise RunnerUnavailable(f"the site loads LiteRT.js {site['litert']['version']} by URL and no local "
                                    "copy of that version is installed to serve offline")
        return litert_js.offline_routes(site["litert"], scope)

    def _package_version(self, tools) -> str | None:
        from ..web.litert_js import local_version

        scope = tools.litert_scope()
        return local_version(scope) if scope else None


def _chromium_version(binary: str) -> str | None:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().split()[-1] if out.strip() else None

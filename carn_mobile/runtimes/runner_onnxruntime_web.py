"""Web-site models in ONNX Runtime Web, run by the page itself in headless Chromium.

The artifact is a model inside an exported site (``<site>.web/models/*.onnx``). The runner
serves the site on the loopback interface, opens its page and calls the page's own
``carnWeb.runTensor`` (the code path the page uses for each tile), so parity covers the page's
loading of ONNX Runtime Web and the model, not only the graph. A site that references ONNX
Runtime Web by URL is served the same release from the local ``onnxruntime-web`` package,
checked by the page against the pinned integrity hashes.
"""

from __future__ import annotations

import contextlib
import weakref
from pathlib import Path

import numpy as np

from .base import LoadedArtifact, Runner, RunnerUnavailable, as_model_input
from .runners import register_runner


@register_runner
class OnnxRuntimeWebRunner(Runner):
    name = "onnxruntime-web"
    extra = "export"

    def unavailable_reason(self) -> str | None:
        from ..web.browser import find_tools

        _, why = find_tools()
        return None if why is None else f"no browser to run ONNX Runtime Web: {why}"

    def load(self, path: str | Path) -> LoadedArtifact:
        import torch

        from ..web import ort_web
        from ..web.browser import Browser, BrowserError, find_tools
        from ..web.serve import serving
        from ..web.site import read_site_json, site_of_model

        tools, why = find_tools()
        if tools is None:
            raise RunnerUnavailable(f"no browser to run ONNX Runtime Web: {why}")
        folder = site_of_model(Path(path))
        site = read_site_json(folder)
        model = next((m for m in site["models"] if Path(m["file"]).name == Path(path).name), None)
        if model is None:
            raise ValueError(f"{folder / 'site.json'} does not list {Path(path).name}")
        routes: dict[str, str] = {}
        if site["ort"]["source"] == "url":
            dist = tools.ort_web_dist()
            if dist is None or ort_web.local_version(dist) != site["ort"]["version"]:
                raise RunnerUnavailable(f"the site loads ONNX Runtime Web {site['ort']['version']} by URL and no "
                                        "local copy of that version is installed to serve offline")
            for files in site["ort"]["builds"].values():
                for entry in files.values():
                    routes[entry["url"]] = str(dist / Path(entry["url"]).name)
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
        scale = int(model["scale"])

        def run(lr: np.ndarray) -> np.ndarray:
            out, _ = browser.run_tensor(scale, as_model_input(lr))
            return out

        run.close = stack.close  # type: ignore[attr-defined]  # parity closes it when done
        weakref.finalize(run, stack.close)  # and if not, the browser goes with the callable
        return run

    def versions(self) -> dict[str, str | None]:
        from ..web.browser import find_tools
        from ..web.ort_web import local_version

        tools, _ = find_tools()
        dist = tools.ort_web_dist() if tools else None
        return {"onnxruntime-web (runner)": local_version(dist) if dist else None,
                "chromium": _chromium_version(tools.chromium) if tools else None}


def _chromium_version(binary: str) -> str | None:
    import subprocess

    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().split()[-1] if out.strip() else None

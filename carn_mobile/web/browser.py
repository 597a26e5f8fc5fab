"""Headless Chromium, driven through Node and ``playwright-core``: the web target's own runtime.

Used by the ``onnxruntime-web`` runner (parity), the browser tests and ``carn-web bench``.
Nothing here downloads a browser: it uses the system's Chromium (``CARN_CHROMIUM``, else
``chromium`` / ``chromium-browser`` / ``google-chrome`` on PATH) and a ``node_modules`` folder
holding ``playwright-core`` (``CARN_WEB_NODE_MODULES``, else ``export/web/node_modules`` of the
checkout or of the working directory, after ``npm ci`` there).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Where ``npm ci`` in the repository's ``export/web`` puts the packages.
NODE_FOLDER = Path("export") / "web" / "node_modules"


class BrowserError(RuntimeError):
    """The browser or the page failed (message from the page or the driver)."""


@dataclass(frozen=True)
class BrowserTools:
    node: str
    chromium: str
    node_modules: Path

    def ort_web_dist(self) -> Path | None:
        """``onnxruntime-web``'s dist folder in the same ``node_modules``, when installed."""
        dist = self.node_modules / "onnxruntime-web" / "dist"
        return dist if dist.is_dir() else None

    def litert_scope(self) -> Path | None:
        """The ``@litertjs`` folder (core and wasm-utils) in the same ``node_modules``, when installed."""
        scope = self.node_modules / "@litertjs"
        return scope if (scope / "core").is_dir() else None


def _node_modules_candidates() -> list[Path]:
    env = os.environ.get("CARN_WEB_NODE_MODULES")
    if env:
        return [Path(env)]
    here = Path(__file__).resolve()
    roots = [Path.cwd(), *Path.cwd().parents, *here.parents]
    return list(dict.fromkeys(root / NODE_FOLDER for root in roots))


def find_tools() -> tuple[BrowserTools | None, str | None]:
    """The tools to drive a browser, or ``(None, what is missing and how to get it)``."""
    node = shutil.which("node")
    if node is None:
        return None, "no `node` on PATH (install Node.js 18+, e.g. apt-get install nodejs)"
    chromium = os.environ.get("CARN_CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
    if chromium is None or not Path(chromium).exists():
        return None, "no Chromium found (apt-get install chromium, or set CARN_CHROMIUM to the browser's path)"
    for folder in _node_modules_candidates():
        if (folder / "playwright-core" / "package.json").is_file():
            return BrowserTools(node, chromium, folder.resolve()), None
    return None, ("no playwright-core found (run `npm ci` in export/web, or set CARN_WEB_NODE_MODULES "
                  "to a node_modules folder that has it)")


class Browser:
    """One headless Chromium with one page at a time, driven by ``driver.mjs`` over stdin/stdout.

    Use as a context manager; every method raises :class:`BrowserError` with the driver's or the
    page's message when something fails.
    """

    def __init__(self, tools: BrowserTools, timeout_s: float = 600.0) -> None:
        self.tools = tools
        self.timeout_s = timeout_s
        driver = resources.files("carn_mobile.web").joinpath("assets", "driver.mjs")
        self._proc = subprocess.Popen(
            [tools.node, str(driver), str(tools.node_modules), tools.chromium],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
        )
        self._lock = threading.Lock()
        hello = self._read()
        self.version = hello.get("version", "")

    def _read(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            err = self._proc.stderr.read() if self._proc.stderr else ""
            last = [x for x in err.strip().splitlines() if x.strip()]
            raise BrowserError(f"the browser driver stopped: {last[-1] if last else 'no message'}")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise BrowserError(reply.get("error", "unknown driver error"))
        return reply

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        """Send one command to the driver and wait for its reply."""
        with self._lock:
            if self._proc.poll() is not None:
                raise BrowserError("the browser driver is not running")
            assert self._proc.stdin is not None
            self._proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
            self._proc.stdin.flush()
            return self._read()

    def open(self, url: str, init_script: str | None = None, routes: dict[str, str] | None = None) -> dict[str, Any]:
        """Load the page at ``url`` and wait until it is ready or shows an error."""
        return self.call("open", url=url, initScript=init_script, routes=routes or {})

    def run_tensor(self, scale: int, lr: np.ndarray, backend: str = "wasm",
                   runtime: str | None = None) -> tuple[np.ndarray, float]:
        """The page's untiled model output for ``lr`` (1, 3, H, W) and the milliseconds it took, on
        ``runtime`` (default: the one the site runs ``backend`` on)."""
        _, _, h, w = lr.shape
        data = base64.b64encode(np.ascontiguousarray(lr, dtype="<f4").tobytes()).decode()
        reply = self.call("tensor", scale=scale, h=h, w=w, data=data, backend=backend, runtime=runtime)
        out = np.frombuffer(base64.b64decode(reply["data"]), dtype="<f4").astype(np.float32)
        return out.reshape(1, 3, h * scale, w * scale), float(reply["ms"])

    def upscale(self, file: str | Path, scale: int | None = None, backend: str | None = None) -> dict[str, Any]:
        """Give ``file`` to the page's file input (at ``scale``, on the backend menu's ``backend``
        value such as ``"wasm:litert"``); the page's state, message and RGB output."""
        reply = self.call("upscale", file=str(file), scale=scale, backend=backend)
        if reply.get("state") == "done":
            rgba = np.frombuffer(base64.b64decode(reply.pop("pixels")), dtype=np.uint8)
            reply["rgb"] = rgba.reshape(reply["height"], reply["width"], 4)[..., :3]
        return reply

    def screenshot(self, path: str | Path) -> Path:
        self.call("screenshot", path=str(path))
        return Path(path)

    def evaluate(self, expression: str) -> Any:
        return self.call("evaluate", expression=expression)["value"]

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self.call("close")
            except (BrowserError, OSError, ValueError):
                pass
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

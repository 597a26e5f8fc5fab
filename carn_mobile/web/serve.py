"""A small static server for an exported web site, with the headers WebAssembly threads need.

WebAssembly threads use ``SharedArrayBuffer``, which browsers enable only on cross-origin
isolated pages: the server sends ``Cross-Origin-Opener-Policy: same-origin`` and
``Cross-Origin-Embedder-Policy: require-corp`` with every response.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


class SiteHandler(SimpleHTTPRequestHandler):
    """Serves one folder read-only, with cross-origin isolation and correct module/wasm types."""

    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
        ".json": "application/json", ".onnx": "application/octet-stream",
    }
    quiet = False

    def end_headers(self) -> None:
        for key, value in ISOLATION_HEADERS.items():
            self.send_header(key, value)
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        if not self.quiet:
            super().log_message(format, *args)


def make_server(folder: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                quiet: bool = False) -> ThreadingHTTPServer:
    """A server for ``folder`` (not started); ``port=0`` picks a free port."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; pass the .web folder that carn-export wrote")
    handler = type("QuietSiteHandler" if quiet else "SiteHandler", (SiteHandler,), {"quiet": quiet})
    return ThreadingHTTPServer((host, port), partial(handler, directory=str(root)))


def url_of(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/"


@contextmanager
def serving(folder: str | Path, host: str = DEFAULT_HOST, port: int = 0) -> Iterator[str]:
    """Serve ``folder`` in a background thread for the duration of the block; yields its URL."""
    server = make_server(folder, host, port, quiet=True)
    thread = threading.Thread(target=server.serve_forever, name="carn-web-serve", daemon=True)
    thread.start()
    try:
        yield url_of(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

"""A small static server for an exported web site, with the headers WebAssembly threads need.

WebAssembly threads use ``SharedArrayBuffer``, which browsers enable only on cross-origin
isolated pages: the server sends ``Cross-Origin-Opener-Policy: same-origin`` and
``Cross-Origin-Embedder-Policy: require-corp`` with every response.

It serves the site and nothing else: only regular files whose real path (symlinks resolved) is
inside the site folder, only the file types a site has (:data:`SITE_TYPES`), and no directory
listings; everything else is a 404 that says nothing about what exists outside.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO

ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


#: The file types an exported site consists of, and the Content-Type each is served with.
SITE_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".onnx": "application/octet-stream",
    ".tflite": "application/octet-stream",
}


class SiteHandler(SimpleHTTPRequestHandler):
    """Serves one folder read-only: its regular files of the site's types, with cross-origin
    isolation; no listings, nothing a symlink reaches outside the folder."""

    quiet = False
    #: Whether responses carry :data:`ISOLATION_HEADERS` (off only to measure what they enable).
    isolate = True

    def end_headers(self) -> None:
        for key, value in ISOLATION_HEADERS.items() if self.isolate else ():
            self.send_header(key, value)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()

    def site_file(self) -> Path | None:
        """The file a request names, or ``None`` when it is not one the site may serve."""
        root = Path(os.path.realpath(self.directory))
        path = Path(self.translate_path(self.path))  # drops the query and '..' parts
        if path.is_dir():
            path = path / "index.html"  # a folder is its index page, never a listing
        real = Path(os.path.realpath(path))
        if real != root and root not in real.parents:
            return None  # a symlink (or anything else) leading out of the site
        if not real.is_file() or real.suffix.lower() not in SITE_TYPES:
            return None
        return real

    def send_head(self) -> BinaryIO | None:
        real = self.site_file()
        if real is None:
            self.send_error(HTTPStatus.NOT_FOUND, "Not found")
            return None
        try:
            f = open(real, "rb")  # noqa: SIM115 (closed by the base class after copying)
        except OSError:
            self.send_error(HTTPStatus.NOT_FOUND, "Not found")
            return None
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", SITE_TYPES[real.suffix.lower()])
        self.send_header("Content-Length", str(os.fstat(f.fileno()).st_size))
        self.end_headers()
        return f

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        if not self.quiet:
            super().log_message(format, *args)


class SiteServer(ThreadingHTTPServer):
    """The threading server, minus a traceback each time a browser drops a connection mid-file."""

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(folder: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                quiet: bool = False, isolate: bool = True) -> ThreadingHTTPServer:
    """A server for ``folder`` (not started); ``port=0`` picks a free port. ``isolate=False``
    leaves out the cross-origin isolation headers (``carn-web bench`` measures what they enable)."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; pass the .web folder that carn-export wrote")
    handler = type("QuietSiteHandler" if quiet else "SiteHandler", (SiteHandler,), {"quiet": quiet, "isolate": isolate})
    return SiteServer((host, port), partial(handler, directory=str(root)))


def url_of(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/"


@contextmanager
def serving(folder: str | Path, host: str = DEFAULT_HOST, port: int = 0, isolate: bool = True) -> Iterator[str]:
    """Serve ``folder`` in a background thread for the duration of the block; yields its URL."""
    server = make_server(folder, host, port, quiet=True, isolate=isolate)
    thread = threading.Thread(target=server.serve_forever, name="carn-web-serve", daemon=True)
    thread.start()
    try:
        yield url_of(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

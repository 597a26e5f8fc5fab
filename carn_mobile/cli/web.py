"""``carn-web``: serve an exported web site locally, or benchmark it in headless Chromium.

``carn-web serve DIR`` serves the ``.web`` folder that ``carn-export --target web`` wrote, with
the cross-origin isolation headers WebAssembly threads need. ``carn-web bench DIR [DIR ...]``
compares the page's runtimes (one site per precision) with native runtimes on this machine.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.markup import escape

from .common import CLIError, err_console, exit_with, make_console, write_reports


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="carn-web", description="Serve or benchmark a site from carn-export --target web.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="serve a .web folder with the headers WebAssembly threads need")
    serve.add_argument("site", metavar="DIR", help="the .web folder carn-export wrote")
    serve.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    bench = sub.add_parser("bench", help="time the page in headless Chromium against native runtimes")
    bench.add_argument("sites", metavar="DIR", nargs="+",
                       help=".web folders (one per precision: an fp32 one gives the native onnxruntime fp32 "
                            "yardstick), each exported with --ort-web / --litert-js (self-contained)")
    bench.add_argument("--scale", type=int, action="append", metavar="N",
                       help="only this scale (repeatable; default: every scale of the sites)")
    bench.add_argument("--lr", default="320x180", metavar="WxH",
                       help="LR image size (default 320x180: x4 gives 1280x720)")
    bench.add_argument("--threads", type=int, default=None, help="threads for both (default: torch's default here)")
    bench.add_argument("--repeats", type=int, default=3, help="timed runs per case after one warm-up (default 3)")
    bench.add_argument("--profile", action="store_true",
                       help="also time each ONNX Runtime Web model's kernels by layer kind, in the page and natively")
    bench.add_argument("--out", metavar="DIR", help="write report.json and report.md here")
    bench.add_argument("--force", action="store_true", help="overwrite an existing report")
    return p


def _site(path: str) -> Path:
    from ..web.site import read_site_json

    folder = Path(path)
    if not folder.is_dir():
        raise CLIError(f"{folder} is not a folder; pass the .web folder that carn-export --target web wrote")
    read_site_json(folder)  # a folder without a valid site.json is a clear ValueError
    return folder


def _serve(args: argparse.Namespace) -> int:
    from ..web.serve import is_loopback, make_server, url_of

    folder = _site(args.site)
    try:
        server = make_server(folder, args.host, args.port)
    except OSError as exc:
        raise CLIError(f"cannot listen on {args.host}:{args.port} ({exc.strerror}); pick another --port") from None
    if not is_loopback(args.host):
        err_console.print(f"[yellow]warning:[/] --host {escape(args.host)} serves the site to every machine that "
                          "can reach this one; the default 127.0.0.1 keeps it on this machine")
    make_console().print(f"serving {escape(str(folder.resolve()))} at [bold]{url_of(server)}[/] (Ctrl+C stops)")
    sys.stdout.flush()  # a pipe (carn-web serve DIR | tee log) would hold the URL in its buffer
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _bench(args: argparse.Namespace) -> int:
    import torch

    from ..bench.machine import describe_machine
    from ..bench.report import machine_sentence
    from ..fileio import check_writable
    from ..sizes import parse_wxh
    from ..web.bench import bench_sites, markdown
    from ..web.browser import BrowserError

    folders = [_site(s) for s in args.sites]
    try:
        size = parse_wxh(args.lr, "--lr")
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if args.repeats < 1:
        raise CLIError(f"--repeats must be at least 1, got {args.repeats}")
    threads = args.threads or torch.get_num_threads()
    if threads < 1:
        raise CLIError(f"--threads must be at least 1, got {threads}")
    out = Path(args.out) if args.out else None
    if out is not None:
        for name in ("report.json", "report.md"):
            check_writable(out / name, args.force)
    machine = describe_machine(threads)
    console = make_console()
    try:
        rows, about = bench_sites(folders, threads, scales=args.scale, lr_size=(size.height, size.width),
                                  repeats=args.repeats, profile=args.profile,
                                  on_step=lambda text: err_console.print(f"[dim]{escape(text)}[/]"))
    except (BrowserError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    text = markdown(rows, about, machine_sentence(machine))
    console.print(text)
    if out is not None:
        report = {"machine": machine, "about": about, "rows": [r.to_json() for r in rows]}
        write_reports(out / "report.json", report, out / "report.md", text, args.force)
    return 0


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    return _serve(args) if args.command == "serve" else _bench(args)


def main(argv: Sequence[str] | None = None) -> None:
    exit_with(_main, argv)

"""``carn-parity``: re-check exported artifacts against the PyTorch model, to gate an app build.

Exit codes: 0 every artifact passed (or, for Core ML off macOS, passed its structural
checks, which is said explicitly); 1 some artifact failed (numbers out of tolerance, a
changed sha256, a file its runtime cannot load); 2 bad arguments, a missing manifest or
weights, or a missing optional dependency.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..export import BundleRecheck, RecheckResult, get_target, list_targets, recheck_artifact
from ..fileio import atomic_output, check_writable
from ..parity import FAILED, STRUCTURAL_ONLY
from .common import err_console, exit_with, make_console

EXIT_FAILED = 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="carn-parity",
        description="Re-run the parity check of artifacts written by carn-export (reads <artifact>.json).",
    )
    suffixes = ", ".join(dict.fromkeys(get_target(t).suffix for t in list_targets()))
    p.add_argument("artifacts", nargs="+", metavar="ARTIFACT",
                   help=f"files (or bundles) written by carn-export: {suffixes}")
    p.add_argument("--weights", help="checkpoint or shipped weights name (default: the ones in the manifest)")
    p.add_argument("--parity-images", metavar="DIR", help="folder of LR images (default: Set5 LR when available)")
    p.add_argument("--json", metavar="FILE", help="also write the reports as JSON")
    p.add_argument("--force", action="store_true", help="overwrite the JSON file if it exists")
    p.add_argument("--verbose", action="store_true", help="show the runtimes' own console output")
    return p


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose:
        os.environ["CARN_VERBOSE"] = "1"
    if args.json:
        check_writable(Path(args.json), args.force)
    console = make_console()
    results: list[RecheckResult | BundleRecheck] = []
    for artifact in args.artifacts:
        result = recheck_artifact(artifact, args.weights, parity_images=args.parity_images)
        results.append(result)
        if isinstance(result, BundleRecheck):
            show_bundle(console, result)
        else:
            show(console, result)
    if args.json:
        payload = {"reports": [report_json(r) for r in results]}
        with atomic_output(args.json, force=args.force) as tmp:
            tmp.write_text(json.dumps(payload, indent=2) + "\n")
    failed = [r.artifact.name for r in results if not r.passed]  # parity, and int8 quality where measured
    if failed:
        err_console.print(f"[bold red]parity failed:[/] {escape(', '.join(failed))}")
        return EXIT_FAILED
    return 0


def report_json(result: RecheckResult | BundleRecheck) -> dict:
    """One re-check as JSON: the gate's reports (a bundle's: its files and each member's)."""
    if isinstance(result, BundleRecheck):
        return {"artifact": str(result.artifact), "passed": result.passed,
                "files": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in result.files],
                "members": [report_json(m) for m in result.members]}
    return {"artifact": str(result.artifact), **result.report.to_json(),
            **({"quality": result.quality.to_json()} if result.quality is not None else {})}


def show_bundle(console: Console, result: BundleRecheck) -> None:
    m = result.manifest
    bad = [c for c in result.files if not c.ok]
    colour = "red" if bad else "green"
    console.print(f"[bold]{escape(str(result.artifact))}[/]: {m['model']} x{'/'.join(map(str, m['scales']))} "
                  f"{m['target']} bundle, {len(result.members)} member(s)")
    console.print(f"  [{colour}]files: {len(result.files) - len(bad)}/{len(result.files)} match the manifest[/]")
    for c in bad:
        err_console.print(f"  [red]{escape(c.name)}: {escape(c.detail)}[/]")
    for member in result.members:
        show(console, member)


def show(console: Console, result: RecheckResult) -> None:
    rep = result.report
    colour = {FAILED: "red", STRUCTURAL_ONLY: "yellow"}.get(rep.status, "green")
    m = result.manifest
    console.print(f"[bold]{escape(str(result.artifact))}[/]: {m['model']} x{m['scale']} {m['target']} "
                  f"{m['precision']}, {escape(result.weights.label)}")
    console.print(f"  [{colour}]{escape(rep.headline())}[/]")
    if rep.cases:
        table = Table(show_header=True, box=None, padding=(0, 2))
        for col in ("input", "LR size", "max abs", "PSNR dB", "ok"):
            table.add_column(col)
        for c in rep.cases:
            psnr = "inf" if c.psnr_db is None and c.max_abs is not None else (
                "-" if c.psnr_db is None else f"{c.psnr_db:.1f}")
            table.add_row(escape(c.name), "x".join(map(str, c.lr_size)),
                          "-" if c.max_abs is None else f"{c.max_abs:.2e}", psnr, "yes" if c.passed else "NO")
        console.print(table)
    for line in rep.failure_details():
        err_console.print(f"  [red]{escape(line)}[/]")
    if result.quality is not None:
        colour = "green" if result.quality.passed else "red"
        console.print(f"  [{colour}]{escape(result.quality.headline())}[/] (fidelity above: against the quantized "
                      "reference)")
        for line in result.quality.failures:
            err_console.print(f"  [red]{escape(line)}[/]")


def main(argv: Sequence[str] | None = None) -> None:
    exit_with(_main, argv)

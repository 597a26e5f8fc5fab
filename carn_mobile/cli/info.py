"""``carn-info``: architecture summary, params and Mult-Adds of a model."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from rich.table import Table

from .. import __version__
from ..complexity import describe, layer_costs, mult_adds, params_for_scale
from ..models import PAPER_SCALES, build_model, count_params, list_models, parse_scales
from ..sizes import parse_wxh
from ..weights import WeightsError, get_weights
from .common import exit_with, make_console


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="carn-info", description="Architecture summary, params and Mult-Adds.")
    p.add_argument("--model", default="carn-m", choices=list_models(), help="architecture (default carn-m)")
    p.add_argument("--scale", help="show the layer breakdown of these scales (e.g. 4 or 2,3,4)")
    p.add_argument("--hr", default="1280x720", help="output (HR) size WIDTHxHEIGHT for Mult-Adds (default 1280x720)")
    p.add_argument("--environment", action="store_true",
                   help="instead: the installed runtimes against their tested ranges, and what this platform "
                        "can export and check")  # fmt: skip
    return p


def _environment(out) -> int:
    """Print the installed packages against their tested ranges and each target's status here."""
    from ..environment import capabilities, describe_platform, package_statuses

    out.print(f"[bold]carn-mobile {__version__}[/] on {describe_platform()}")
    packages = Table(title="dependencies (tested ranges from pyproject.toml; docs/platforms.md has the matrix)")
    for col in ("package", "extra", "installed", "tested range", "status"):
        packages.add_column(col)
    outside = 0
    for row in package_statuses():
        state = {True: "[green]tested[/]", False: "[yellow]outside the tested range[/]",
                 None: "not installed"}[row.in_range]  # fmt: skip
        outside += row.in_range is False
        packages.add_row(row.name, row.extra or "core", row.installed or "-", row.tested, state)
    out.print(packages)
    targets = Table(title="targets on this platform")
    for col in ("target", "export", "checked by"):
        targets.add_column(col)
    for cap in capabilities():
        export = "[green]yes[/]" if cap.export is None else f"[red]no[/]: {cap.export}"
        runner = cap.runner or "[red]no runner here[/]"
        if cap.runner_note:
            runner += f" ({cap.runner_note})"
        if cap.runner_detail:
            runner += f": {cap.runner_detail}"
        targets.add_row(cap.target, export, runner)
    out.print(targets)
    if outside:
        out.print(f"{outside} package(s) outside the tested ranges: they may work, but the tests did not run with them")
    return 0


def _g(x: float) -> str:
    return f"{x / 1e9:.1f} G"


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.environment:
        return _environment(make_console())
    hr = parse_wxh(args.hr)
    breakdown = parse_scales(args.scale, PAPER_SCALES) if args.scale else []
    model = build_model(args.model)
    out = make_console()
    out.print(f"[bold]{args.model}[/]: {describe(model)}")
    body = sum(count_params(m) for n, m in model.named_children() if n != "upsample")
    out.print(f"params (trainable, mean shifts excluded): {count_params(model):,} total, {body:,} in the body")

    summary = Table(title=f"per-scale models, Mult-Adds for a {hr} output")
    for col in ("scale", "LR input", "branch params", "model params", "Mult-Adds"):
        summary.add_column(col, justify="right")
    for s in model.scales:
        summary.add_row(
            f"x{s}",
            f"{hr.width / s:.2f}x{hr.height / s:.2f}".replace(".00", ""),
            f"{count_params(model.upsample.branch(s)):,}",
            f"{params_for_scale(model, s):,}",
            _g(mult_adds(model, s, hr)),
        )
    out.print(summary)

    for s in breakdown:
        layers = Table(title=f"layers at x{s}")
        for col in ("layer", "type", "params", "Mult-Adds"):
            layers.add_column(col, justify="left" if col in ("layer", "type") else "right")
        for row in layer_costs(model, s, hr):
            layers.add_row(row.name, row.kind, f"{row.params:,}", _g(row.mult_adds))
        out.print(layers)

    try:
        w = get_weights(args.model)
    except WeightsError:
        out.print(f"shipped weights: none for {args.model} (train with carn-train or pass --weights to the tools)")
    else:
        out.print(f"shipped weights: {w.filename} (sha256 {w.sha256[:12]}...), {w.license}")
        for ds, per_scale in w.meta.get("metrics", {}).items():
            cells = ", ".join(f"x{s} {p:.2f} dB / {q:.4f}" for s, (p, q) in per_scale.items())
            out.print(f"  {ds}: {cells}")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    exit_with(_main, argv)

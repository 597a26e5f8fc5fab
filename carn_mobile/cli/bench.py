"""``carn-bench``: Mult-Adds, latency, memory and size per model, scale and backend."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..bench.report import console_table, markdown
from ..bench.suite import BenchSettings, backend_targets, run_benchmark
from ..fileio import atomic_output, check_writable
from ..models import PAPER_SCALES, list_models, parse_scales
from ..precision import list_precisions
from ..sizes import parse_wxh
from .common import err_console, exit_with, make_console, write_reports


def _names(text: str, known: Sequence[str], what: str) -> list[str]:
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in known]
    if not names or bad:
        raise ValueError(f"unknown {what} {(bad or [text])[0]!r}; choose from {', '.join(known)}")
    return names


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="carn-bench",
        description="Params, Mult-Adds (the paper's way), latency, peak memory and size per backend.",
    )
    p.add_argument("--hr", default="1280x720", help="output size WIDTHxHEIGHT (default 1280x720)")
    p.add_argument("--models", help="comma-separated models (default carn,carn-m; --profile and --sweep: carn-m)")
    p.add_argument("--scales", help="comma-separated scales (default 2,3,4; --sweep: 4)")
    p.add_argument("--backends",
                   help=f"comma-separated backends among {', '.join(backend_targets())} (default: all; "
                        "with --video: torch,onnxruntime)")
    p.add_argument("--threads", type=_positive, default=2, help="CPU threads for every engine (default 2)")
    p.add_argument("--runs", type=_positive,
                   help="timed runs per measurement (default 10; --profile 3, --sweep 2)")
    p.add_argument("--warmup", type=int, help="untimed warm-up runs (default 2; --sweep 1)")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON")
    p.add_argument("--markdown", metavar="FILE", help="write the report as Markdown")
    p.add_argument(
        "--plot", metavar="FILE.png", help="latency plot; the PSNR vs Mult-Adds plot goes to FILE_quality.png"
    )
    p.add_argument("--video", action="store_true",
                   help="video throughput instead: CARN-M x2 640x360 and x4 480x270 clips, pipeline fps against the "
                        "I/O and model floors, and peak memory for a 10 s and a 60 s clip (needs the video extra)")
    p.add_argument("--frames", type=_positive, default=24, help="frames per --video case (default 24)")
    p.add_argument("--graphs",
                   help="optimized (the exact rewrites carn-export applies), plain (--no-optimize), a single "
                        "rewrite by name (its own gain), or several: plain,optimized gives before/after rows from "
                        "one run (default optimized; --profile: plain,optimized)")
    p.add_argument("--precisions",
                   help="comma-separated precisions per backend, e.g. fp32,fp16,int8: a row each, with the "
                        "speed-up against fp32 and int8's measured PSNR drop (default: each target's own)")
    p.add_argument("--profile", action="store_true",
                   help="per-operator profile instead, grouped by layer kind, in onnxruntime and ExecuTorch "
                        "(default model carn-m; plain and optimized graphs), with GMAC/s per kind")
    p.add_argument("--sweep", action="store_true",
                   help="latency and peak memory from 640x360 to 3840x2160 output instead, untiled and tiled, "
                        "against linear-in-pixels (one model and scale; default carn-m x4, torch,onnxruntime)")
    p.add_argument("--force", action="store_true", help="overwrite existing report files")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def quality_plot_path(plot: Path) -> Path:
    return plot.with_name(plot.stem + "_quality" + plot.suffix)


def _video(args: argparse.Namespace) -> int:
    from ..bench.video import VIDEO_BACKENDS, VideoBenchSettings, run_video_benchmark, video_markdown
    from ..upscaling.backends import available_backends
    from ..upscaling.video_io import av_module

    av_module()  # the install hint before minutes of work
    known = available_backends()
    backends = _names(args.backends, known, "backend") if args.backends else list(VIDEO_BACKENDS)
    for path in [Path(p) for p in (args.json, args.markdown) if p]:
        check_writable(path, args.force)
    settings = VideoBenchSettings(backends=backends, frames=args.frames, threads=args.threads)
    with Progress(TextColumn("{task.description}"), TimeElapsedColumn(), console=err_console,
                  disable=args.no_progress, transient=True) as bar:
        task = bar.add_task("carn-bench --video")
        report = run_video_benchmark(settings, lambda message: bar.update(task, description=message))
    text = video_markdown(report)
    make_console().print(text, markup=False, highlight=False)
    write_reports(args.json, report, args.markdown, text, args.force)
    return 0


def _graphs(text: str) -> list[str]:
    from ..bench.suite import graph_names

    return _names(text, graph_names(), "graph")


def _checked_outputs(args: argparse.Namespace, with_quality_plot: bool = False) -> None:
    """Fail before minutes of measuring when a report file exists (without --force) or --plot is no PNG."""
    paths = [Path(p) for p in (args.json, args.markdown) if p]
    if args.plot:
        if not args.plot.lower().endswith(".png"):
            raise ValueError(f"--plot must name a .png file, got {args.plot}")
        paths.append(Path(args.plot))
        if with_quality_plot:
            paths.append(quality_plot_path(Path(args.plot)))
    for path in paths:  # fail before minutes of measuring
        check_writable(path, args.force)


def _run_with_status(title: str, work):
    with Progress(TextColumn("{task.description}"), TimeElapsedColumn(), console=err_console,
                  transient=True) as bar:
        task = bar.add_task(title)
        return work(lambda message: bar.update(task, description=message))


def _profile(args: argparse.Namespace) -> int:
    from ..bench.profile import ProfileSettings, profile_markdown, profiled_backends, run_profile

    models = _names(args.models or "carn-m", list_models(), "model")
    profiled = list(profiled_backends())
    backends = _names(args.backends, profiled, "profiled backend") if args.backends else profiled
    graphs = _graphs(args.graphs or "plain,optimized")
    _checked_outputs(args)
    settings = ProfileSettings(parse_wxh(args.hr), models, parse_scales(args.scales or "2,3,4", PAPER_SCALES), backends,
                               graphs, args.threads, args.runs or 3)
    report = _run_with_status("carn-bench --profile", lambda say: run_profile(settings, say))
    text = profile_markdown(report)
    make_console().print(text, markup=False, highlight=False)
    write_reports(args.json, report, args.markdown, text, args.force)
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from ..bench.sweep import SweepSettings, plot_sweep, run_sweep, sweep_markdown
    from ..upscaling.backends import available_backends

    models = _names(args.models or "carn-m", list_models(), "model")
    scales = parse_scales(args.scales or "4", PAPER_SCALES)
    if len(models) != 1 or len(scales) != 1:
        raise ValueError("--sweep takes one model and one scale, e.g. --models carn-m --scales 4")
    backends = _names(args.backends, available_backends(), "backend") if args.backends else ["torch", "onnxruntime"]
    _checked_outputs(args)
    settings = SweepSettings(models[0], scales[0], backends=backends, threads=args.threads,
                             runs=args.runs or 2, warmup=1 if args.warmup is None else args.warmup)
    report = _run_with_status("carn-bench --sweep", lambda say: run_sweep(settings, say))
    text = sweep_markdown(report)
    make_console().print(text, markup=False, highlight=False)
    write_reports(args.json, report, args.markdown, text, args.force)
    if args.plot:
        with atomic_output(args.plot, force=args.force) as tmp:
            plot_sweep(report, tmp)
    return 0


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if sum((args.video, args.profile, args.sweep)) > 1:
        raise ValueError("choose one of --video, --profile and --sweep")
    if args.video:
        return _video(args)
    if args.profile:
        return _profile(args)
    if args.sweep:
        return _sweep(args)
    hr = parse_wxh(args.hr)
    models = _names(args.models or "carn,carn-m", list_models(), "model")
    backends = _names(args.backends or ",".join(backend_targets()), list(backend_targets()), "backend")
    scales = parse_scales(args.scales or "2,3,4", PAPER_SCALES)  # the models are built by name: x2/x3/x4
    args.runs = args.runs or 10
    args.warmup = 2 if args.warmup is None else args.warmup
    if args.warmup < 0:
        raise ValueError("--warmup must be >= 0")
    _checked_outputs(args, with_quality_plot=True)
    graphs = _graphs(args.graphs or "optimized")
    precisions = _names(args.precisions, list_precisions(), "precision") if args.precisions else [None]
    settings = BenchSettings(hr, models, scales, backends, args.threads, args.runs, args.warmup, graphs,
                             precisions)
    total = len(models) * len(scales) * len(backends) * len(graphs) * len(precisions)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, disable=args.no_progress, transient=True) as bar:
        task = bar.add_task("carn-bench", total=total)

        def progress(message: str, done: int) -> None:
            bar.update(task, completed=done, description=message)

        report = run_benchmark(settings, progress)

    out = make_console()
    m = report["machine"]
    int8 = ", ".join(m.get("int8_instructions") or []) or "none"
    out.print(f"machine: {m['cpu']} ({m['arch']}), {m['usable_cores']} cores, {m['os']}, torch {m['torch']}, "
              f"int8 dot-product instructions: {int8}")
    for scale, c in sorted(report["ceilings"].items()):
        out.print(f"ceiling x{scale}: {c['layer']}: {c['gmacs_per_s']} GMAC/s ({c['engine']})")
    out.print(console_table(report["rows"]))
    write_reports(args.json, report, args.markdown, markdown(report), args.force)
    if args.plot:
        from ..bench.plots import plot_latency, plot_quality_vs_cost, quality_points

        title = f"{m['cpu']}, {report['settings']['threads']} threads, {report['settings']['hr']} output"
        with atomic_output(args.plot, force=args.force) as tmp:
            plot_latency(report["rows"], tmp, f"latency per backend ({title})")
        with atomic_output(quality_plot_path(Path(args.plot)), force=args.force) as tmp:
            plot_quality_vs_cost(quality_points(), tmp, "PSNR vs Mult-Adds at 1280x720 (area ~ params)")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    exit_with(_main, argv)

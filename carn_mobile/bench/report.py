"""Benchmark report: JSON (the schema in docs/benchmark.md), Markdown and a console table."""

from __future__ import annotations

from collections.abc import Sequence


def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def machine_sentence(m: dict) -> str:
    """``Machine: CPU (arch, cores, memory), OS; Python, torch; threads.`` for every report."""
    return (f"Machine: {m['cpu']} ({m['arch']}, {m['usable_cores']} usable cores, {m['memory_gib']} GiB), "
            f"{m['os']}; Python {m['python']}, torch {m['torch']}; {m['threads']} threads"
            + (f"; int8 dot-product instructions: {', '.join(m['int8_instructions']) or 'none'}."
               if "int8_instructions" in m else "."))


def markdown(report: dict) -> str:
    """A Markdown page: machine, ceilings, and one row per (model, scale, backend)."""
    lines = [
        "# carn-bench report",
        "",
        machine_sentence(report["machine"]),
        f"Output size {report['settings']['hr']}; {report['settings']['runs']} timed runs after "
        f"{report['settings']['warmup']} warm-up runs; latency is wall-clock per image.",
        "",
        "## Convolution ceiling (64->64 3x3 at the LR size)",
        "",
        "| scale | LR size | best engine | GMAC/s | per engine |",
        "|---|---|---|---|---|",
    ]
    for scale, c in sorted(report["ceilings"].items(), key=lambda kv: int(kv[0])):
        per = ", ".join(f"{k} {v}" for k, v in c["per_engine_gmacs_per_s"].items())
        lines.append(f"| x{scale} | {c['layer'].split(' at ')[-1]} | {c['engine']} | {c['gmacs_per_s']} | {per} |")
    lines += [
        "",
        "## Results",
        "",
        "| model | scale | params | Mult-Adds (G) | backend | graph | precision | size (MB) | median ms | p90 ms "
        "| peak MB | GMAC/s | of ceiling | vs torch | vs plain | vs fp32 | PSNR drop (dB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        graph = r.get("graph", "plain")  # reports older than the rewrites benchmarked the plain graph
        if r["status"] != "ok":
            lines.append(
                f"| {r['model']} | x{r['scale']} | {r['params']:,} | {r['mult_adds'] / 1e9:.1f} | {r['backend']} "
                f"| {graph} | {r.get('precision') or 'default'} | - | skipped: {r['reason']} | | | | | | | | |"
            )
            continue
        lat = r["latency_ms"]
        size = None if r["size_bytes"] is None else r["size_bytes"] / 1e6
        lines.append(
            f"| {r['model']} | x{r['scale']} | {r['params']:,} | {r['mult_adds'] / 1e9:.1f} | {r['backend']} "
            f"| {graph} | {r.get('precision', 'fp32')} | {_fmt(size, '.2f')} | {lat['median']:.1f} | {lat['p90']:.1f} "
            f"| {_fmt(r['peak_mem_mb'], '.0f')} | {r['gmacs_per_s']:.1f} | {r['ceiling_fraction']:.0%} "
            f"| {_fmt(r.get('speedup_vs_torch'), '.2f')}x | {_fmt(r.get('speedup_vs_plain'), '.2f', '')}"
            f"{'x' if r.get('speedup_vs_plain') else ''} | {_fmt(r.get('speedup_vs_fp32'), '.2f', '')}"
            f"{'x' if r.get('speedup_vs_fp32') else ''} | {quality_drop(r)} |"
        )
    notes = report.get("notes") or []
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def quality_drop(row: dict) -> str:
    """A row's worst int8 task-PSNR drop against fp32 and where it was measured, or blank."""
    quality = row.get("quality")
    if not quality or quality.get("max_drop_db") is None:
        return ""
    sets = ", ".join(f"{s['name']} {s['drop_db']:+.3f}" for s in quality["sets"])
    return f"{quality['max_drop_db']:.3f} ({sets})"


def console_table(rows: Sequence[dict]):
    """A rich table of the rows for the terminal."""
    from rich.table import Table

    table = Table(title="carn-bench")
    for col in ("model", "scale", "backend", "graph", "precision", "Mult-Adds", "size MB", "median ms", "p90 ms",
                "peak MB", "GMAC/s", "ceiling", "vs torch", "vs plain", "vs fp32"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("model", "backend", "graph", "precision") else "right")
    for r in rows:
        graph = r.get("graph", "plain")
        if r["status"] != "ok":
            table.add_row(r["model"], f"x{r['scale']}", r["backend"], graph, r.get("precision") or "default",
                          f"{r['mult_adds'] / 1e9:.1f} G", "-", f"skipped: {r['reason']}", "", "", "", "", "", "",
                          "")  # fmt: skip
            continue
        size = None if r["size_bytes"] is None else r["size_bytes"] / 1e6
        table.add_row(
            r["model"],
            f"x{r['scale']}",
            r["backend"],
            graph,
            r.get("precision", "fp32"),
            f"{r['mult_adds'] / 1e9:.1f} G",
            _fmt(size, ".2f"),
            f"{r['latency_ms']['median']:.1f}",
            f"{r['latency_ms']['p90']:.1f}",
            _fmt(r["peak_mem_mb"], ".0f"),
            f"{r['gmacs_per_s']:.1f}",
            f"{r['ceiling_fraction']:.0%}",
            _fmt(r.get("speedup_vs_torch"), ".2f") + "x",
            _fmt(r.get("speedup_vs_plain"), ".2f", "") + ("x" if r.get("speedup_vs_plain") else ""),
            _fmt(r.get("speedup_vs_fp32"), ".2f", "") + ("x" if r.get("speedup_vs_fp32") else ""),
        )
    return table

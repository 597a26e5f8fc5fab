"""PNG plots of a benchmark report (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError('plots need matplotlib (a core dependency of carn-mobile): pip install matplotlib') from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def quality_points() -> list[dict]:
    """Points for :func:`plot_quality_vs_cost`: measured PSNR of the shipped weights (from their
    registry entries) and the paper's numbers for them (drawn hollow)."""
    from ..complexity import mult_adds
    from ..models import build_model
    from ..weights import get_weights, list_weights

    points = []
    for name in list_weights():
        entry = get_weights(name)
        net = build_model(entry.arch)
        for source, table, measured in (("", entry.meta.get("metrics", {}), True),
                                        (" (paper)", entry.meta.get("paper_psnr", {}), False)):  # fmt: skip
            for dataset, per_scale in table.items():
                for scale, value in per_scale.items():
                    psnr = value[0] if isinstance(value, tuple | list) else value
                    points.append({
                        "label": f"{name} x{scale}{source}",
                        "dataset": dataset,
                        "mult_adds": mult_adds(net, int(scale)) / 1e9,
                        "psnr": psnr,
                        "params": entry.meta["params_per_scale"][int(scale)],
                        "measured": measured,
                    })  # fmt: skip
    return points


def plot_quality_vs_cost(points: Sequence[dict], path: Path, title: str) -> None:
    """PSNR against Mult-Adds, bubble area proportional to params (the paper's Fig. 4 layout),
    one panel per dataset.

    Each point: ``label``, ``dataset``, ``mult_adds`` (G), ``psnr``, ``params``, ``measured``
    (bool; paper values are drawn hollow and unlabelled so they are never mistaken for ours).
    """
    plt = _pyplot()
    datasets = list(dict.fromkeys(p["dataset"] for p in points)) or ["-"]
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4.5), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for p in (q for q in points if q["dataset"] == dataset):
            size = max(30.0, p["params"] / 1500.0)
            face = "tab:blue" if p["measured"] else "none"
            edge = "tab:blue" if p["measured"] else "tab:gray"
            ax.scatter(p["mult_adds"], p["psnr"], s=size, facecolors=face, edgecolors=edge, alpha=0.75)
            if p["measured"]:
                ax.annotate(p["label"], (p["mult_adds"], p["psnr"]), textcoords="offset points", xytext=(8, -3),
                            fontsize=8)  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("Mult-Adds at 1280x720 output (G, log scale)")
        ax.set_ylabel("PSNR (dB), Y channel")
        ax.set_title(f"{dataset}")
        ax.grid(True, which="both", alpha=0.3)
        ax.text(0.01, 0.01, "filled: measured here; hollow grey: paper; area ~ params", transform=ax.transAxes,
                fontsize=7)  # fmt: skip
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


#: Bar hatching per precision (fp32 solid), so precisions of one backend stay apart in print.
PRECISION_HATCH = {"fp32": None, "fp16": "..", "int8": "xx"}


def plot_latency(rows: Sequence[dict], path: Path, title: str) -> None:
    """Grouped bars: median latency (with p90 whiskers) per (model, scale) and backend."""
    plt = _pyplot()
    ok = [r for r in rows if r.get("status") == "ok"]
    groups = list(dict.fromkeys(f"{r['model']} x{r['scale']}" for r in ok))
    graphs = {r.get("graph", "plain") for r in ok}
    precisions = {r.get("precision", "fp32") for r in ok}

    def series_of(r: dict) -> str:  # one bar series per backend, and per graph / precision when several ran
        return (r["backend"] + (f" ({r.get('graph', 'plain')})" if len(graphs) > 1 else "")
                + (f" {r.get('precision', 'fp32')}" if len(precisions) > 1 else ""))

    backends = list(dict.fromkeys(series_of(r) for r in ok))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups) * max(1, len(graphs))), 4.5))
    width = 0.8 / max(1, len(backends))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, backend in enumerate(backends):
        xs, meds, errs = [], [], []
        for g, group in enumerate(groups):
            hit = [r for r in ok if f"{r['model']} x{r['scale']}" == group and series_of(r) == backend]
            if hit:
                lat = hit[0]["latency_ms"]
                xs.append(g + (i - (len(backends) - 1) / 2) * width)
                meds.append(lat["median"])
                errs.append(max(0.0, lat["p90"] - lat["median"]))
        # One colour per backend; its plain-graph bars hatched beside the optimized ones, and its
        # lower precisions dotted beside fp32.
        base = backend.split(" ", 1)[0]
        color = colors[list(dict.fromkeys(b.split(" ", 1)[0] for b in backends)).index(base) % len(colors)]
        plain = "(plain)" in backend
        precision = backend.rsplit(" ", 1)[-1] if len(precisions) > 1 else "fp32"
        hatch = "//" if plain else PRECISION_HATCH.get(precision, "--")
        ax.bar(xs, meds, width, yerr=[[0] * len(errs), errs], label=backend, capsize=2, color=color,
               hatch=hatch, alpha=0.55 if plain or precision != "fp32" else 1)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel("latency, median (ms); whisker to p90")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

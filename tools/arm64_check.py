#!/usr/bin/env python3
"""Prove carn-mobile on 64-bit ARM Linux: install from the README, export every target available
here at x2 on a small fixed shape, re-check each with carn-parity, upscale a small image with each
backend, run the fast tests, and print one summary table.

Runs natively on an aarch64 machine or inside the qemu chroot that tools/arm64_chroot_check.sh
prepares. Standard library only: it runs before anything is installed. Under emulation the
wall times it prints are not performance figures.

    python3 tools/arm64_check.py --out arm64-report            # the whole check
    python3 tools/arm64_check.py --no-install --no-tests ...    # reuse .venv, skip pytest
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARM = ("aarch64", "arm64")
SHAPE = "24x32"  # small: emulation is 10-50x slower than native
SCALE = "2"


@dataclass
class Row:
    """One line of the summary: a step, what it was applied to, and how it went."""

    step: str
    subject: str
    result: str  # passed | failed | unavailable (a clear one-line refusal: not a failure)
    detail: str
    seconds: float


def readme_block(name: str) -> str:
    """The shell lines of the README block between <!-- NAME --> and <!-- /NAME -->."""
    lines, inside = [], False
    for line in (REPO / "README.md").read_text().splitlines():
        if line == f"<!-- {name} -->":
            inside = True
        elif line == f"<!-- /{name} -->":
            inside = False
        elif inside and not line.startswith("```"):
            lines.append(line)
    if not lines:
        raise SystemExit(f"arm64_check: README block {name!r} not found")
    return "\n".join(lines)


class Checker:
    def __init__(self, venv: Path, out: Path, verbose: bool) -> None:
        self.venv, self.out, self.verbose = venv, out, verbose
        self.rows: list[Row] = []
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def sh(self, label: str, command: str, timeout: float | None = None) -> tuple[int, str, float]:
        """Run ``command`` in bash with the venv active (when it exists); log its output."""
        activate = self.venv / "bin" / "activate"
        prefix = f". {shlex.quote(str(activate))} && " if activate.exists() else ""
        print(f"+ {command}", flush=True)
        start = time.perf_counter()
        try:
            proc = subprocess.run(["bash", "-c", prefix + command], cwd=REPO, capture_output=True, text=True,
                                  timeout=timeout)  # fmt: skip
            rc, text = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as exc:
            rc, text = 124, f"{exc.stdout or ''}{exc.stderr or ''}\ntimed out after {timeout} s"
        took = time.perf_counter() - start
        (self.logs / f"{label}.log").write_text(f"$ {command}\n{text}\nexit {rc}\n")
        if self.verbose:
            print(text)
        return rc, text, took

    def add(self, step: str, subject: str, result: str, detail: str, seconds: float) -> None:
        self.rows.append(Row(step, subject, result, detail, round(seconds, 1)))
        print(f"  {result:<11} {step} {subject}: {detail}", flush=True)

    def python(self, code: str) -> str:
        """Standard output of ``code`` run by the venv's Python (libraries write notes to stderr)."""
        proc = subprocess.run([str(self.venv / "bin" / "python"), "-c", code], cwd=REPO, capture_output=True,
                              text=True)  # fmt: skip
        if proc.returncode != 0:
            raise SystemExit(f"arm64_check: the venv's Python failed: {last_line(proc.stderr)}")
        return proc.stdout.strip()


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def clean_refusal(rc: int, text: str) -> bool:
    """A refusal the tools promise: exit 2 and an error line, no traceback."""
    return rc == 2 and "Traceback" not in text and "error" in text.lower()


def check_install(c: Checker) -> None:
    command = readme_block("quickstart:install")
    rc, text, took = c.sh("install", command)
    c.add("install", "README quick start", "passed" if rc == 0 else "failed",
          "exit 0" if rc == 0 else last_line(text), took)  # fmt: skip
    if rc != 0:
        raise SystemExit(1)


def check_environment(c: Checker) -> None:
    rc, text, took = c.sh("environment", "COLUMNS=200 carn-info --environment")
    (c.out / "environment.txt").write_text(text)
    c.add("environment", "carn-info --environment", "passed" if rc == 0 else "failed", f"exit {rc}", took)


def check_targets(c: Checker, targets: list[str], every: list[str]) -> list[Path]:
    """One ``carn-export --target all`` (each CLI start costs minutes under emulation): every target
    this platform can write, parity-gated; each one it skips is then asked for alone, which must be
    a clear one-line refusal."""
    exported = c.out / "exported"
    if not targets:
        return []
    asked = "all" if set(targets) == set(every) else ",".join(targets)  # all: skips what cannot run here
    out = shlex.quote(str(exported))
    rc, text, took = c.sh("export", f"carn-export --target {asked} --scale {SCALE} --shape {SHAPE} --out {out} --force")
    skipped = {}
    for line in text.splitlines():
        if line.startswith("skipping ") and ":" in line:
            name, reason = line[len("skipping "):].split(":", 1)
            skipped[name.strip()] = reason.strip()
    artifacts = []
    for target in targets:
        manifests = [m for m in exported.glob(f"*_x{SCALE}_*_{SHAPE}*.json")
                     if json.loads(m.read_text()).get("target") == target]  # fmt: skip
        if manifests:
            artifact = manifests[0].with_suffix("")
            c.add("export", target, "passed", f"{artifact.name} written (parity-gated)", took / len(targets))
            # A bundle (the web folder) is re-checked through its members, each with its own manifest.
            members = sorted(m.with_suffix("") for m in artifact.glob("models/*.json")) if artifact.is_dir() else []
            artifacts += members or [artifact]
            continue
        if target not in skipped:
            c.add("export", target, "failed", last_line(text) if rc else "no artifact written", took / len(targets))
            continue
        refused = shlex.quote(str(c.out / "refused"))
        rc1, text1, took1 = c.sh(f"export-{target}",
                                 f"carn-export --target {target} --scale {SCALE} --shape {SHAPE} --out {refused}")
        c.add("export", target, "unavailable" if clean_refusal(rc1, text1) else "failed", last_line(text1), took1)
    return artifacts


def check_parity(c: Checker, artifacts: list[Path], label: str = "parity") -> None:
    """One ``carn-parity`` over every artifact; a row per artifact from its JSON report."""
    if not artifacts:
        return
    report = c.out / f"{label}.json"
    names = " ".join(shlex.quote(str(a)) for a in artifacts)
    rc, text, took = c.sh(label, f"carn-parity {names} --json {shlex.quote(str(report))} --force")
    rows = json.loads(report.read_text())["reports"] if report.exists() else []
    reports = {Path(r["artifact"]).resolve(): r for r in rows}
    for artifact in artifacts:
        r = reports.get(artifact.resolve())
        name = f"{artifact.parents[1].name}/{artifact.name}" if artifact.parent.name == "models" else artifact.name
        if r is None:
            c.add(label, name, "failed", last_line(text), took / len(artifacts))
            continue
        detail = (f"{r['runner']}: max abs {r['max_abs']:.2g} (tolerance {r['tolerance']['max_abs']:g}), "
                  f"min PSNR {r['min_psnr_db']:.1f} dB")  # fmt: skip
        c.add(label, name, "passed" if r["status"] == "passed" else "failed", detail, took / len(artifacts))


def check_upscale(c: Checker, backends: list[str]) -> None:
    folder = c.out / "upscale"
    folder.mkdir(parents=True, exist_ok=True)
    image = folder / "input.png"
    c.python("from PIL import Image; from carn_mobile.testimage import natural_test_image_uint8 as t; "
             f"Image.fromarray(t(40, 56, seed=3)).save({str(image)!r})")  # fmt: skip
    outputs = {}
    for backend in backends:
        result = folder / f"{backend}.png"
        rc, text, took = c.sh(f"upscale-{backend}", f"carn-upscale {shlex.quote(str(image))} --scale {SCALE} "
                                                    f"--backend {backend} -o {shlex.quote(str(result))} --force "
                                                    "--no-progress")  # fmt: skip
        if rc != 0:
            c.add("upscale", backend, "unavailable" if clean_refusal(rc, text) else "failed", last_line(text), took)
            continue
        outputs[backend] = (result, took)
    if not outputs:
        return
    # Every backend against the torch backend's image, in 8-bit levels (rounding may differ by 1).
    reference = outputs.get("torch", next(iter(outputs.values())))[0]
    code = ("import json, numpy as np; from PIL import Image; "
            f"ref = np.asarray(Image.open({str(reference)!r}), dtype=np.int16); out = {{}}\n"
            f"for name, path in {({b: str(p) for b, (p, _) in outputs.items()})!r}.items():\n"
            "    img = np.asarray(Image.open(path), dtype=np.int16)\n"
            "    out[name] = [list(img.shape), int(np.abs(img - ref).max()) if img.shape == ref.shape else -1]\n"
            "print(json.dumps(out))")  # fmt: skip
    diffs = json.loads(c.python(code).splitlines()[-1])
    for backend, (_, took) in outputs.items():
        shape, diff = diffs[backend]
        ok = shape[:2] == [80, 112] and 0 <= diff <= 1
        c.add("upscale", backend, "passed" if ok else "failed",
              f"{shape[1]}x{shape[0]} output, max diff vs torch backend {diff} level(s)", took)  # fmt: skip


def check_tests(c: Checker, pytest_args: str) -> None:
    rc, text, took = c.sh("pytest", f"python -m pytest -m 'not slow' -q -p no:cacheprovider {pytest_args}")
    summary = next((ln for ln in reversed(text.splitlines()) if " passed" in ln or " failed" in ln), last_line(text))
    c.add("tests", "pytest -m 'not slow'", "passed" if rc == 0 else "failed", summary.strip("= "), took)


def write_summary(c: Checker) -> None:
    versions = c.python(
        "import json, platform; from importlib.metadata import version, PackageNotFoundError\n"
        "def v(n):\n    try: return version(n)\n    except PackageNotFoundError: return None\n"
        "names = ['torch', 'numpy', 'onnx', 'onnxruntime', 'onnxsim', 'onnxscript', 'coremltools', 'executorch', "
        "'litert-torch', 'ai-edge-litert', 'av']\n"
        "print(json.dumps({'machine': platform.machine(), 'system': platform.system(), "
        "'python': platform.python_version(), 'packages': {n: v(n) for n in names}}))"
    )  # fmt: skip
    info = json.loads(versions.splitlines()[-1])
    data = {"platform": info, "shape": SHAPE, "scale": int(SCALE), "rows": [asdict(r) for r in c.rows]}
    (c.out / "summary.json").write_text(json.dumps(data, indent=2) + "\n")
    lines = ["| step | subject | result | detail | wall s |", "|---|---|---|---|---|"]
    lines += [f"| {r.step} | {r.subject} | {r.result} | {r.detail.replace('|', '/')} | {r.seconds:g} |" for r in c.rows]
    packages = ", ".join(f"{k} {v}" for k, v in info["packages"].items() if v)
    head = f"{info['system']} {info['machine']}, Python {info['python']}; {packages}"
    (c.out / "summary.md").write_text(head + "\n\n" + "\n".join(lines) + "\n")
    print("\n" + head)
    width = max(len(r.step) + len(r.subject) for r in c.rows) + 3
    for r in c.rows:
        print(f"{(r.step + ' ' + r.subject):<{width}} {r.result:<11} {r.detail}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "arm64-check", help="folder for logs and the summary")
    p.add_argument("--venv", type=Path, default=REPO / ".venv", help="the venv the README install makes")
    p.add_argument("--no-install", action="store_true", help="reuse --venv as it is")
    p.add_argument("--no-tests", action="store_true", help="skip pytest -m 'not slow'")
    p.add_argument("--pytest-args", default="", help="extra pytest arguments, e.g. a -k selection")
    p.add_argument("--targets", help="comma list (default: every target)")
    p.add_argument("--backends", help="comma list of carn-upscale backends (default: every one)")
    p.add_argument("--verify", type=Path, action="append", default=[], metavar="ARTIFACT",
                   help="an artifact made elsewhere (e.g. a .mlpackage or .tflite from x86-64, with its .json "
                        "manifest beside it) to re-check here with carn-parity; repeatable")  # fmt: skip
    p.add_argument("--any-arch", action="store_true", help="run on a non-ARM machine too (to test this script)")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    if platform.machine().lower() not in ARM and not args.any_arch:
        print(f"arm64_check: this machine is {platform.machine()}, not aarch64; run it in the arm64 chroot "
              "(tools/arm64_chroot_check.sh) or pass --any-arch", file=sys.stderr)  # fmt: skip
        return 2
    missing = [a for a in args.verify if not (a.exists() and Path(f"{a}.json").is_file())]
    if missing:
        print(f"arm64_check: {missing[0]} or its manifest {missing[0]}.json is missing; pass an artifact that "
              "carn-export wrote", file=sys.stderr)  # fmt: skip
        return 2
    c = Checker(args.venv.resolve(), args.out.resolve(), args.verbose)
    if not args.no_install:
        check_install(c)
    elif not (c.venv / "bin" / "activate").exists():
        print(f"arm64_check: no venv at {c.venv}; drop --no-install to make it", file=sys.stderr)
        return 2
    check_environment(c)
    listed = c.python("from carn_mobile.export import list_targets; from carn_mobile.export.targets import "
                      "artifact_backends; print(','.join(list_targets())); print(','.join(['torch', "
                      "*sorted(artifact_backends())]))").splitlines()  # fmt: skip
    # An empty list ("--targets ''") skips that step.
    every = listed[-2].split(",")
    targets = every if args.targets is None else [t for t in args.targets.split(",") if t]
    backends = [b for b in (listed[-1] if args.backends is None else args.backends).split(",") if b]
    artifacts = check_targets(c, targets, every)
    check_parity(c, artifacts)
    check_parity(c, [a.resolve() for a in args.verify], label="verify")
    check_upscale(c, backends)
    if not args.no_tests:
        check_tests(c, args.pytest_args)
    write_summary(c)
    failed = [r for r in c.rows if r.result == "failed"]
    print(f"\n{len(c.rows) - len(failed)} of {len(c.rows)} checks passed or were cleanly unavailable; "
          f"{len(failed)} failed; summary in {c.out / 'summary.md'}")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

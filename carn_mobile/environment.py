"""What this installation can do here: installed runtimes against their tested ranges, and which
targets this platform can export and run.

The tested ranges are the ones declared in ``pyproject.toml`` (each end run with the test suite,
see docs/platforms.md); this module reads them from the installed package's metadata, or from
the checkout's ``pyproject.toml`` when carn-mobile runs from a source tree, so they are decided
in one place. Platform facts that no package metadata states are each target's own
(``Target.platform_limits``, ``Target.check_available``); this module asks the targets.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, requires
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

from .runtimes.optional import version_of

#: The distribution whose declared ranges are read.
DISTRIBUTION = "carn-mobile"


def describe_platform() -> str:
    """``"Linux aarch64, Python 3.11.7"``: the facts that decide which wheels and features apply."""
    return f"{platform.system()} {platform.machine()}, Python {platform.python_version()}"


@dataclass(frozen=True)
class PackageStatus:
    """One declared dependency: its tested range and what is installed."""

    name: str
    extra: str  # "" for a core dependency
    tested: str  # the specifier, e.g. ">=1.30,<1.33"
    installed: str | None

    @property
    def in_range(self) -> bool | None:
        """Whether the installed version is inside the tested range (``None``: not installed)."""
        if self.installed is None:
            return None
        try:
            version = Version(self.installed)
        except InvalidVersion:
            return False
        # A local build tag (torch's "+cpu") is the same release for this purpose.
        return Requirement(f"x{self.tested}").specifier.contains(Version(version.public), prereleases=True)


def _declared() -> list[str]:
    try:
        declared = requires(DISTRIBUTION)
    except PackageNotFoundError:
        declared = None
    if declared is not None:
        return declared
    import tomllib  # a source tree that was never installed: read the checkout's own file

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    rows = list(project["dependencies"])
    for extra, reqs in project.get("optional-dependencies", {}).items():
        for line in reqs:
            req = Requirement(line)
            marker = f"({req.marker}) and " if req.marker else ""
            rows.append(f'{req.name}{req.specifier}; {marker}extra == "{extra}"')
    return rows


def package_statuses(include_dev: bool = False) -> list[PackageStatus]:
    """Every declared dependency (core first, then by extra) with its installed version."""
    rows = []
    for line in _declared():
        req = Requirement(line)
        extra = ""
        if req.marker is not None:
            extra = next(iter(_extras_of(str(req.marker))), "")
            if not req.marker.evaluate({"extra": extra}):  # a row for another platform
                continue
        if extra == "dev" and not include_dev:
            continue
        # Lower end first: ">=1.30,<1.33" reads as a range.
        tested = ",".join(sorted((str(s) for s in req.specifier), key=lambda s: (not s.startswith(">"), s)))
        rows.append(PackageStatus(req.name, extra, tested, version_of(req.name)))
    return rows


def _extras_of(markers: str) -> list[str]:
    # Markers read like: extra == "export"; the extra's name is what the table groups by.
    parts = markers.split('extra == "')[1:]
    return [p.split('"', 1)[0] for p in parts]


@dataclass(frozen=True)
class Capability:
    """Whether one target can be exported, and its artifacts checked, on this machine."""

    target: str
    export: str | None  # None: can export; else why not
    runner: str | None  # the runner parity would use here, None when none is available
    runner_note: str | None  # why the preferred runner is not used, when it is not
    runner_detail: str | None = None  # what the runner is, where its name does not say (Runner.describe)


def capabilities() -> list[Capability]:
    """Per export target: can it be written here, and which runner checks it here."""
    from .export.targets import get_target, list_targets, usable_runners  # the gate's own rule
    from .runtimes import MissingDependencyError

    rows = []
    for name in list_targets():
        target = get_target(name)
        try:
            target.check_available()
            export = None
        except MissingDependencyError as exc:
            export = str(exc)
        usable, why_not = usable_runners(target)
        chosen = usable[0].name if usable else None
        rows.append(Capability(name, export, chosen, why_not if chosen != target.runners[0] else None,
                               usable[0].describe() if usable else None))
    return rows

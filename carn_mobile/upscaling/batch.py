"""Batches for ``carn-upscale``: files, folders and globs -> jobs -> outputs, with a summary.

Planning happens before any pixel is decoded, so problems with names show up at once:

* folders are scanned (not recursively) for image suffixes, globs are expanded (``**``
  recurses) and filtered the same way; a file named explicitly is always attempted;
* outputs are ``<stem>_x{scale}.<ext>``, beside each input, or in ``-o OUT_DIR``; ``-o FILE``
  names the single output;
* an output that would be an input file fails that job (even with ``--force``); outputs that
  would land on the same path fail every job involved (nothing is renamed behind your back);
  an existing output is skipped unless ``--force``.

Each job then runs on its own (:func:`process`): a failure is recorded and the batch goes on. What
the user sees (progress, summary, exit code) is the ``carn-upscale`` command's business.

Videos go through the same planning: an input is a video when Pillow cannot read it as an
image and FFmpeg opens it with a video stream (:func:`input_kind`), whatever its suffix; its
output keeps the container (``<stem>_x{scale}.mp4``) and is made by
:func:`~.video.upscale_video_file`.
"""

from __future__ import annotations

import glob
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .api import Upscaler, UpscaleReport, default_output
from .image import FORMATS, INPUT_SUFFIXES, SUFFIX_FORMATS, ImageError, format_for
from .video import VideoListener, VideoOptions, VideoReport, default_video_output, upscale_video_file
from .video_io import ENCODERS, VIDEO_SUFFIXES, is_media_file

Status = Literal["pending", "done", "skipped", "failed"]
Kind = Literal["image", "video"]

#: ``job.fmt`` of a video job (its container follows the output suffix).
VIDEO_FORMAT = "video"


class UsageError(ValueError):
    """Arguments that make the whole batch impossible (exit code 2)."""


@dataclass
class Job:
    """One input and what became of it."""

    src: Path | str  # a string for inputs that named no file (a missing path, an empty glob)
    dst: Path | None = None
    fmt: str | None = None
    status: Status = "pending"
    reason: str = ""
    report: UpscaleReport | VideoReport | None = None
    kind: Kind = "image"


@dataclass
class OutputTarget:
    """``-o``: a folder, one file, or (``path=None``) beside each input."""

    path: Path | None
    is_file: bool = False

    @classmethod
    def parse(cls, text: str | None) -> OutputTarget:
        """A path is a file if it has a suffix, is not an existing folder and has no trailing slash."""
        if text is None:
            return cls(None)
        p = Path(text)
        if text.endswith(("/", os.sep)) or p.is_dir() or not p.suffix:
            return cls(p)
        if p.suffix.lower() not in SUFFIX_FORMATS and p.suffix.lower() not in ENCODERS:
            raise UsageError(
                f"-o {text}: unsupported output suffix {p.suffix!r} (use .png, .jpg or .webp for images, "
                f"{', '.join(sorted(ENCODERS))} for videos, or end the path with / for a folder)"
            )
        return cls(p, is_file=True)

    @property
    def is_video_file(self) -> bool:
        return self.is_file and self.path is not None and self.path.suffix.lower() in ENCODERS


@dataclass
class Batch:
    """The planned jobs of one command."""

    jobs: list[Job] = field(default_factory=list)

    def count(self, status: Status) -> int:
        return sum(j.status == status for j in self.jobs)

    @property
    def pending(self) -> list[Job]:
        return [j for j in self.jobs if j.status == "pending"]


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _scan(paths: Sequence[Path]) -> list[Path]:
    suffixes = INPUT_SUFFIXES | VIDEO_SUFFIXES
    return sorted(p for p in paths if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith("."))


def _pillow_reads(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.format != "MPEG"  # Pillow identifies MPEG files but cannot decode them
    except Exception:  # not an image to Pillow (or unreadable: reading it later says why)
        return False


def input_kind(path: Path) -> Kind:
    """``"image"`` if Pillow reads it, ``"video"`` if FFmpeg opens it as media or the suffix says so.

    Probing, not the name, decides: a clip named ``.bin`` is a video, a PNG named ``.mp4`` an image.
    """
    if not path.is_file() or _pillow_reads(path):
        return "image"
    if path.suffix.lower() in VIDEO_SUFFIXES or is_media_file(path):
        return "video"
    return "image"  # neither: the image reader's error says what is wrong


def collect_inputs(specs: Sequence[str]) -> tuple[list[Job], bool]:
    """Expand INPUT arguments into jobs; returns them and whether every INPUT was a plain file.

    Missing paths, globs without matches and folders without images become failed jobs.
    The same file reached twice is kept once.
    """
    jobs: list[Job] = []
    only_files = True
    seen: set[str] = set()

    def add(p: Path) -> None:
        key = os.path.normcase(os.path.realpath(p))
        if key not in seen:
            seen.add(key)
            jobs.append(Job(p))

    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            only_files = False
            try:
                found = _scan(list(p.iterdir()))
            except OSError as exc:
                jobs.append(Job(spec, status="failed", reason=f"cannot list the folder: {exc.strerror or exc}"))
                continue
            if not found:
                jobs.append(Job(spec, status="failed", reason="folder contains no image or video files"))
            for f in found:
                add(f)
        elif p.exists() or os.path.islink(p):
            add(p)  # any explicit file, image suffix or not: reading it says what is wrong
        elif _is_glob(spec):
            only_files = False
            found = _scan([Path(m) for m in glob.glob(spec, recursive=True)])
            if not found:
                jobs.append(Job(spec, status="failed", reason="pattern matched no image or video files"))
            for f in found:
                add(f)
        else:
            jobs.append(Job(spec, status="failed", reason="no such file or folder"))
    return jobs, only_files


def plan(specs: Sequence[str], target: OutputTarget, scale: int, fmt: str | None, force: bool) -> Batch:
    """Jobs with output paths, collisions and existing outputs resolved (see module doc)."""
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"unsupported format {fmt!r}; use one of {', '.join(FORMATS)}")
    jobs, only_files = collect_inputs(specs)
    files = [j for j in jobs if j.status == "pending"]
    for job in files:
        job.kind = input_kind(Path(job.src))
    if target.is_file and files:
        kind = files[0].kind
        if kind == "video" and not target.is_video_file:
            raise UsageError(f"-o {target.path}: the input is a video; name a video file "
                             f"({', '.join(sorted(ENCODERS))}) or a folder")
        if kind == "image" and target.is_video_file:
            raise UsageError(f"-o {target.path} names a video file but the input is an image")
    if target.is_file:
        if len(jobs) != 1:
            raise UsageError(f"-o {target.path} names one output file but there are {len(jobs)} inputs; use -o DIR")
        # --format is for images; a video output's container follows its suffix.
        if fmt is not None and not target.is_video_file and fmt != format_for(target.path):  # type: ignore[arg-type]
            raise UsageError(f"--format {fmt} contradicts the output file name {target.path}")
    elif target.path is None and not only_files:
        raise UsageError("folders and globs need -o OUT_DIR, so that outputs never land among the inputs")
    for job in files:
        src = Path(job.src)
        if job.kind == "video":
            job.fmt = VIDEO_FORMAT  # --format is for images; a video keeps its container
            job.dst = target.path if target.is_file else default_video_output(src, scale, target.path)
        elif target.is_file:
            job.fmt, job.dst = format_for(target.path), target.path  # type: ignore[arg-type]
        else:
            job.fmt = fmt or format_for(src)
            job.dst = default_output(src, scale, job.fmt, target.path)
    _check_outputs(files, force)
    return Batch(jobs)


def _key(p: Path) -> str:
    return os.path.normcase(os.path.abspath(p))


def _check_outputs(files: list[Job], force: bool) -> None:
    inputs = {_key(Path(j.src)): j for j in files}
    inputs.update({os.path.normcase(os.path.realpath(j.src)): j for j in files})
    by_dst: dict[str, list[Job]] = defaultdict(list)
    for j in files:
        by_dst[_key(j.dst)].append(j)  # type: ignore[arg-type]
    for group in by_dst.values():
        if len(group) > 1:
            names = ", ".join(str(j.src) for j in group)
            for j in group:
                j.status, j.reason = "failed", f"output name collision: {names} would all write {j.dst}"
    for j in files:
        if j.status != "pending":
            continue
        dst = j.dst
        assert dst is not None
        clash = inputs.get(_key(dst)) or inputs.get(os.path.normcase(os.path.realpath(dst)))
        if clash is not None:
            j.status, j.reason = "failed", f"output {dst} would overwrite the input {clash.src}"
        elif dst.is_dir():
            j.status, j.reason = "failed", f"output {dst} is a folder"
        elif (dst.exists() or dst.is_symlink()) and not force:
            if j.kind == "video":  # an error, so a script never takes an old clip for the one it asked for
                j.status, j.reason = "failed", f"{dst} exists; pass --force to overwrite it"
            else:  # a re-run resumes an image batch
                j.status, j.reason = "skipped", f"{dst} exists (pass --force to overwrite)"


def check_output_dir(target: OutputTarget) -> None:
    """Fail early (usage error) if the output folder cannot be created or written."""
    folder = target.path.parent if target.is_file else target.path
    if folder is None:
        return
    probe = Path(os.path.abspath(folder))
    while not probe.exists():
        if probe.is_symlink():
            raise UsageError(f"output folder {folder}: {probe} is a dangling link")
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"output folder {folder} cannot be created: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"output folder {folder} is not writable ({probe}: permission denied)")


def _inode(p: Path) -> tuple[int, int] | None:
    try:
        st = p.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ImageError):
        return exc.reason
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    if isinstance(exc, (ValueError, OSError, ImportError)):  # ImportError: a missing extra, with its hint
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class BatchListener:
    """Hears :func:`process` work through a batch; override what you need (all do nothing)."""

    def started(self, job: Job, pending: int) -> None:
        """``job`` is about to run; ``pending`` jobs are in the batch in all."""

    def tile(self, job: Job, done: int, total: int) -> None:
        """``done`` of ``total`` tiles of ``job`` are finished."""

    def frame(self, job: Job, done: int, total: int | None, elapsed: float) -> None:
        """``done`` frames of the video ``job`` are upscaled (``total`` expected, ``None``: unknown)."""

    def finished(self, job: Job) -> None:
        """``job`` is done or failed (see ``job.status`` and ``job.reason``)."""


class _FrameRelay(VideoListener):
    def __init__(self, listener: BatchListener, job: Job) -> None:
        self.listener, self.job = listener, job

    def frame(self, done: int, total: int | None, elapsed: float) -> None:
        self.listener.frame(self.job, done, total, elapsed)


def process(batch: Batch, upscaler: Upscaler, *, quality: int, force: bool,
            listener: BatchListener | None = None, video: VideoOptions | None = None) -> Batch:
    """Upscale every pending job; a failure is recorded on its job and the others go on."""
    listener = listener or BatchListener()
    pending = batch.pending
    written: set[tuple[int, int]] = set()  # (device, inode) of outputs of this run
    for job in pending:
        listener.started(job, len(pending))
        assert job.dst is not None and job.fmt is not None
        try:
            if _inode(job.dst) in written:  # e.g. names differing only in case on a case-insensitive disk
                raise ImageError(f"output {job.dst} is a file this batch already wrote")
            if job.kind == "video":
                job.report = upscale_video_file(upscaler, job.src, job.dst, options=video, force=force,
                                                listener=_FrameRelay(listener, job))
            else:
                job.report = upscaler.upscale_file(
                    job.src, job.dst, format=job.fmt, quality=quality, force=force,
                    progress=lambda done, total, job=job: listener.tile(job, done, total),
                )  # fmt: skip
            written.add(_inode(job.dst))  # type: ignore[arg-type]
            job.status = "done"
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # one bad image must not stop the batch
            job.status, job.reason = "failed", _reason(exc)
        listener.finished(job)
    return batch

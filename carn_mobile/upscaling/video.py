"""Video through the upscaler: frame iterators and files, streamed with bounded memory.

* :func:`upscale_frames` maps an iterable of frames (arrays or Pillow images) to upscaled
  ones, reading ahead in a thread; nothing but a few frames is ever held.
* :func:`upscale_video_file` decodes a file, upscales each frame with an :class:`Upscaler`
  (its backend, tiling and memory budget), and encodes it, in three overlapping stages
  (:mod:`.stages`): decoding and encoding run in threads beside the network. The output is
  written to a temporary file and renamed at the end, so a failure leaves nothing behind; the
  input is only read.
* :func:`upscale_video` is the one-call form.

Timestamps, rotation, audio and subtitles are kept as :mod:`.video_io` describes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..fileio import atomic_output, check_writable
from ..models import CARN
from .api import Upscaler, same_file
from .image import ImageData, ImageError, check_pixel_count
from .stages import DEFAULT_DEPTH, Prefetch, Sink
from .video_io import DEFAULT_CRF, ENCODERS, MAX_CRF, Frame, VideoReader, VideoWriter, check_crf, pick_encoder

#: Output suffix when the input's own is not a container we write.
DEFAULT_VIDEO_SUFFIX = ".mp4"


@dataclass(frozen=True)
class VideoOptions:
    """How to encode and which part of the clip to take."""

    codec: str | None = None  # encoder name; default: the best for the output suffix (H.264 for .mp4)
    crf: int = DEFAULT_CRF
    start: float | None = None  # seconds
    duration: float | None = None  # seconds
    depth: int = DEFAULT_DEPTH  # frames waiting between two stages

    def __post_init__(self) -> None:
        if isinstance(self.crf, bool) or not isinstance(self.crf, int) or not 0 <= self.crf <= MAX_CRF:
            raise ValueError(f"crf must be a whole number within 0..{MAX_CRF}, got {self.crf!r}")


@dataclass
class VideoReport:
    """What happened to one clip."""

    input_size: tuple[int, int]  # (width, height)
    output_size: tuple[int, int]
    scale: int
    frames: int
    clip_seconds: float  # the span of the frames written, in the clip's own time
    wall_seconds: float
    encoder: str
    pix_fmt: str
    copied: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    output: Path | None = None

    @property
    def fps(self) -> float:
        """Frames upscaled per wall-clock second."""
        return self.frames / self.wall_seconds if self.wall_seconds > 0 else float("inf")

    @property
    def realtime(self) -> float:
        """Clip seconds per wall second: 1.0 is real time."""
        return self.clip_seconds / self.wall_seconds if self.wall_seconds > 0 else float("inf")

    def summary(self) -> str:
        """``"120 frames in 61.2 s: 1.96 fps, 0.07x real time"``."""
        return (f"{self.frames} frames in {self.wall_seconds:.1f} s: {self.fps:.2f} fps, "
                f"{self.realtime:.2f}x real time")


class VideoListener:
    """Hears a clip being upscaled (override what you need; the defaults do nothing)."""

    def frame(self, done: int, total: int | None, elapsed: float) -> None:
        """``done`` frames written to the encoder of ``total`` expected (``None``: unknown)."""


def parse_seconds(text: str) -> float:
    """``"90"``, ``"1.5"``, ``"01:30"``, ``"0:01:30.5"`` -> seconds (non-negative)."""
    parts = text.strip().split(":")
    try:
        if len(parts) > 3 or any(p.strip() == "" for p in parts):
            raise ValueError
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"invalid time {text!r}: use seconds (90, 1.5) or [HH:]MM:SS[.ms]") from None
    seconds = 0.0
    for v in values:
        seconds = seconds * 60 + v
    if not (seconds >= 0 and seconds < float("inf")) or any(v < 0 for v in values):
        raise ValueError(f"invalid time {text!r}: it must be a finite, non-negative time")
    if len(values) > 1 and any(v >= 60 for v in values[1:]):
        raise ValueError(f"invalid time {text!r}: minutes and seconds must be below 60")
    return seconds


def default_video_output(src: Path, scale: int, out_dir: Path | None = None) -> Path:
    """``<stem>_x{scale}<suffix>``: the input's suffix when we write it, else ``.mp4``."""
    suffix = src.suffix.lower() if src.suffix.lower() in ENCODERS else DEFAULT_VIDEO_SUFFIX
    return (out_dir if out_dir is not None else src.parent) / f"{src.stem}_x{scale}{suffix}"


@dataclass(frozen=True)
class Streamed:
    """What :func:`stream_clip` wrote: the frame count and the first and last frame times (seconds)."""

    frames: int
    first: float
    last: float


def stream_clip(
    reader: VideoReader,
    writer: VideoWriter,
    transform: Callable[[np.ndarray], np.ndarray],
    *,
    depth: int = DEFAULT_DEPTH,
    on_frame: Callable[[int], None] | None = None,
) -> Streamed:
    """Decode every frame of ``reader``, map its RGB pixels through ``transform`` and encode them
    into ``writer`` (copied packets pass through in order), in three overlapping stages.

    ``transform`` runs in the caller's thread, decoding and encoding in their own; ``on_frame(n)``
    is called after the ``n``-th frame is handed to the encoder. On success the writer is closed
    (trailer written); on any failure both threads are stopped, the writer is abandoned and the
    error re-raised. The decoding thread is always joined before this returns, so the reader may
    be closed afterwards.
    """

    def encode(item: Any) -> None:
        if isinstance(item, tuple):
            writer.write_frame(*item)
        else:
            writer.write_packet(item)

    sink: Sink = Sink(encode, depth, name="encode")
    done, first, last = 0, None, None
    items = Prefetch(reader.items(), depth, name="decode")
    try:
        for item in items:
            if not isinstance(item, Frame):
                sink.put(item)
                continue
            sink.put((item, transform(item.rgb)))
            done += 1
            first = item.time if first is None else first
            last = item.time
            if on_frame is not None:
                on_frame(done)
        sink.close()
        writer.close()
    except BaseException:
        sink.abort()
        writer.abort()
        raise
    finally:
        items.close()  # before the reader's demuxer closes under the decoding thread
    assert first is not None and last is not None  # the reader raises on zero frames
    return Streamed(done, first, last)


def upscale_video_file(
    upscaler: Upscaler,
    src: str | os.PathLike,
    dst: str | os.PathLike | None = None,
    *,
    options: VideoOptions | None = None,
    force: bool = False,
    listener: VideoListener | None = None,
) -> VideoReport:
    """Upscale the clip ``src`` into ``dst`` (default ``<stem>_x{scale}.<ext>`` beside it).

    Raises :class:`~carn_mobile.upscaling.video_io.VideoError` (a ``ValueError``) for bad
    input, ``FileExistsError`` for an existing ``dst`` without ``force``, ``OSError`` when
    the output cannot be written; in every case no output file is left.
    """
    options = options or VideoOptions()
    listener = listener or VideoListener()
    src_path = Path(src)
    dst_path = Path(dst) if dst is not None else default_video_output(src_path, upscaler.scale)
    if same_file(src_path, dst_path):
        raise ImageError(f"output {dst_path} is the input file itself; refusing to overwrite an input")
    check_writable(dst_path, force)
    encoder, notes = pick_encoder(dst_path.suffix, options.codec)  # before any decoding
    check_crf(encoder, options.crf)
    started = time.perf_counter()
    with VideoReader(src_path, start=options.start, duration=options.duration) as reader:
        info = reader.info()
        check_pixel_count((info.width, info.height), upscaler.max_pixels)
        total = info.frames_estimate(options.start, options.duration)
        notes += reader.notes
        tiling = upscaler.describe_plan(upscaler.plan(info.height, info.width), info.height, info.width)
        notes += [tiling] if tiling else []  # every frame is planned alike

        def upscale_rgb(rgb: np.ndarray) -> np.ndarray:
            return upscaler.upscale_data(ImageData(rgb))[0].pixels

        def progress(done: int) -> None:
            listener.frame(done, total, time.perf_counter() - started)

        with atomic_output(dst_path, force) as tmp:
            writer = VideoWriter(tmp, reader, encoder=encoder, crf=options.crf)
            try:
                streamed = stream_clip(reader, writer, upscale_rgb, depth=options.depth, on_frame=progress)
            except OSError as exc:
                if exc.filename is not None and Path(exc.filename) == tmp:
                    # Name the file the user asked for, not the temporary one that is being removed.
                    raise OSError(exc.errno, exc.strerror or str(exc), str(dst_path)) from None
                raise
        setup = writer.setup
        assert setup is not None
    fps = float(info.fps) if info.fps else 30.0
    return VideoReport(
        input_size=(info.width, info.height),
        output_size=setup.size,
        scale=upscaler.scale,
        frames=streamed.frames,
        clip_seconds=(streamed.last - streamed.first) + 1.0 / fps,
        wall_seconds=time.perf_counter() - started,
        encoder=setup.encoder,
        pix_fmt=setup.pix_fmt,
        copied=setup.copied,
        notes=notes + setup.notes,
        output=dst_path,
    )


FrameLike = np.ndarray | Image.Image


def upscale_frames(
    frames: Iterable[FrameLike],
    scale: int = 4,
    model: str | CARN | None = "carn-m",
    *,
    upscaler: Upscaler | None = None,
    depth: int = DEFAULT_DEPTH,
    **options: Any,
) -> Iterator[FrameLike]:
    """Upscale a stream of frames lazily: each array or Pillow image in, the same kind out.

    The next frames are read in a background thread (at most ``depth`` ahead) while the
    network runs, so a decoder feeding ``frames`` overlaps with the model. Pass a ready
    ``upscaler`` to reuse one, else ``scale``, ``model`` and :class:`Upscaler` options.
    """
    if upscaler is not None and options:
        raise ValueError("pass Upscaler options or a ready upscaler, not both")
    up = upscaler if upscaler is not None else Upscaler(scale, model, **options)
    with Prefetch(frames, depth, name="frames") as ahead:
        for frame in ahead:
            yield up.upscale(frame)


def upscale_video(
    src: str | os.PathLike,
    output: str | os.PathLike | None = None,
    scale: int = 4,
    model: str | CARN | None = "carn-m",
    *,
    codec: str | None = None,
    crf: int = DEFAULT_CRF,
    start: float | None = None,
    duration: float | None = None,
    force: bool = False,
    **options: Any,
) -> VideoReport:
    """Upscale a video file into ``output`` (default ``<stem>_x{scale}.<ext>``); returns its report.

    ``options`` go to :class:`Upscaler` (``backend``, ``weights``, ``tile``, ``max_memory``...).
    """
    up = Upscaler(scale, model, **options)
    opts = VideoOptions(codec=codec, crf=crf, start=start, duration=duration)
    return upscale_video_file(up, src, output, options=opts, force=force)


__all__ = [
    "Streamed",
    "VideoListener",
    "VideoOptions",
    "VideoReport",
    "default_video_output",
    "parse_seconds",
    "stream_clip",
    "upscale_frames",
    "upscale_video",
    "upscale_video_file",
]

"""Video files through PyAV (FFmpeg in its wheels): probe, decode to RGB frames, encode, copy streams.

What a user expects to keep, and how:

* frame count, frame rate and timestamps: every decoded frame is encoded with its own
  presentation timestamp in the input's time base (variable frame rate stays variable);
* rotation: the display matrix's rotation is set on the output stream (pixels are not turned);
* audio and subtitle streams: their packets are copied, never re-encoded, when the output
  container can hold their codec; otherwise the stream is dropped with a note naming a container
  that can (``.mkv`` holds almost anything);
* colour: frames are converted to RGB with the input's matrix and range, and back with the
  same, and the output is tagged like the input; container and stream metadata are copied.

The network sees 8-bit RGB; 10-bit input is noted, not silently narrowed.
"""

from __future__ import annotations

import fractions
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..runtimes.optional import require
from .image import ImageError

#: Suffixes taken as video when scanning folders (explicit files are probed whatever their name).
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"})

#: Encoders tried in order per output suffix: the most widely playable first.
ENCODERS: dict[str, tuple[str, ...]] = {
    ".mp4": ("libx264", "libopenh264", "libx265", "mpeg4"),
    ".m4v": ("libx264", "libopenh264", "mpeg4"),
    ".mov": ("libx264", "libopenh264", "mpeg4"),
    ".mkv": ("libx264", "libopenh264", "libx265", "libvpx-vp9", "mpeg4"),
    ".webm": ("libvpx-vp9", "libsvtav1", "libaom-av1", "libvpx"),
    ".avi": ("libx264", "mpeg4"),
}

#: Encoders with a constant-quality (CRF) mode and their CRF range; others get a bit rate
#: (:func:`quality_options`). x264 takes a CRF above 51 without a word and x265 refuses it at
#: open, so the range is checked before any work.
CRF_RANGES: dict[str, tuple[int, int]] = {
    "libx264": (0, 51), "libx265": (0, 51), "libvpx-vp9": (0, 63), "libvpx": (4, 63),
    "libsvtav1": (0, 63), "libaom-av1": (0, 63),
}

#: The widest CRF any encoder takes: what ``--crf`` accepts before the encoder is known.
MAX_CRF = max(high for _, high in CRF_RANGES.values())

#: Default constant rate factor: visually near-lossless for H.264 at the cost of a larger file.
DEFAULT_CRF = 18

#: Pixel format of the output: 4:2:0 is what every player and phone decodes in hardware.
DEFAULT_PIX_FMT = "yuv420p"

#: Copied stream types (video is re-encoded; data streams such as timecodes are dropped with a note).
COPIED_TYPES = ("audio", "subtitle")


class VideoError(ImageError):
    """A video that cannot be read or written; ``reason`` omits the path."""


def av_module() -> ModuleType:
    """PyAV, or an error naming the ``video`` extra."""
    return require("av", "video", "video input and output")


def _ffmpeg_reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).rstrip(".")


# ---------------------------------------------------------------------------- probing


def _is_still_image_format(fmt_name: str) -> bool:
    # FFmpeg opens PNG/JPEG/... as one-frame "videos" through its image demuxers.
    return fmt_name.endswith("_pipe") or fmt_name in {"image2", "gif", "apng", "webp_pipe"}


def is_media_file(path: str | Path) -> bool:
    """Whether FFmpeg opens ``path`` as an audio/video container (not a still image).

    ``False`` when PyAV is missing (a file with a video suffix then fails with the install hint).
    An audio-only file counts: upscaling it then says plainly that it has no video stream.
    """
    try:
        av = av_module()
    except ImportError:
        return False
    try:
        with av.open(str(path), "r", metadata_errors="ignore") as c:
            return bool(c.streams) and not _is_still_image_format(c.format.name)
    except Exception:  # anything FFmpeg cannot open is no media file for this purpose
        return False


def describe_streams(container: Any) -> str:
    """``"#0 video h264, #1 audio aac"``: what a file holds, for messages."""
    parts = []
    for s in container.streams:
        codec = _codec_name(s)
        parts.append(f"#{s.index} {s.type} {codec}")
    return ", ".join(parts) or "no streams"


def _codec_name(stream: Any) -> str:
    # No codec context means FFmpeg has no decoder for the stream's codec (e.g. an unknown FourCC).
    return stream.codec_context.name if stream.codec_context is not None else "unknown codec"


@dataclass(frozen=True)
class VideoInfo:
    """What probing a video file tells: enough for planning and progress."""

    width: int
    height: int
    codec: str
    fps: fractions.Fraction | None
    frames: int | None  # from the container's index; None when it does not say
    duration: float | None  # seconds
    streams: str

    def frames_estimate(self, start: float | None = None, duration: float | None = None) -> int | None:
        """Frames expected in ``[start, start + duration)``, for a progress bar; ``None`` when unknown."""
        total = self.frames or (round(self.duration * float(self.fps)) if self.duration and self.fps else None)
        if total is None or self.fps is None or (start is None and duration is None):
            return total
        left = max(total - round((start or 0.0) * float(self.fps)), 0)
        return min(left, round(duration * float(self.fps))) if duration is not None else left


# ---------------------------------------------------------------------------- reading


@dataclass
class Frame:
    """One decoded frame: RGB pixels and its presentation time (already shifted by ``--start``)."""

    rgb: np.ndarray  # H x W x 3 uint8
    pts: int  # in the reader's time_base
    time: float  # seconds
    rotation: int = 0


class VideoReader:
    """Open a video file, check it, and iterate its frames and the packets to copy, in file order.

    Args:
        path: the input; never written.
        start: first second to keep (seeks to the key frame before, then drops frames before it).
        duration: seconds to keep from ``start``.
    """

    def __init__(self, path: str | Path, *, start: float | None = None, duration: float | None = None) -> None:
        av = av_module()
        self.path = Path(path)
        if start is not None and (not math.isfinite(start) or start < 0):
            raise ValueError(f"--start must be a non-negative number of seconds, got {start}")
        if duration is not None and (not math.isfinite(duration) or duration <= 0):
            raise ValueError(f"--duration must be a positive number of seconds, got {duration}")
        self.start, self.duration = start, duration
        if not self.path.exists():
            raise VideoError("no such file", self.path)
        try:
            self.container = av.open(str(self.path), "r", metadata_errors="ignore")
        except Exception as exc:
            raise VideoError(f"cannot be opened as a video: not a video, damaged or truncated "
                             f"(FFmpeg: {_ffmpeg_reason(exc)})", self.path) from None
        try:
            self._check()
        except BaseException:
            self.container.close()
            raise
        self.notes: list[str] = []
        if len(self.container.streams.video) > 1:
            self.notes.append(f"{len(self.container.streams.video)} video streams: the first (#{self.stream.index}) "
                              "is upscaled, the others are dropped")
        for s in self.container.streams:
            if s.type not in ("video", *COPIED_TYPES):
                self.notes.append(f"stream #{s.index} ({s.type}) is not copied: only audio and subtitles are")
        bits = self.stream.codec_context.format.components[0].bits if self.stream.codec_context.format else 8
        if bits > 8:
            self.notes.append(f"{bits}-bit video: upscaled and written in 8 bits per sample")
        self.video_packets = 0
        self.frames_read = 0

    def _check(self) -> None:
        c = self.container
        if _is_still_image_format(c.format.name):
            raise VideoError("is a still image, not a video", self.path)
        if not c.streams.video:
            raise VideoError(f"has no video stream ({describe_streams(c)})", self.path)
        self.stream = c.streams.video[0]
        cc = self.stream.codec_context
        if cc is None or not cc.is_decoder:
            raise VideoError(f"no decoder here for its video codec ({describe_streams(c)})", self.path)
        if not cc.width or not cc.height:
            raise VideoError("its video stream has no frame size (damaged header?)", self.path)
        cc.thread_type = "AUTO"  # frame and slice threads: decoding must keep up with the model
        self.copies = [s for s in c.streams if s.type in COPIED_TYPES and s.codec_context is not None]

    @property
    def time_base(self) -> fractions.Fraction:
        return self.stream.time_base

    def info(self) -> VideoInfo:
        s, c = self.stream, self.container
        fps = s.average_rate or s.guessed_rate or s.base_rate
        duration = float(s.duration * s.time_base) if s.duration else (c.duration / 1e6 if c.duration else None)
        return VideoInfo(
            width=s.codec_context.width,
            height=s.codec_context.height,
            codec=s.codec_context.name,
            fps=fractions.Fraction(fps) if fps else None,
            frames=s.frames or None,
            duration=duration,
            streams=describe_streams(c),
        )

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _frame_time(self, f: Any, index: int, fps: float) -> tuple[int, float]:
        tb = self.time_base
        if f.pts is None:  # some AVI/raw streams carry none: count frames instead
            t = index / fps
            return round(t / tb), t
        return int(f.pts), float(f.pts * tb)

    def items(self) -> Iterator[Frame | Any]:
        """Frames (RGB, shifted timestamps) and packets to copy (shifted), in demux order.

        Raises :class:`VideoError` for a damaged or truncated file and for zero frames.
        """
        av = av_module()
        from av.video.reformatter import VideoReformatter

        start, end = self.start or 0.0, None if self.duration is None else (self.start or 0.0) + self.duration
        windowed = self.start is not None or self.duration is not None
        if self.start:
            self.container.seek(int(self.start * av.time_base), any_frame=False, backward=True)
        tb = self.time_base
        shift = round(start / tb)
        info = self.info()
        fps = float(info.fps) if info.fps else 30.0
        eps = float(tb)  # one tick: the window's ends are rounded to the time base too
        to_rgb = VideoReformatter()
        decoded = 0
        for packet in self.container.demux(self.stream, *self.copies):
            if packet.stream.index != self.stream.index:
                if packet.size == 0:
                    continue
                if _shift_packet(packet, start, end, windowed):
                    yield packet
                continue
            if packet.size:
                self.video_packets += 1
            try:
                frames = packet.decode()
            except av.FFmpegError as exc:
                raise VideoError(
                    f"damaged or truncated video after frame {self.frames_read} (FFmpeg: {_ffmpeg_reason(exc)})",
                    self.path,
                ) from None
            for f in frames:
                pts, t = self._frame_time(f, decoded, fps)
                decoded += 1
                if t < start - eps:
                    continue
                if end is not None and t >= end - eps:
                    self._finish(windowed)
                    return
                rgb = to_rgb.reformat(f, format="rgb24", src_colorspace=_colorspace(f.colorspace),
                                      src_color_range=f.color_range or None).to_ndarray()
                self.frames_read += 1
                yield Frame(rgb, pts - shift, t - start, f.rotation or 0)
        self._finish(windowed)

    def _finish(self, windowed: bool) -> None:
        if self.frames_read == 0:
            where = " in the --start/--duration window" if windowed else ""
            raise VideoError(f"no video frames could be decoded{where}", self.path)
        listed = self.stream.frames
        if not windowed and listed and self.video_packets < listed:
            raise VideoError(
                f"truncated: the container lists {listed} video frames but the file holds only "
                f"{self.video_packets}", self.path)


def _shift_packet(packet: Any, start: float, end: float | None, windowed: bool) -> bool:
    """Keep ``packet`` if it lies in the window, with its timestamps moved by ``-start``."""
    if not windowed:
        return True
    if packet.pts is None:
        return False  # no place in a cut window
    t = float(packet.pts * packet.time_base)
    if t < start or (end is not None and t >= end):
        return False
    shift = round(start / packet.time_base)
    packet.pts -= shift
    if packet.dts is not None:
        packet.dts -= shift
    return True


def _colorspace(value: int) -> Any:
    """The frame's matrix as PyAV's enum, or ``None`` (FFmpeg's default, BT.601) when unknown."""
    from av.video.reformatter import Colorspace

    try:
        return Colorspace(value)
    except ValueError:
        return None


# ---------------------------------------------------------------------------- writing


def pick_encoder(suffix: str, requested: str | None) -> tuple[str, list[str]]:
    """The encoder for an output suffix: ``requested`` if usable, else the first available of :data:`ENCODERS`.

    Returns the encoder name and notes (a fallback is always noted).
    """
    suffix = suffix.lower()
    if suffix not in ENCODERS:
        raise VideoError(f"unsupported video output suffix {suffix!r}; use one of {', '.join(sorted(ENCODERS))}")
    with _probe_output(suffix) as out:
        holds = set(out.supported_codecs)
    if requested is not None:
        codec = check_encoder(requested, suffix)
        if codec.canonical_name not in holds and codec.name not in holds:
            raise VideoError(f"--codec {requested} ({codec.canonical_name}) cannot be stored in {suffix} files")
        return codec.name, []
    choices = available_encoders(suffix)
    if not choices:
        raise VideoError(f"this FFmpeg build has no encoder for {suffix} files (tried {', '.join(ENCODERS[suffix])})")
    first = ENCODERS[suffix][0]
    notes = [] if choices[0] == first else [f"no {first} encoder in this FFmpeg build: using {choices[0]}"]
    return choices[0], notes


def check_encoder(name: str, suffix: str = ".mp4") -> Any:
    """The PyAV codec of the video encoder ``name``; a clear error if this FFmpeg build has none."""
    av = av_module()
    try:
        codec = av.Codec(name, "w")
    except Exception:
        raise VideoError(f"--codec {name}: no such encoder in this FFmpeg build "
                         f"(for {suffix} try one of {', '.join(available_encoders(suffix)) or 'none'})") from None
    if codec.type != "video":
        raise VideoError(f"--codec {name} is an {codec.type} encoder, not a video one")
    return codec


def available_encoders(suffix: str) -> list[str]:
    """The encoders of :data:`ENCODERS` for ``suffix`` that this FFmpeg build has."""
    av = av_module()
    return [name for name in ENCODERS.get(suffix.lower(), ()) if name in av.codecs_available and
            _is_encoder(av, name)]


def _is_encoder(av: ModuleType, name: str) -> bool:
    try:
        av.Codec(name, "w")
        return True
    except Exception:
        return False


class _probe_output:
    """An output container opened on an in-memory buffer, to ask what its format can hold."""

    _FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}

    def __init__(self, suffix: str) -> None:
        import io

        self.out = av_module().open(io.BytesIO(), "w", format=self._FORMATS[suffix])

    def __enter__(self) -> Any:
        return self.out

    def __exit__(self, *exc: object) -> None:
        try:
            self.out.close()
        except Exception:  # nothing was written; closing an empty muxer may complain
            pass


def even_size(width: int, height: int, pix_fmt: str) -> tuple[int, int]:
    """The largest size <= ``width x height`` that ``pix_fmt``'s chroma subsampling can hold."""
    fmt = av_module().VideoFormat(pix_fmt)
    sub_w = round(64 / fmt.chroma_width(64))
    sub_h = round(64 / fmt.chroma_height(64))
    return width - width % sub_w, height - height % sub_h


def check_crf(encoder: str, crf: int) -> None:
    """Raise :class:`VideoError` if ``encoder`` has a CRF range (:data:`CRF_RANGES`) and ``crf`` is outside it."""
    if encoder in CRF_RANGES:
        low, high = CRF_RANGES[encoder]
        if not low <= crf <= high:
            raise VideoError(f"--crf {crf} is outside {encoder}'s range {low}..{high}")


def quality_options(encoder: str, crf: int, width: int, height: int, fps: float) -> tuple[dict[str, str], int | None]:
    """Encoder options for constant quality ``crf``, or a bit rate for encoders without CRF.

    Raises :class:`VideoError` for a ``crf`` outside the encoder's range (:func:`check_crf`).
    """
    check_crf(encoder, crf)
    if encoder in CRF_RANGES:
        options = {"crf": str(crf)}
        if encoder in ("libvpx-vp9", "libvpx"):
            options["b"] = "0"  # constant quality mode of libvpx needs a zero target bit rate
        return options, None
    # ~0.2 bits per pixel: what MPEG-4 part 2 needs to look clean at these sizes.
    return {}, int(0.2 * width * height * fps)


@dataclass
class WriterSetup:
    """What the writer decided when the first frame arrived (reported to the user)."""

    encoder: str
    pix_fmt: str
    size: tuple[int, int]
    copied: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


#: Stream tags a player shows (the muxer writes its own encoder/duration tags).
_STREAM_TAGS = ("language", "title", "handler_name")


def _copy_stream_tags(src: Any, dst: Any) -> None:
    for key in _STREAM_TAGS:
        if key in src.metadata:
            dst.metadata[key] = src.metadata[key]
    try:
        dst.disposition = src.disposition  # default / forced / hearing-impaired flags
    except (AttributeError, TypeError, ValueError):  # older PyAV: read-only
        pass


class VideoWriter:
    """Encode upscaled frames and copy packets into a new file (the caller makes it atomic)."""

    def __init__(self, path: str | Path, reader: VideoReader, *, encoder: str, crf: int = DEFAULT_CRF,
                 pix_fmt: str = DEFAULT_PIX_FMT) -> None:
        av = av_module()
        self.path = Path(path)
        self.reader = reader
        self.encoder, self.crf, self.pix_fmt = encoder, crf, pix_fmt
        self.out = av.open(str(self.path), "w")
        self.setup: WriterSetup | None = None
        self.video: Any = None
        self.copy_map: dict[int, Any] = {}
        self._pending: list[Any] = []  # packets read before the first frame decided the streams
        self._to_yuv: Any = None

    def _start(self, frame: Frame, hr: np.ndarray) -> None:
        from av.video.reformatter import VideoReformatter

        src = self.reader.stream
        scc = src.codec_context
        height, width = hr.shape[:2]
        w, h = even_size(width, height, self.pix_fmt)
        notes = []
        if (w, h) != (width, height):
            notes.append(f"output {width}x{height} has an odd side, which {self.pix_fmt} cannot hold: "
                         f"cropped to {w}x{h} (the last column/row)")
        fps = src.average_rate or src.guessed_rate or fractions.Fraction(30)
        v = self.out.add_stream(self.encoder, rate=fps)
        v.width, v.height, v.pix_fmt = w, h, self.pix_fmt
        v.time_base = self.reader.time_base
        v.codec_context.time_base = self.reader.time_base
        options, bit_rate = quality_options(self.encoder, self.crf, w, h, float(fps))
        v.codec_context.options = options
        if bit_rate:
            v.codec_context.bit_rate = bit_rate
            notes.append(f"{self.encoder} has no constant-quality mode here: {bit_rate / 1e6:.1f} Mbit/s")
        if scc.sample_aspect_ratio:
            v.codec_context.sample_aspect_ratio = scc.sample_aspect_ratio
        for attr in ("color_range", "colorspace", "color_primaries", "color_trc"):
            value = getattr(scc, attr, None)
            if value:
                setattr(v.codec_context, attr, value)
        if frame.rotation:
            v.set_display_rotation(frame.rotation)
        _copy_stream_tags(src, v)
        holds = set(self.out.supported_codecs)
        copied = []
        for s in self.reader.copies:
            name = _codec_name(s)
            if name in holds:
                copy = self.out.add_stream_from_template(s)
                _copy_stream_tags(s, copy)
                self.copy_map[s.index] = copy
                copied.append(f"#{s.index} {s.type} {name}")
            else:
                notes.append(f"stream #{s.index} ({s.type} {name}) cannot be stored in {self.path.suffix} without "
                             "re-encoding: dropped (write .mkv to keep it)")
        for key, value in self.reader.container.metadata.items():
            if key.lower() not in ("encoder", "major_brand", "minor_version", "compatible_brands"):
                self.out.metadata[key] = value
        self.video = v
        self._to_yuv = VideoReformatter()
        self._colors = (_colorspace(scc.colorspace), scc.color_range or None)
        self.setup = WriterSetup(self.encoder, self.pix_fmt, (w, h), copied, notes)
        for packet in self._pending:
            self._mux_copy(packet)
        self._pending.clear()

    def write_frame(self, frame: Frame, hr: np.ndarray) -> None:
        """Encode the upscaled pixels ``hr`` (``sH x sW x 3`` uint8) of ``frame``."""
        av = av_module()
        if self.setup is None:
            self._start(frame, hr)
        w, h = self.setup.size  # type: ignore[union-attr]
        if hr.shape[1] != w or hr.shape[0] != h:
            hr = hr[:h, :w]
        rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(hr), format="rgb24")
        colorspace, color_range = self._colors
        out = self._to_yuv.reformat(rgb, format=self.pix_fmt, dst_colorspace=colorspace, dst_color_range=color_range)
        out.pts = frame.pts
        out.time_base = self.reader.time_base
        for packet in self.video.encode(out):
            self.out.mux(packet)

    def write_packet(self, packet: Any) -> None:
        """Copy a packet of an audio or subtitle stream (held until the streams are set up)."""
        if self.setup is None:
            self._pending.append(packet)
        else:
            self._mux_copy(packet)

    def _mux_copy(self, packet: Any) -> None:
        stream = self.copy_map.get(packet.stream.index)
        if stream is None:
            return
        packet.stream = stream
        self.out.mux(packet)

    def close(self) -> None:
        """Flush the encoder and write the trailer."""
        if self.video is not None:
            for packet in self.video.encode(None):
                self.out.mux(packet)
        self.out.close()

    def abort(self) -> None:
        """Close without flushing (the file is discarded by the caller)."""
        try:
            self.out.close()
        except Exception:  # closing a half-written muxer after an error may fail again; the file is deleted
            pass


__all__ = [
    "CRF_RANGES",
    "DEFAULT_CRF",
    "DEFAULT_PIX_FMT",
    "MAX_CRF",
    "ENCODERS",
    "VIDEO_SUFFIXES",
    "Frame",
    "VideoError",
    "VideoInfo",
    "VideoReader",
    "VideoWriter",
    "WriterSetup",
    "available_encoders",
    "check_crf",
    "check_encoder",
    "av_module",
    "even_size",
    "is_media_file",
    "pick_encoder",
]

"""Procedurally generated video clips (moving test image, a tone, subtitles) for tests and benchmarks.

A camera pans across :func:`~carn_mobile.testimage.natural_test_image`, so every frame has
new content at sub-pixel offsets, as real footage does. Needs PyAV (the ``video`` extra).
"""

from __future__ import annotations

import fractions
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .testimage import natural_test_image_uint8
from .upscaling.video_io import av_module


@dataclass(frozen=True)
class ClipSpec:
    """What to generate. ``frame_times`` (seconds) overrides the regular ``fps`` grid (variable rate)."""

    width: int = 64
    height: int = 48
    frames: int = 12
    fps: int = 24
    codec: str = "libx264"
    pix_fmt: str = "yuv420p"
    crf: int = 10
    audio: bool = True
    subtitles: bool = False
    rotation: int = 0
    frame_times: tuple[float, ...] | None = None
    title: str | None = None
    faststart: bool = False  # MP4/MOV: index at the front, as streaming files have it
    seed: int = 0


def pan_frames(spec: ClipSpec) -> list[np.ndarray]:
    """The clip's RGB frames: a window sliding right and down over a larger test image."""
    margin = spec.frames + 8
    scene = natural_test_image_uint8(spec.height + margin, spec.width + 2 * margin, seed=spec.seed)
    return [np.ascontiguousarray(scene[i // 2 : i // 2 + spec.height, 2 * i : 2 * i + spec.width])
            for i in range(spec.frames)]


def make_clip(path: str | Path, spec: ClipSpec = ClipSpec()) -> Path:
    """Write ``spec``'s clip to ``path`` (container from the suffix) and return the path."""
    av = av_module()
    path = Path(path)
    tb = fractions.Fraction(1, 1000) if spec.frame_times is not None else fractions.Fraction(1, spec.fps)
    times = spec.frame_times or tuple(i / spec.fps for i in range(spec.frames))
    if len(times) != spec.frames:
        raise ValueError(f"frame_times has {len(times)} entries for {spec.frames} frames")
    options = {"movflags": "faststart"} if spec.faststart else {}
    with av.open(str(path), "w", options=options) as out:
        if spec.title:
            out.metadata["title"] = spec.title
        v = out.add_stream(spec.codec, rate=spec.fps)
        v.width, v.height, v.pix_fmt = spec.width, spec.height, spec.pix_fmt
        v.time_base = v.codec_context.time_base = tb
        if spec.codec in ("libx264", "libx265"):
            v.codec_context.options = {"crf": str(spec.crf)}
        if spec.rotation:
            v.set_display_rotation(spec.rotation)
        a = None
        if spec.audio:
            a = out.add_stream("aac", rate=48000)
            a.metadata["language"] = "eng"
        s = None
        if spec.subtitles:
            s = out.add_mux_stream("subrip")
            s.time_base = fractions.Fraction(1, 1000)
            s.metadata["language"] = "fra"
        for i, rgb in enumerate(pan_frames(spec)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = round(times[i] / tb)
            frame.time_base = tb
            for packet in v.encode(frame):
                out.mux(packet)
        for packet in v.encode(None):
            out.mux(packet)
        clip_seconds = times[-1] + 1.0 / spec.fps
        if a is not None:
            write_tone(av, out, a, clip_seconds)
        if s is not None:
            cue = av.Packet(b"CARN-M upscaled")
            cue.stream, cue.time_base = s, s.time_base
            cue.pts = cue.dts = 0
            cue.duration = int(clip_seconds * 1000) // 2
            out.mux(cue)
    return path


def write_tone(av, out, stream, seconds: float, rate: int = 48000, block: int = 1024) -> None:
    """A 440 Hz mono AAC tone of ``seconds`` (AAC takes planar float: no resampling needed)."""
    n = round(seconds * rate)
    t = np.arange(n) / rate
    samples = (0.2 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    for start in range(0, n, block):
        chunk = samples[start : start + block][None]
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, start
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)


__all__ = ["ClipSpec", "make_clip", "pan_frames", "write_tone"]

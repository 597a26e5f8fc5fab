"""Video throughput: the whole pipeline against its two floors, and memory against clip length.

For each case (CARN-M x2 640x360 -> 1280x720, x4 480x270 -> 1920x1080) a clip of moving
content is generated (:mod:`carn_mobile.testclip`) and three rates are measured in one run:

* **I/O floor**: decode + RGB conversion + encode alone, with a nearest-neighbour upscale
  standing in for the network (moving content, so the encoder works as it does on real output);
* **model floor**: the upscaler alone on frames decoded beforehand, per backend;
* **pipeline**: :func:`~carn_mobile.upscaling.video.upscale_video_file`, file to file.

Overlap works when the pipeline reaches the slower floor (ratio near 1). Peak memory is
measured for a short and a six-times-longer clip of small frames: streaming keeps it flat.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..sizes import WxH
from ..testclip import ClipSpec, make_clip
from ..upscaling.api import Upscaler
from ..upscaling.video import VideoListener, stream_clip, upscale_video_file
from ..upscaling.video_io import Frame, VideoReader, VideoWriter, av_module, pick_encoder
from .machine import describe_machine
from .memory import current_rss_mb, peak_rss_mb
from .report import machine_sentence

#: Scale and LR size of the cases the issue names (720p and 1080p outputs).
VIDEO_CASES: tuple[tuple[int, WxH], ...] = ((2, WxH(640, 360)), (4, WxH(480, 270)))

#: Backends measured unless ``--backends`` says otherwise: the eager baseline and the fastest engine.
VIDEO_BACKENDS = ("torch", "onnxruntime")

#: Real time for the figures: 30 frames per second.
REALTIME_FPS = 30.0


@dataclass(frozen=True)
class VideoBenchSettings:
    backends: Sequence[str] = VIDEO_BACKENDS
    frames: int = 24
    threads: int = 2
    memory_seconds: tuple[float, float] = (10.0, 60.0)
    memory_size: WxH = WxH(96, 54)
    model: str = "carn-m"


class _RssSampler(VideoListener):
    """Resident memory (MiB) every ``every`` frames: flat when the pipeline streams."""

    def __init__(self, every: int) -> None:
        self.every, self.samples = every, []

    def frame(self, done: int, total: int | None, elapsed: float) -> None:
        if done % self.every == 0:
            self.samples.append(round(current_rss_mb(), 1))


def io_floor_fps(clip: Path, scale: int, out: Path) -> float:
    """Frames per second of decode + encode alone: the video pipeline with a nearest-neighbour
    upscale in place of the model."""
    encoder, _ = pick_encoder(out.suffix, None)
    started = time.perf_counter()
    with VideoReader(clip) as reader:
        streamed = stream_clip(reader, VideoWriter(out, reader, encoder=encoder),
                               lambda rgb: rgb.repeat(scale, axis=0).repeat(scale, axis=1))
    return streamed.frames / (time.perf_counter() - started)


def decoded_frames(clip: Path) -> list[np.ndarray]:
    with VideoReader(clip) as reader:
        return [item.rgb for item in reader.items() if isinstance(item, Frame)]


def model_floor_fps(upscaler: Upscaler, frames: list[np.ndarray]) -> float:
    """Frames per second of the upscaler alone (one warm-up frame first)."""
    upscaler.upscale(frames[0])
    started = time.perf_counter()
    for rgb in frames:
        upscaler.upscale(rgb)
    return len(frames) / (time.perf_counter() - started)


def run_video_benchmark(settings: VideoBenchSettings, progress: Callable[[str], None] | None = None) -> dict:
    """Measure every case and backend; returns a JSON-friendly report (machine included)."""
    import torch

    av = av_module()
    torch.set_num_threads(settings.threads)
    say = progress or (lambda message: None)
    rows, memory = [], []
    with tempfile.TemporaryDirectory(prefix="carn-video-bench-") as tmp:
        work = Path(tmp)
        for scale, lr in VIDEO_CASES:
            clip = make_clip(work / f"x{scale}.mp4", ClipSpec(lr.width, lr.height, settings.frames, fps=30,
                                                              crf=23, audio=True))
            say(f"x{scale} {lr}: I/O floor")
            io_fps = io_floor_fps(clip, scale, work / f"io_x{scale}.mp4")
            frames = decoded_frames(clip)
            for backend in settings.backends:
                up = Upscaler(scale, settings.model, backend=backend)
                say(f"x{scale} {lr}: {backend} model floor")
                model_fps = model_floor_fps(up, frames)
                say(f"x{scale} {lr}: {backend} pipeline")
                report = upscale_video_file(up, clip, work / f"{backend}_x{scale}.mp4", force=True)
                floor = min(io_fps, model_fps)
                rows.append({
                    "model": settings.model, "scale": scale, "lr": str(lr),
                    "hr": str(WxH(lr.width * scale, lr.height * scale)), "backend": backend,
                    "precision": "fp32", "frames": report.frames,
                    "io_floor_fps": round(io_fps, 3), "model_floor_fps": round(model_fps, 3),
                    "pipeline_fps": round(report.fps, 3), "of_slower_floor": round(report.fps / floor, 3),
                    "realtime": round(report.fps / REALTIME_FPS, 4),
                    "limited_by": "model" if model_fps < io_fps else "I/O",
                    "tiles_per_frame": len(up.plan(lr.height, lr.width).tiles),
                })
        up = Upscaler(2, settings.model, backend=settings.backends[0])
        size = settings.memory_size
        # A first run so that one-time allocations (weights, kernels, codec tables) are not counted.
        warm = make_clip(work / "warm.mp4", ClipSpec(size.width, size.height, 15, fps=30, audio=True))
        upscale_video_file(up, warm, work / "warm_x2.mp4", force=True)
        # Short, long, then short again: if the second short run peaks like the long one, any gap
        # between the first two is the allocator warming up, not memory growing with the clip.
        order = [*settings.memory_seconds, settings.memory_seconds[0]]
        for seconds in order:
            n = round(seconds * REALTIME_FPS)
            say(f"memory: {seconds:g} s clip ({n} frames of {size})")
            clip = work / f"mem{n}.mp4"
            if not clip.exists():
                make_clip(clip, ClipSpec(size.width, size.height, n, fps=30, audio=True))
            reports: list = []
            sampler = _RssSampler(every=round(REALTIME_FPS * 10))

            def run_clip(clip: Path = clip, n: int = n, reports: list = reports, sampler=sampler) -> None:
                reports.append(upscale_video_file(up, clip, work / f"mem{n}_x2.mp4", force=True, listener=sampler))

            peak, method = peak_rss_mb(run_clip)
            memory.append({"seconds": seconds, "frames": reports[0].frames, "lr": str(size),
                           "backend": settings.backends[0], "peak_rss_mib": round(peak, 1),
                           "rss_every_10s_mib": sampler.samples, "method": method})
    return {"machine": describe_machine(settings.threads), "settings": {
        "frames": settings.frames, "threads": settings.threads, "backends": list(settings.backends),
        "model": settings.model, "encoder": "libx264 crf 18 (default)", "clip": "generated pan, H.264 crf 23, AAC",
        "pyav": av.__version__, "ffmpeg": str(av.ffmpeg_version_info)},
        "rows": rows, "memory": memory}


def video_markdown(report: dict) -> str:
    """The report as Markdown tables, machine first."""
    settings = report["settings"]
    lines = [
        "# carn-bench --video",
        "",
        f"{machine_sentence(report['machine'])} Clip: {settings['clip']}; {settings['frames']} frames per case; "
        f"output {settings['encoder']}; PyAV {settings['pyav']} (FFmpeg {settings['ffmpeg']}).",
        "",
        "| model | scale | LR -> HR | backend | tiles per frame | I/O floor fps | model floor fps | pipeline fps "
        "| of slower floor | x real time (30 fps) | limited by |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(f"| {r['model']} | x{r['scale']} | {r['lr']} -> {r['hr']} | {r['backend']} | "
                     f"{r['tiles_per_frame']} | {r['io_floor_fps']:.2f} | {r['model_floor_fps']:.2f} | "
                     f"{r['pipeline_fps']:.2f} | "
                     f"{100 * r['of_slower_floor']:.0f}% | {r['realtime']:.3f} | {r['limited_by']} |")
    lines += ["", "Memory, in run order (x2, process resident set):", "",
              "| clip | frames | LR | backend | peak RSS (MiB) | RSS every 10 s of clip (MiB) | method |",
              "|---|---|---|---|---|---|---|"]
    for r in report["memory"]:
        samples = ", ".join(f"{v:.0f}" for v in r["rss_every_10s_mib"])
        lines.append(f"| {r['seconds']:g} s | {r['frames']} | {r['lr']} | {r['backend']} | "
                     f"{r['peak_rss_mib']:.1f} | {samples} | {r['method']} |")
    return "\n".join(lines) + "\n"


__all__ = ["VIDEO_BACKENDS", "VIDEO_CASES", "VideoBenchSettings", "io_floor_fps", "model_floor_fps",
           "run_video_benchmark", "video_markdown"]

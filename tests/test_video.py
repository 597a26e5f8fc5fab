"""Video: streaming stages, clips in and out with PyAV (frames, timestamps, audio, rotation,
subtitles, odd sizes, windows), fidelity against the image path, and every bad input."""

from __future__ import annotations

import errno
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from carn_mobile.fileio import sha256_file
from carn_mobile.metrics import psnr
from carn_mobile.upscaling.stages import Prefetch, Sink

av = pytest.importorskip("av", reason="needs PyAV: pip install '.[video]'")

from carn_mobile.cli.upscale import main  # noqa: E402
from carn_mobile.testclip import ClipSpec, make_clip, pan_frames, write_tone  # noqa: E402
from carn_mobile.upscaling import Upscaler, video_io  # noqa: E402
from carn_mobile.upscaling.video import (  # noqa: E402
    VideoOptions,
    default_video_output,
    parse_seconds,
    upscale_frames,
    upscale_video_file,
)
from carn_mobile.upscaling.video_io import (  # noqa: E402
    Frame,
    VideoError,
    VideoReader,
    even_size,
    pick_encoder,
    quality_options,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Worst-frame Y-PSNR (dB) of the encoded output against the image path's upscale of the same decoded
#: input frames, per --crf, measured on these generated clips (x2 64x48 and x3 96x72 outputs, 12 and
#: 24 frames, libx264, yuv420p): crf 18 (default) 38.5 dB worst / 40.0 mean at x2, 41.7 / 43.1 at x3;
#: crf 0 (lossless H.264, so only the RGB -> 4:2:0 -> RGB conversion loses) 46.8 / 46.9 at x2, 46.8 / 47.0
#: at x3. The bounds leave ~2 dB of margin.
CODEC_PSNR_BOUND = {18: 36.5, 0: 45.0}


def run(argv: list) -> int:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    return info.value.code


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def up2() -> Upscaler:
    return Upscaler(2)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    return {
        "mp4": make_clip(d / "pan.mp4", ClipSpec(32, 24, 12, title="a title")),
        "rotated": make_clip(d / "rot.mp4", ClipSpec(32, 24, 6, rotation=90)),
        "vfr": make_clip(d / "vfr.mkv", ClipSpec(32, 24, 8, subtitles=True,
                                                 frame_times=(0, 0.04, 0.05, 0.2, 0.21, 0.5, 0.52, 0.9))),
        "odd": make_clip(d / "odd.mkv", ClipSpec(21, 15, 4, pix_fmt="yuv444p", audio=False)),
        "long": make_clip(d / "long.mp4", ClipSpec(32, 24, 24, fps=12)),
        "faststart": make_clip(d / "fs.mp4", ClipSpec(32, 24, 24, faststart=True)),
    }


def frames_of(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as c:
        return list(c.decode(video=0))


def packets_of(path: Path, kind: str) -> list[tuple[float, bytes]]:
    with av.open(str(path)) as c:
        streams = getattr(c.streams, kind)
        return [(float(p.pts * p.time_base), bytes(p)) for p in c.demux(streams[0]) if p.size]


def audio_seconds(path: Path) -> float:
    with av.open(str(path)) as c:
        return sum(f.samples for f in c.decode(audio=0)) / c.streams.audio[0].rate


# ---------------------------------------------------------------------------- stages


def test_prefetch_stays_a_bounded_number_of_items_ahead():
    produced = []

    def source():
        for i in range(50):
            produced.append(i)
            yield i

    seen = []
    for item in Prefetch(source(), depth=3):
        time.sleep(0.002)  # a slow consumer: the producer must wait, not run to the end
        seen.append(item)
        assert len(produced) - len(seen) <= 3 + 1  # the queue plus the one being put
    assert seen == list(range(50))


def test_prefetch_reraises_in_order_and_stops_when_abandoned():
    def failing():
        yield 1
        raise OSError("disk read failed")

    it = Prefetch(failing())
    assert next(it) == 1
    with pytest.raises(OSError, match="disk read failed"):
        next(it)
    endless = Prefetch(iter(int, 1), depth=2)  # never ends
    next(endless)
    endless.close()  # leaving early stops and joins the producer thread
    assert not endless._thread.is_alive()
    unstarted = Prefetch(iter(int, 1), depth=2)
    unstarted.close()  # also when iteration never began
    assert not unstarted._thread.is_alive()
    with pytest.raises(StopIteration):
        next(unstarted)


def test_sink_handles_in_order_and_reports_its_error():
    got = []
    sink = Sink(got.append, depth=2)
    for i in range(20):
        sink.put(i)
    sink.close()
    assert got == list(range(20))

    def fail(item):
        raise OSError(errno.ENOSPC, "No space left on device")

    bad = Sink(fail, depth=1)
    with pytest.raises(OSError, match="No space"):
        for i in range(100):
            bad.put(i)
            time.sleep(0.001)
        bad.close()


# ---------------------------------------------------------------------------- the API


def test_upscale_frames_equals_the_image_path_lazily(up2):
    frames = pan_frames(ClipSpec(20, 16, 5))
    pulled = []

    def source():
        for f in frames:
            pulled.append(f)
            yield f

    out = upscale_frames(source(), upscaler=up2, depth=1)
    first = next(out)
    assert len(pulled) <= 3  # lazy: not the whole stream
    rest = list(out)
    for f, got in zip(frames, [first, *rest], strict=True):
        assert got.shape == (32, 40, 3) and got.dtype == np.uint8
        np.testing.assert_array_equal(got, up2.upscale(f))
    pil = list(upscale_frames([Image.fromarray(frames[0])], upscaler=up2))
    assert isinstance(pil[0], Image.Image) and pil[0].size == (40, 32)
    with pytest.raises(ValueError, match="not both"):
        next(upscale_frames(frames, upscaler=up2, tile=8))


def test_clip_round_trip_keeps_frames_timestamps_audio_and_metadata(up2, clips, tmp_path):
    src = clips["mp4"]
    before = sha256_file(src)
    report = upscale_video_file(up2, src, tmp_path / "out.mp4")
    assert sha256_file(src) == before  # the input is only read
    assert report.frames == 12 and report.output_size == (64, 48) and report.encoder == "libx264"
    assert report.copied == ["#1 audio aac"]
    fin, fout = frames_of(src), frames_of(tmp_path / "out.mp4")
    assert len(fout) == len(fin) == 12
    assert [round(f.time, 4) for f in fout] == [round(f.time, 4) for f in fin]
    assert (fout[0].width, fout[0].height) == (64, 48)
    # Audio is copied packet for packet, not re-encoded.
    assert packets_of(tmp_path / "out.mp4", "audio") == packets_of(src, "audio")
    assert audio_seconds(tmp_path / "out.mp4") == pytest.approx(audio_seconds(src))
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert c.metadata.get("title") == "a title"
        assert c.streams.audio[0].metadata.get("language") == "eng"
    assert report.fps > 0 and report.clip_seconds == pytest.approx(0.5)
    assert "frames in" in report.summary() and "real time" in report.summary()


def test_output_frames_match_the_image_path_within_the_codec_loss(clips, tmp_path):
    for (scale, name), crf in zip(((2, "mp4"), (3, "long")) * 2, (18, 18, 0, 0), strict=True):
        up = Upscaler(scale)
        out = tmp_path / f"x{scale}_crf{crf}.mkv"
        upscale_video_file(up, clips[name], out, options=VideoOptions(crf=crf))
        with VideoReader(clips[name]) as reader:
            expected = [up.upscale(item.rgb) for item in reader.items() if isinstance(item, Frame)]
        with VideoReader(out) as reader:
            got = [item.rgb for item in reader.items() if isinstance(item, Frame)]
        assert len(got) == len(expected)
        worst = min(psnr(g, e, crop=0) for g, e in zip(got, expected, strict=True))
        assert worst >= CODEC_PSNR_BOUND[crf], f"x{scale} crf {crf}: worst frame {worst:.2f} dB"


def test_variable_frame_rate_and_subtitles_survive(up2, clips, tmp_path):
    src = clips["vfr"]
    report = upscale_video_file(up2, src, tmp_path / "vfr_x2.mkv")
    times = [round(f.time, 3) for f in frames_of(tmp_path / "vfr_x2.mkv")]
    assert times == [0.0, 0.04, 0.05, 0.2, 0.21, 0.5, 0.52, 0.9]
    assert "#2 subtitle subrip" in report.copied or "#2 subtitle srt" in report.copied
    assert packets_of(tmp_path / "vfr_x2.mkv", "subtitles") == packets_of(src, "subtitles")
    # MP4 cannot hold SubRip without conversion: dropped, and the note says so.
    report = upscale_video_file(up2, src, tmp_path / "vfr_x2.mp4")
    assert any("subtitle" in n and "dropped" in n and ".mkv" in n for n in report.notes)
    with av.open(str(tmp_path / "vfr_x2.mp4")) as c:
        assert not c.streams.subtitles and len(c.streams.audio) == 1


def test_rotation_is_kept_as_metadata(up2, clips, tmp_path):
    upscale_video_file(up2, clips["rotated"], tmp_path / "r.mp4")
    f = frames_of(tmp_path / "r.mp4")[0]
    assert f.rotation == frames_of(clips["rotated"])[0].rotation == 90
    assert (f.width, f.height) == (64, 48)  # pixels are stored unrotated, as in the input


def test_odd_output_sides_are_cropped_and_said(clips, tmp_path):
    report = upscale_video_file(Upscaler(3), clips["odd"], tmp_path / "odd.mp4")
    assert report.output_size == (62, 44)
    assert any("63x45" in n and "cropped to 62x44" in n for n in report.notes)
    assert (frames_of(tmp_path / "odd.mp4")[0].width, frames_of(tmp_path / "odd.mp4")[0].height) == (62, 44)
    assert even_size(63, 45, "yuv444p") == (63, 45) and even_size(63, 45, "yuv422p") == (62, 45)


def test_start_and_duration_cut_every_stream(up2, clips, tmp_path):
    out = tmp_path / "cut.mp4"
    report = upscale_video_file(up2, clips["long"], out, options=VideoOptions(start=0.5, duration=1.0))
    times = [f.time for f in frames_of(out)]
    assert report.frames == len(times) == 12  # 12 fps for one second
    assert times[0] == pytest.approx(0.0, abs=1e-3) and times[-1] == pytest.approx(11 / 12, abs=1e-3)
    assert audio_seconds(out) == pytest.approx(1.0, abs=0.05)
    with pytest.raises(VideoError, match="no video frames could be decoded in the --start/--duration window"):
        upscale_video_file(up2, clips["long"], tmp_path / "none.mp4", options=VideoOptions(start=60))
    assert not (tmp_path / "none.mp4").exists()


def test_parse_seconds():
    assert parse_seconds("90") == 90 and parse_seconds("1.5") == 1.5
    assert parse_seconds("01:30") == 90 and parse_seconds("1:00:02.5") == 3602.5
    for bad in ("", "x", "-1", "1:60", "1::2", "inf", "1:2:3:4"):
        with pytest.raises(ValueError, match="invalid time"):
            parse_seconds(bad)


def test_encoder_choice_and_fallback(monkeypatch):
    assert pick_encoder(".mp4", None) == ("libx264", [])
    assert pick_encoder(".webm", None)[0] == "libvpx-vp9"
    with pytest.raises(VideoError, match="no such encoder"):
        pick_encoder(".mp4", "nonesuch")
    with pytest.raises(VideoError, match="cannot be stored in .webm"):
        pick_encoder(".webm", "libx264")
    with pytest.raises(VideoError, match="an audio encoder"):
        pick_encoder(".mp4", "aac")
    with pytest.raises(VideoError, match="--crf 60 is outside libx264's range 0..51"):
        quality_options("libx264", 60, 64, 48, 30.0)
    assert quality_options("libvpx-vp9", 60, 64, 48, 30.0) == ({"crf": "60", "b": "0"}, None)
    options, bit_rate = quality_options("mpeg4", 18, 64, 48, 30.0)
    assert options == {} and bit_rate == int(0.2 * 64 * 48 * 30)
    monkeypatch.setattr(av, "codecs_available", set(av.codecs_available) - {"libx264"})
    name, notes = pick_encoder(".mp4", None)
    assert name != "libx264" and notes == [f"no libx264 encoder in this FFmpeg build: using {name}"]


def test_default_output_keeps_known_containers():
    assert default_video_output(Path("a/clip.MKV"), 2) == Path("a/clip_x2.mkv")
    assert default_video_output(Path("clip.ts"), 4) == Path("clip_x4.mp4")


# ---------------------------------------------------------------------------- the command


def test_cli_upscales_a_clip_found_by_probing(clips, tmp_path, capsys):
    src = tmp_path / "clip.bin"  # no video suffix: probing decides
    src.write_bytes(clips["mp4"].read_bytes())
    assert run([src, "--scale", "2", "-o", tmp_path / "out.mkv", "--crf", "20"]) == 0
    out = capsys.readouterr().out
    assert "done 1, skipped 0, failed 0" in out and "12 frames in" in out and "real time" in out
    assert len(frames_of(tmp_path / "out.mkv")) == 12
    # A PNG named .mp4 is an image.
    fake = tmp_path / "still.mp4"
    Image.new("RGB", (8, 6)).save(fake, format="PNG")
    assert run([fake, "--scale", "2", "-o", tmp_path / "still_x2.png"]) == 0


def make_bad_inputs(folder: Path, clips: dict[str, Path]) -> dict[str, tuple[Path, str]]:
    """Bad input files -> (path, expected reason)."""
    text = folder / "notes.mp4"
    text.write_text("not a video at all\n" * 50)
    data = clips["faststart"].read_bytes()
    truncated = folder / "cut.mp4"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    audio = folder / "tone.m4a"
    with av.open(str(audio), "w") as o:
        write_tone(av, o, o.add_stream("aac", rate=48000), 0.3)
    empty = folder / "empty.mkv"  # a video stream with no frames, beside some audio
    with av.open(str(empty), "w") as o:
        v = o.add_stream("libx264", rate=24)
        v.width, v.height, v.pix_fmt = 32, 24, "yuv420p"
        write_tone(av, o, o.add_stream("aac", rate=48000), 0.3)
    unknown = folder / "unknown.avi"
    make_clip(folder / "m.avi", ClipSpec(32, 24, 3, codec="mpeg4", audio=False))
    unknown.write_bytes((folder / "m.avi").read_bytes().replace(b"FMP4", b"QQZZ"))  # a FourCC no decoder knows
    (folder / "m.avi").unlink()
    return {
        "text": (text, "cannot be opened as a video"),
        "truncated": (truncated, "truncated: the container lists 24 video frames but the file holds only"),
        "audio": (audio, "has no video stream (#0 audio aac)"),
        "empty": (empty, "no video frames could be decoded"),
        "unknown": (unknown, "no decoder here for its video codec"),
    }


def test_cli_bad_inputs_fail_clearly_and_leave_nothing(clips, tmp_path, capsys):
    bad = make_bad_inputs(tmp_path, clips)
    hashes = {k: sha256_file(p) for k, (p, _) in bad.items()}
    out_dir = tmp_path / "out"
    for key, (path, reason) in bad.items():
        code = run([path, "--scale", "2", "-o", out_dir / f"{key}.mkv"])
        text = capsys.readouterr().out
        assert code == 1, key
        assert reason in text, (key, text)
        assert "Traceback" not in text
        assert sha256_file(path) == hashes[key]
    assert not out_dir.exists() or not list(out_dir.iterdir())
    assert leftovers(tmp_path) == []


def test_cli_existing_output_needs_force(clips, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    out.write_bytes(b"precious")
    assert run([clips["mp4"], "--scale", "2", "-o", out]) == 1
    assert "o.mp4 exists; pass --force to overwrite it" in capsys.readouterr().out
    assert out.read_bytes() == b"precious"
    assert run([clips["mp4"], "--scale", "2", "-o", out, "--force"]) == 0
    assert len(frames_of(out)) == 12


def test_cli_crf_outside_the_encoders_range(clips, tmp_path, capsys):
    assert run([clips["mp4"], "--scale", "2", "-o", tmp_path / "o.mp4", "--crf", "60"]) == 1
    assert "--crf 60 is outside libx264's range 0..51" in capsys.readouterr().out
    assert not (tmp_path / "o.mp4").exists()
    assert run([clips["mp4"], "--scale", "2", "-o", tmp_path / "o.webm", "--crf", "60"]) == 0  # VP9 goes to 63


def test_cli_usage_errors(clips, tmp_path, capsys):
    assert run([clips["mp4"], "--scale", "2", "--codec", "nonesuch"]) == 2
    assert "no such encoder" in capsys.readouterr().err
    assert run([clips["mp4"], "--scale", "2", "-o", tmp_path / "x.png"]) == 2
    assert "the input is a video" in capsys.readouterr().err
    assert run([clips["mp4"], "--scale", "2", "--start", "soon"]) == 2
    assert "invalid time" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_a_full_disk_mid_clip_leaves_no_output(up2, clips, tmp_path, monkeypatch):
    real = video_io.VideoWriter.write_frame
    calls = []

    def write_then_fill(self, frame, hr):
        calls.append(1)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, frame, hr)

    monkeypatch.setattr(video_io.VideoWriter, "write_frame", write_then_fill)
    out = tmp_path / "full.mp4"
    with pytest.raises(OSError, match="No space left"):
        upscale_video_file(up2, clips["mp4"], out)
    assert not out.exists() and leftovers(tmp_path) == [] and list(tmp_path.iterdir()) == []
    # The decoding and encoding threads were stopped before the files closed under them.
    assert not [t for t in threading.enumerate() if t.name in ("decode", "encode")]


@pytest.fixture
def tiny_disk(tmp_path):
    """A 16 KiB tmpfs: a real full disk (needs the right to mount, as root on the CI machine has)."""
    import subprocess

    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.decode().strip() or done.returncode})")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_really_full_disk_leaves_no_output(clips, tiny_disk, capsys):
    out = tiny_disk / "out.mp4"
    assert run([clips["mp4"], "--scale", "2", "-o", out, "--crf", "0"]) == 1
    text = capsys.readouterr().out
    assert f"No space left on device ({out})" in text  # the path asked for, not the temporary file
    assert list(tiny_disk.iterdir()) == []


def test_output_folder_that_cannot_be_created(clips, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    assert run([clips["mp4"], "--scale", "2", "-o", blocker / "o.mp4"]) == 2
    assert "cannot be created" in capsys.readouterr().err
    assert blocker.read_text() == "a file where a folder should be"


def test_missing_pyav_names_the_extra(clips, tmp_path, monkeypatch, capsys):
    from carn_mobile.runtimes.optional import MissingDependencyError

    def missing():
        raise MissingDependencyError('av is needed for video input and output; install it with: pip install '
                                     '"carn-mobile[video]"')

    monkeypatch.setattr(video_io, "av_module", missing)
    assert run([clips["mp4"], "--scale", "2", "-o", tmp_path / "o.mp4"]) == 1
    assert "carn-mobile[video]" in capsys.readouterr().out


# ---------------------------------------------------------------------------- benchmark pieces


def test_io_floor_runs_the_same_streams(clips, tmp_path):
    from carn_mobile.bench.video import decoded_frames, io_floor_fps, model_floor_fps

    fps = io_floor_fps(clips["mp4"], 2, tmp_path / "io.mp4")
    assert fps > 0 and len(frames_of(tmp_path / "io.mp4")) == 12
    frames = decoded_frames(clips["mp4"])
    assert len(frames) == 12 and frames[0].shape == (24, 32, 3)
    assert model_floor_fps(Upscaler(2), frames[:2]) > 0


def test_bench_video_refuses_bad_arguments_before_working(tmp_path, monkeypatch, capsys):
    from carn_mobile.cli.bench import main as bench_main
    from carn_mobile.runtimes.optional import MissingDependencyError

    def bench(argv: list) -> int:
        with pytest.raises(SystemExit) as info:
            bench_main([str(a) for a in argv])
        return info.value.code

    assert bench(["--video", "--backends", "nonesuch"]) == 2
    assert "unknown backend 'nonesuch'" in capsys.readouterr().err
    existing = tmp_path / "r.json"
    existing.write_text("{}")
    assert bench(["--video", "--json", existing]) == 2
    assert "already exists" in capsys.readouterr().err and existing.read_text() == "{}"

    def missing():
        raise MissingDependencyError('av is needed for video input and output; install it with: pip install '
                                     '"carn-mobile[video]"')

    monkeypatch.setattr(video_io, "av_module", missing)
    assert bench(["--video"]) == 2
    assert "carn-mobile[video]" in capsys.readouterr().err

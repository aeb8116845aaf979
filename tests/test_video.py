"""Tests for deblur.runtime.video: the frame-by-frame video pipeline (probing: test_video_probe.py).

Clips are generated on the fly (video_fixtures.py), tiny and ~1 s long, so the file runs in seconds.
"""

from __future__ import annotations

import logging
import os
import threading
from fractions import Fraction

import av
import numpy as np
import pytest

from deblur.runtime import video
from deblur.runtime.video import (
    VideoError,
    VideoInterrupted,
    VideoReport,
    probe_video,
    process_video,
)
from deblur.runtime.video.probe import _probe

from video_fixtures import (frame_level, audio_packets, audio_summary, average_rate, identity, invert, leftovers,
                            make_clip, make_deep_clip, ramp, read_frames, write_sine)


# ---------------------------------------------------------------- processing


@pytest.mark.parametrize(
    "clip, size, fps, n, audio",
    [
        ("even25_aac", (64, 48), Fraction(25), 30, True),
        ("odd_ntsc_aac", (65, 49), Fraction(30000, 1001), 24, True),
        ("even_ntsc_mute", (64, 48), Fraction(30000, 1001), 40, False),
        ("odd25_mute", (65, 49), Fraction(25), 24, False),
    ],
)
def test_identity_keeps_frames_size_rate_order_audio(clips, tmp_path, clip, size, fps, n, audio):
    src = clips[clip]
    dst = tmp_path / "out.mp4"
    seen: list[int] = []
    report = process_video(src, dst, identity, progress=seen.append)

    assert isinstance(report, VideoReport)
    assert report.frames == n
    assert seen == list(range(1, n + 1))
    assert report.video_codec == "libx264"
    assert report.pix_fmt == ("yuv420p" if size[0] % 2 == 0 else "yuv444p")
    assert report.seconds > 0 and report.fps > 0

    src_frames, src_times, _ = read_frames(src)
    out_frames, out_times, vs = read_frames(dst)
    assert len(out_frames) == n
    assert out_frames[0].shape == (size[1], size[0], 3)
    assert average_rate(dst) == fps
    assert out_times == pytest.approx(src_times, abs=1e-3)

    levels = ramp(out_frames)
    assert np.all(np.diff(levels) > 3), "frame order lost"
    assert levels == pytest.approx([frame_level(i) for i in range(n)], abs=3)
    diffs = [np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(src_frames, out_frames)]
    assert max(diffs) < 3
    # No systematic drift per channel (swscale's default rounding darkens ~3 levels
    # and tints green on every decode/encode round trip).
    bias = np.mean([b.mean((0, 1)) - a.mean((0, 1)) for a, b in zip(src_frames, out_frames)], 0)
    assert np.all(np.abs(bias) < 1), bias

    if audio:
        assert report.audio == "copied"
        codec, seconds = audio_summary(dst)
        assert codec == "aac"
        assert seconds == pytest.approx(n / fps, abs=0.1)
        # Remuxed, not re-encoded: the compressed packets are byte-identical.
        assert audio_packets(dst) == audio_packets(src)
    else:
        assert report.audio == "none"
        assert audio_summary(dst) is None


@pytest.mark.parametrize("clip", ["even25_aac", "odd_ntsc_aac"])
def test_invert_colours(clips, tmp_path, clip):
    src = clips[clip]
    dst = tmp_path / "inv.mp4"
    report = process_video(src, dst, invert)
    src_frames, _, _ = read_frames(src)
    out_frames, _, _ = read_frames(dst)
    assert report.frames == len(src_frames) == len(out_frames)
    diffs = [
        np.abs((255 - a.astype(int)) - b.astype(int)).mean()
        for a, b in zip(src_frames, out_frames)
    ]
    assert max(diffs) < 3
    # The red quadrant became cyan-ish: blue/green high, red low.
    b, g, r = out_frames[0][2, 2]
    assert b > 180 and g > 180 and r < 80
    assert np.all(np.diff(ramp(out_frames)) < -3)


@pytest.mark.parametrize(
    "clip, ext, vcodec, audio, acodec",
    [
        ("even25_aac", ".webm", "libvpx-vp9", "transcoded:opus", "opus"),
        ("odd_ntsc_aac", ".webm", "libvpx-vp9", "transcoded:opus", "opus"),
        ("even25_aac", ".mkv", "libx264", "copied", "aac"),
        ("even25_aac", ".mov", "libx264", "copied", "aac"),
        ("even25_aac", ".avi", "libx264", "copied", "aac"),
        ("odd_ntsc_aac", ".ts", "libx264", "copied", "aac"),
    ],
)
def test_other_containers(clips, tmp_path, clip, ext, vcodec, audio, acodec):
    src = clips[clip]
    dst = tmp_path / f"out{ext}"
    report = process_video(src, dst, invert)
    info = probe_video(src)
    assert (report.video_codec, report.audio) == (vcodec, audio)
    out_frames, _, _ = read_frames(dst)
    assert len(out_frames) == info.frame_count
    assert out_frames[0].shape == (info.height, info.width, 3)
    assert average_rate(dst) == info.fps
    assert np.all(np.diff(ramp(out_frames)) < -3)
    codec, seconds = audio_summary(dst)
    assert codec == acodec
    assert seconds == pytest.approx(info.frame_count / info.fps, abs=0.1)


def test_pcm_audio_is_transcoded_to_aac_for_mp4(tmp_path):
    src = make_clip(tmp_path / "pcm.mkv", audio="pcm_s16le")
    dst = tmp_path / "out.mp4"
    report = process_video(src, dst, identity)
    assert report.audio == "transcoded:aac"
    codec, seconds = audio_summary(dst)
    assert codec == "aac"
    assert seconds == pytest.approx(1.2, abs=0.1)
    # Matroska and MOV (cameras, ProRes workflows) store PCM as is.
    assert process_video(src, tmp_path / "out.mkv", identity).audio == "copied"
    assert process_video(src, tmp_path / "out.mov", identity).audio == "copied"
    assert audio_summary(tmp_path / "out.mov")[0] == "pcm_s16le"


def test_flac_audio_stays_lossless_in_mp4(tmp_path):
    # FLAC was transcoded to AAC for MP4, which stores it (fLaC); MOV does not.
    src = make_clip(tmp_path / "flac.mkv", audio="flac")
    assert process_video(src, tmp_path / "out.mp4", identity).audio == "copied"
    assert audio_packets(tmp_path / "out.mp4") == audio_packets(src)
    assert process_video(src, tmp_path / "out.mov", identity).audio == "transcoded:aac"


@pytest.mark.parametrize("ext, labels", [(".mkv", "copied (eng), copied (deu)"), (".mp4", "copied (eng), copied (deu)"),
                                         (".webm", "transcoded:opus (eng), transcoded:opus (deu)")])
def test_every_audio_track_is_carried_with_its_language(tmp_path, caplog, ext, labels):
    # A second language was dropped (one audio track was written, with a warning).
    src = make_clip(tmp_path / "two.mkv", n=6, extra_audio=1)
    with av.open(str(src)) as c:
        languages = [s.metadata.get("language") for s in c.streams.audio]
    with caplog.at_level(logging.WARNING):
        report = process_video(src, tmp_path / f"out{ext}", identity)
    assert report.audio == labels and "dropped" not in caplog.text
    with av.open(str(tmp_path / f"out{ext}")) as c:
        assert len(c.streams.audio) == 2
        assert [s.metadata.get("language") for s in c.streams.audio] == languages
        seconds = [float(s.duration * s.time_base) for s in c.streams.audio if s.duration]
    assert all(x == pytest.approx(6 / 25, abs=0.1) for x in seconds)


def test_mov_labels_tracks_with_quicktime_language_codes(tmp_path, caplog):
    # MOV keeps only QuickTime's language codes: "deu" and "swe" came out unlabelled while the
    # report named them. Their QuickTime spellings are written; a code it has none for is said.
    src = make_clip(tmp_path / "six.mkv", n=6, extra_audio=5)
    with caplog.at_level(logging.WARNING):
        report = process_video(src, tmp_path / "out.mov", identity)
    with av.open(str(tmp_path / "out.mov")) as c:
        languages = [s.metadata.get("language") for s in c.streams.audio]
    assert languages == ["eng", "ger", "fra", "spa", "sve", None]
    assert report.audio.split(", ")[:5] == [f"copied ({x})" for x in languages[:5]]
    assert report.audio.split(", ")[5] == "copied"
    assert "'zul'" in caplog.text and "unlabelled" in caplog.text and caplog.text.count("MOV files") == 1


def test_variable_frame_rate_timestamps_are_kept(tmp_path):
    pts_ms = [0, 40, 80, 200, 240, 400, 420, 440, 700, 720, 760, 1000]
    src = make_clip(tmp_path / "vfr.mkv", n=len(pts_ms), pts_ms=pts_ms, audio=None)
    for ext in (".mp4", ".mkv"):
        dst = tmp_path / f"vfr_out{ext}"
        assert process_video(src, dst, identity).frames == len(pts_ms)
        frames, times, _ = read_frames(dst)
        assert times == pytest.approx([t / 1000 for t in pts_ms], abs=1e-3)
        assert np.all(np.diff(ramp(frames)) > 3)


def test_rotation_metadata_is_kept(tmp_path):
    src = make_clip(tmp_path / "rot.mp4", audio=None, n=6, rotation=90)
    dst = tmp_path / "out.mp4"
    process_video(src, dst, identity)
    with av.open(str(dst)) as c:
        frame = next(c.decode(video=0))
        assert frame.rotation == 90
        assert (frame.width, frame.height) == (64, 48)



def test_rotation_that_avi_cannot_store_is_said(tmp_path, caplog):
    src = make_clip(tmp_path / "rot.mp4", audio=None, n=4, rotation=90)
    with caplog.at_level(logging.WARNING):
        process_video(src, tmp_path / "out.avi", identity)
    assert "90-degree display rotation cannot be stored in AVI" in caplog.text


def test_existing_output_is_replaced_and_no_temp_left(clips, tmp_path):
    dst = tmp_path / "out.mp4"
    dst.write_bytes(b"old")
    process_video(clips["even_ntsc_mute"], dst, identity)
    assert probe_video(dst).frame_count == 40
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------- encoder fallback


def test_explicit_codec_mpeg4_keeps_odd_size(clips, tmp_path):
    dst = tmp_path / "out.mp4"
    report = process_video(clips["odd25_mute"], dst, identity, codec="mpeg4")
    assert (report.video_codec, report.pix_fmt) == ("mpeg4", "yuv420p")
    frames, _, _ = read_frames(dst)
    assert len(frames) == 24
    assert frames[0].shape == (49, 65, 3)
    assert ramp(frames) == pytest.approx([frame_level(i) for i in range(24)], abs=4)


def test_falls_back_to_next_encoder_and_logs_it(clips, tmp_path, monkeypatch, caplog):
    # As if this PyAV build lacked its H.264 encoder.
    monkeypatch.setattr(video.encoders, "_H264_CHAIN", ("libdoes-not-exist", "mpeg4"))
    monkeypatch.setitem(video.encoders._CANONICAL, "libdoes-not-exist", "h264")
    with caplog.at_level(logging.WARNING, logger="deblur.runtime.video"):
        report = process_video(clips["even25_aac"], tmp_path / "out.mp4", identity)
    assert report.video_codec == "mpeg4"
    assert "libdoes-not-exist" in caplog.text and "mpeg4" in caplog.text
    assert probe_video(tmp_path / "out.mp4").codec == "mpeg4"


def test_unknown_codec_raises_video_error(clips, tmp_path):
    with pytest.raises(VideoError, match="no usable video encoder"):
        process_video(clips["even25_aac"], tmp_path / "out.mp4", identity, codec="nosuchcodec")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["out.txt", "out.flv", "out"])
def test_unsupported_output_container_raises(clips, tmp_path, name):
    with pytest.raises(VideoError, match="use .mp4"):
        process_video(clips["even25_aac"], tmp_path / name, identity)
    assert list(tmp_path.iterdir()) == []


def test_missing_source_raises_video_error(tmp_path):
    with pytest.raises(VideoError, match="no such file"):
        process_video(tmp_path / "missing.mp4", tmp_path / "out.mp4", identity)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_the_source(clips):
    with pytest.raises(VideoError, match="overwrite the input"):
        process_video(clips["even25_aac"], clips["even25_aac"], identity)


# ------------------------------------------------------ errors, stop, memory


class Boom(RuntimeError):
    pass


def test_frame_fn_exception_propagates_and_leaves_nothing(clips, tmp_path):
    calls = 0

    def explode(img):
        nonlocal calls
        calls += 1
        if calls == 5:
            raise Boom("model failed")
        return img

    dst = tmp_path / "out.mp4"
    dst.write_bytes(b"previous result")
    with pytest.raises(Boom, match="model failed"):
        process_video(clips["even25_aac"], dst, explode)
    assert dst.read_bytes() == b"previous result"
    assert leftovers(tmp_path) == []
    # The pipeline threads are joined before the error reaches the caller.
    assert not [t.name for t in threading.enumerate() if t.name.startswith("deblur-")]


def test_frame_fn_wrong_shape_is_reported(clips, tmp_path):
    with pytest.raises(ValueError, match=r"frame_fn returned shape \(24, 32, 3\)"):
        process_video(clips["even25_aac"], tmp_path / "out.mp4", lambda img: img[::2, ::2])
    with pytest.raises(ValueError, match="dtype float32"):
        process_video(
            clips["even25_aac"], tmp_path / "out.mp4", lambda img: img.astype(np.float32)
        )
    assert list(tmp_path.iterdir()) == []


def test_decoder_thread_error_propagates(clips, tmp_path, monkeypatch):
    real_item = video.stages._Item

    def failing_item(index, pts, image, *rest):
        if threading.current_thread().name == "deblur-decode" and index == 7:
            raise Boom("decoder broke")
        return real_item(index, pts, image, *rest)

    monkeypatch.setattr(video.stages, "_Item", failing_item)
    with pytest.raises(Boom, match="decoder broke"):
        process_video(clips["even25_aac"], tmp_path / "out.mp4", identity)
    assert list(tmp_path.iterdir()) == []


def test_encoder_thread_error_propagates(clips, tmp_path, monkeypatch):
    real_call = video.stages._Timestamps.__call__

    def failing_call(self, pts):
        out = real_call(self, pts)
        if self.calls_seen == 3:
            raise Boom("encoder broke")
        self.calls_seen += 1
        return out

    monkeypatch.setattr(video.stages._Timestamps, "calls_seen", 0, raising=False)
    monkeypatch.setattr(video.stages._Timestamps, "__call__", failing_call)
    with pytest.raises(Boom, match="encoder broke"):
        process_video(clips["even25_aac"], tmp_path / "out.mp4", identity)
    assert list(tmp_path.iterdir()) == []


def test_keyboard_interrupt_in_frame_fn_cleans_up(clips, tmp_path):
    def ctrl_c(img):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        process_video(clips["even25_aac"], tmp_path / "out.mp4", ctrl_c)
    assert list(tmp_path.iterdir()) == []
    assert not [t.name for t in threading.enumerate() if t.name.startswith("deblur-")]


def test_progress_callback_exception_propagates(clips, tmp_path):
    def bad_progress(done):
        if done == 3:
            raise Boom("progress bar broke")

    with pytest.raises(Boom, match="progress bar broke"):
        process_video(clips["even25_aac"], tmp_path / "out.mp4", identity, progress=bad_progress)
    assert list(tmp_path.iterdir()) == []


def test_stop_event_interrupts_without_output(clips, tmp_path):
    stop = threading.Event()

    def on_progress(done: int) -> None:
        if done == 5:
            stop.set()  # what a SIGINT handler would do

    dst = tmp_path / "out.mp4"
    with pytest.raises(VideoInterrupted) as excinfo:
        process_video(clips["even25_aac"], dst, identity, progress=on_progress, stop_event=stop)
    assert excinfo.value.frames_done == 5
    assert excinfo.value.frames_total == 30
    assert "5 of 30" in str(excinfo.value)
    assert not dst.exists()
    assert list(tmp_path.iterdir()) == []


def test_stop_event_set_from_another_thread(clips, tmp_path):
    stop = threading.Event()
    started = threading.Event()

    def slow(img):
        started.set()
        stop.wait(0.05)
        return img

    timer = threading.Thread(target=lambda: (started.wait(5), stop.set()))
    timer.start()
    with pytest.raises(VideoInterrupted) as excinfo:
        process_video(clips["even_ntsc_mute"], tmp_path / "out.mp4", slow, stop_event=stop)
    timer.join()
    assert 0 <= excinfo.value.frames_done < 40
    assert list(tmp_path.iterdir()) == []


def test_decoder_runs_at_most_a_bounded_distance_ahead(clips, tmp_path, monkeypatch):
    """Frames buffered between stages stay bounded by queue_size (flat memory)."""
    decoded = 0
    real_item = video.stages._Item

    def counting_item(index, pts, image, *rest):
        nonlocal decoded
        if threading.current_thread().name == "deblur-decode":
            decoded += 1
        return real_item(index, pts, image, *rest)

    monkeypatch.setattr(video.stages, "_Item", counting_item)
    processed = 0
    max_ahead = 0

    def slow(img):
        nonlocal processed, max_ahead
        threading.Event().wait(0.005)  # give the decoder time to run ahead if it could
        max_ahead = max(max_ahead, decoded - processed)
        processed += 1
        return img

    report = process_video(clips["even_ntsc_mute"], tmp_path / "out.mp4", slow, queue_size=2)
    assert report.frames == 40
    # queue (2) + the frame in frame_fn (1) + one finished frame waiting on a full queue (1)
    assert 2 <= max_ahead <= 2 + 2


def test_rejects_bad_arguments(clips, tmp_path):
    with pytest.raises(ValueError, match="queue_size"):
        process_video(clips["even25_aac"], tmp_path / "o.mp4", identity, queue_size=0)
    with pytest.raises(ValueError, match="crf"):
        process_video(clips["even25_aac"], tmp_path / "o.mp4", identity, crf=99)
    with pytest.raises(VideoError, match="does not exist"):
        process_video(clips["even25_aac"], tmp_path / "nodir" / "o.mp4", identity)
    assert list(tmp_path.iterdir()) == []


def test_module_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, deblur.runtime.video; "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], env={**os.environ}).returncode == 0


def _flat_clip(path, codec: str, pix_fmt: str, source_format: str, frames: int = 3):
    """A 64x48 grey clip stored as ``pix_fmt`` (made from ``source_format`` frames)."""
    channels = len(source_format.replace("24", "").replace("8", ""))  # bgr24 -> 3, rgba -> 4
    with av.open(str(path), "w") as c:
        vs = c.add_stream(codec, rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 48, pix_fmt
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, channels), 90, np.uint8), format=source_format)
            frame = frame.reformat(format=pix_fmt)
            frame.pts = i
            c.mux(vs.encode(frame))
        c.mux(vs.encode())
    return path


def _decoded16(path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="bgr48le").astype(np.int64) for f in c.decode(video=0)]


@pytest.mark.parametrize("pix_fmt, ext, codec, written", [
    ("yuv420p10le", ".mp4", "libx265", "yuv420p10le"),   # a phone's HDR video
    ("yuv422p10le", ".mov", "libx265", "yuv422p10le"),   # ProRes-like 4:2:2 footage
    ("yuv444p12le", ".mkv", "libx265", "yuv444p12le"),
    ("yuv420p10le", ".webm", "libsvtav1", "yuv420p10le"),
])
def test_deep_video_keeps_its_bits_and_chroma(tmp_path, caplog, pix_fmt, ext, codec, written):
    # 10-bit sources were processed and written with 8 bits (HDR gradients banded) and 4:2:2
    # became 4:2:0; frames now reach frame_fn as uint16 and the output keeps depth and chroma.
    src = make_deep_clip(tmp_path / "deep.mkv", pix_fmt, hdr=True)
    seen = []
    with caplog.at_level(logging.WARNING):
        report = process_video(src, tmp_path / f"out{ext}", lambda f: seen.append(f.dtype) or f)
    assert (report.video_codec, report.pix_fmt) == (codec, written)
    assert set(seen) == {np.dtype(np.uint16)} and "bits per channel" not in caplog.text
    with av.open(str(tmp_path / f"out{ext}")) as c:
        ctx = c.streams.video[0].codec_context
        assert (ctx.color_primaries, ctx.colorspace, ctx.color_trc) == (9, 9, 16)  # still HDR
    src_frames, out_frames = _decoded16(src), _decoded16(tmp_path / f"out{ext}")
    # Within a couple of 8-bit levels (256 in 16-bit units) after HEVC/AV1 compression; the
    # 4:2:0 decode that swscale garbled (FULL_CHR_H_INT) was 58 levels off.
    assert np.abs(out_frames[1] - src_frames[1]).mean() < 2 * 256


def test_deep_video_in_eight_bits_says_so(tmp_path, caplog):
    src = make_deep_clip(tmp_path / "hdr.mkv", "yuv420p10le", hdr=True)
    with caplog.at_level(logging.WARNING):
        report = process_video(src, tmp_path / "out.mp4", lambda f: f, codec="mpeg4")
    assert report.pix_fmt == "yuv420p"
    assert ("10-bit video (yuv420p10le) is written with 8 bits per channel, as mpeg4 has no deeper format here; "
            "choose --video-codec hevc to keep 10: its PQ HDR picture will show banding") in caplog.text
    # Asked for: uint8 frames, an 8-bit 4:2:0 H.264; HDR in 8 bits still says it bands.
    caplog.clear()
    seen = []
    with caplog.at_level(logging.WARNING):
        report = process_video(src, tmp_path / "out8.mp4", lambda f: seen.append(f.dtype) or f, keep_depth=False)
    assert (report.video_codec, report.pix_fmt) == ("libx264", "yuv420p") and set(seen) == {np.dtype(np.uint8)}
    assert caplog.text.count("WARNING") == 1 and "as asked: it will show banding" in caplog.text


def test_frame_fn_must_keep_the_frames_dtype(tmp_path):
    src = make_deep_clip(tmp_path / "deep.mkv", "yuv420p10le")
    with pytest.raises(ValueError, match=r"expected .* uint16 .*keep_depth=False\) hands on uint8 frames"):
        process_video(src, tmp_path / "out.mkv", lambda f: (f >> 8).astype(np.uint8))


@pytest.mark.parametrize("name, options", [("cut.mkv", {}), ("cut.mp4", {"movflags": "faststart"})])
def test_truncated_source_is_an_error_not_a_shorter_output(tmp_path, name, options):
    # MP4 with its index first (faststart) says how many frames it holds; Matroska says how
    # long the video stream is. Either way half a file must not pass as a whole one.
    full = tmp_path / f"full{name[3:]}"
    rng = np.random.default_rng(0)  # noise: frames of similar size, so the cut keeps decodable ones
    with av.open(str(full), "w", options=options) as c:
        vs = c.add_stream("libx264", rate=25, options={"g": "5"})  # keyframes often: half still decodes
        vs.width, vs.height = 64, 48
        for i in range(50):
            image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = i
            c.mux(vs.encode(frame))
        c.mux(vs.encode())
    data = full.read_bytes()
    cut = tmp_path / name
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(VideoError, match=rf"{name}: the video stops after \d+ (of 50 )?frames"):
        process_video(cut, tmp_path / f"out{name[3:]}", identity)
    assert process_video(full, tmp_path / f"whole{name[3:]}", identity).frames == 50
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([full.name, cut.name, f"whole{name[3:]}"])


def _noise_clip(path, n: int, first_pts: int = 0, audio_seconds: float = 0.0, **open_options):
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", **open_options) as c:
        vs = c.add_stream("libx264", rate=25, options={"g": "5", "bf": "0"})
        vs.width, vs.height = 64, 48
        astream = c.add_stream("aac", rate=44100) if audio_seconds else None
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), format="bgr24")
            frame.pts = first_pts + i
            c.mux(vs.encode(frame))
        c.mux(vs.encode())
        if astream is not None:
            write_sine(c, astream, seconds=audio_seconds)
    return path


def test_trimmed_mp4_whose_edit_list_hides_frames_is_not_called_truncated(tmp_path):
    # What `ffmpeg -ss 0.8 -c copy` leaves: 50 frames in the index, an edit list showing 30.
    src = _noise_clip(tmp_path / "src.mp4", 50)
    trimmed = tmp_path / "trimmed.mp4"
    with av.open(str(src)) as inp, av.open(str(trimmed), "w") as out:
        ivs = inp.streams.video[0]
        ovs = out.add_stream_from_template(ivs)
        shift = 20 * int(1 / (ivs.time_base * 25))
        for packet in inp.demux(ivs):
            if packet.dts is None:
                continue
            packet.pts, packet.dts, packet.stream = packet.pts - shift, packet.dts - shift, ovs
            out.mux(packet)
    assert probe_video(trimmed).frame_count == 50
    assert process_video(trimmed, tmp_path / "out.mp4", identity).frames == 30


def test_matroska_video_starting_late_is_not_called_truncated(tmp_path):
    # Video from 5 s to 7 s, audio from 0 s: its 2 s are not to be measured against 7 s.
    clip = _noise_clip(tmp_path / "late.mkv", 50, first_pts=125, audio_seconds=7.0)
    assert process_video(clip, tmp_path / "out.mkv", identity).frames == 50


def test_a_video_with_alpha_says_its_alpha_is_dropped(tmp_path, caplog):
    p = _flat_clip(tmp_path / "alpha.mov", "png", "rgba", "rgba")
    with caplog.at_level("WARNING"):
        process_video(p, tmp_path / "out.mov", lambda frame: frame)
    assert "alpha plane (rgba) is dropped" in caplog.text
    assert probe_video(tmp_path / "out.mov").frame_count == 3


@pytest.mark.parametrize("ext", [".mkv", ".mp4"])
def test_video_compare_shows_the_middle_frame_upright(tmp_path, ext):
    # Matroska gives no frame count (its duration does); a phone's display rotation is applied
    # as players do, like an image's EXIF orientation.
    import cv2

    from deblur.runtime.jobs import Job, run_jobs

    for audio_seconds in (None, 3.0):  # an audio track longer than the video must not move the middle
        src = make_clip(tmp_path / f"clip{ext}", n=20, audio="aac" if audio_seconds else None,
                        audio_seconds=audio_seconds)
        job = Job(src, tmp_path / f"out{ext}", "video")
        assert run_jobs(identity, [job], compare=True, overwrite=True).done == [job]
        left = cv2.imread(str(job.compare_path))[:, :64]
        assert abs(ramp([left])[0] - frame_level(10)) < 3, audio_seconds
    rotated = make_clip(tmp_path / f"rot{ext}", n=4, audio=None, rotation=90)
    job = Job(rotated, tmp_path / f"rout{ext}", "video")
    run_jobs(identity, [job], compare=True)
    picture = cv2.imread(str(job.compare_path))
    assert picture.shape[0] == 64  # 64x48 frames shown turned: 48 wide, 64 tall
    red = picture[:, :48, 2].astype(int) - picture[:, :48, 0]
    assert red[40:, :20].mean() > 100 and red[:20, :20].mean() < 30  # turned counterclockwise: red bottom-left


def test_avi_with_b_frames_is_timed_from_its_rate(tmp_path):
    # AVI stores decode order only: H.264 with B-frames decodes with best-effort times like
    # 1, 4, 3, 5, 2; the output must not inherit them (it came out 2.75 s long instead of 2.0).
    from video_fixtures import frame_image

    src = tmp_path / "bframes.avi"
    with av.open(str(src), "w") as c:
        vs = c.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        vs.codec_context.options = {"bf": "3"}
        for i in range(20):
            frame = av.VideoFrame.from_ndarray(frame_image(i, 64, 48), format="bgr24").reformat(format="yuv420p")
            frame.pts = i
            for p in vs.encode(frame):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
    with av.open(str(src)) as c:
        assert [f.pts for f in c.decode(video=0)] != list(range(1, 21))  # the scrambled times, still
    process_video(src, tmp_path / "out.mp4", identity)
    frames, times, _ = read_frames(tmp_path / "out.mp4")
    assert np.allclose(np.diff(times), 0.04) and len(frames) == 20
    assert np.all(np.diff(ramp(frames)) > 3)  # in display order


def test_a_relative_name_with_a_colon_is_a_file_not_a_protocol(tmp_path, monkeypatch):
    # FFmpeg read "2024-05-01T10:30:00.mp4" as protocol "2024-05-01T10" (refused), and
    # "file:x.mp4" as x.mp4: another video was deblurred.
    monkeypatch.chdir(tmp_path)
    make_clip(tmp_path / "2024-05-01T10:30:00.mp4", n=5, audio=None)
    make_clip(tmp_path / "file:x.mp4", n=7, audio=None)
    make_clip(tmp_path / "x.mp4", n=3, audio=None)
    assert process_video("2024-05-01T10:30:00.mp4", "out1.mp4", identity).frames == 5
    assert process_video("file:x.mp4", "out2.mp4", identity).frames == 7
    assert len(read_frames(tmp_path / "out2.mp4")[0]) == 7


@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".mov", ".webm"])
def test_non_square_pixels_keep_the_picture_shape(tmp_path, ext, caplog):
    # HDV stores 16:9 pictures as 1440x1080 with 4:3 pixels: dropping that squeezes the picture.
    src = make_clip(tmp_path / "hdv.mkv", w=48, h=36, n=4, audio=None, sar=Fraction(4, 3))
    assert probe_video(src).sample_aspect_ratio == Fraction(4, 3)
    with caplog.at_level(logging.WARNING):
        process_video(src, tmp_path / f"out{ext}", identity)
    if ext == ".webm":  # VP9 has no field for it, and PyAV cannot set Matroska's: said
        assert "non-square pixels (aspect 4/3) are not kept by libvpx-vp9 in .webm" in caplog.text
    else:
        assert probe_video(tmp_path / f"out{ext}").sample_aspect_ratio == Fraction(4, 3)
    assert probe_video(make_clip(tmp_path / "square.mp4", n=2, audio=None)).sample_aspect_ratio is None


@pytest.mark.parametrize("ext", [".mkv", ".webm"])
def test_a_held_last_frame_is_not_called_truncated_and_keeps_its_seconds(tmp_path, ext):
    # A slideshow or GIF-made clip: the last frame shows for 3 s, the track's DURATION says so.
    # It was refused as truncated; and every output frame got one frame step (3.44 s -> 0.48 s).
    src = make_clip(tmp_path / f"still{ext}", n=12, audio=None, hold_last_s=3.0,
                    **({"codec": "libvpx-vp9"} if ext == ".webm" else {}))
    assert probe_video(src).video_duration_s == pytest.approx(3.44, abs=0.05)
    for out in (".mkv", ".mp4", ".mov", ".webm"):
        assert process_video(src, tmp_path / f"out{out}", identity).frames == 12
        assert probe_video(tmp_path / f"out{out}").video_duration_s == pytest.approx(3.44, abs=0.01), out


@pytest.mark.parametrize("ext", [".mp4", ".mov"])
def test_variable_rate_into_mp4_ends_at_the_last_frames_end(tmp_path, ext, caplog):
    # With B-frames an MP4 track ends at its last *decoded* frame: 0.52 s instead of 1.04 here,
    # the frame at 1.0 s outside the track. Uneven times turn B-frames off for MP4/MOV.
    src = make_clip(tmp_path / "vfr.mkv", n=6, audio=None, pts_ms=[0, 40, 80, 400, 440, 1000])
    with caplog.at_level(logging.INFO):
        process_video(src, tmp_path / f"out{ext}", identity)
    assert "uneven frame times (variable rate or a held frame): B-frames off" in caplog.text
    assert probe_video(tmp_path / f"out{ext}").video_duration_s == pytest.approx(1.04, abs=0.01)
    _, times, _ = read_frames(tmp_path / f"out{ext}")
    assert times == pytest.approx([0, 0.04, 0.08, 0.4, 0.44, 1.0], abs=1e-3)
    caplog.clear()
    with caplog.at_level(logging.INFO):  # an even source keeps its B-frames (smaller files)
        process_video(make_clip(tmp_path / "even.mp4", n=6, audio=None), tmp_path / f"even_out{ext}", identity)
    assert "B-frames off" not in caplog.text


def test_an_rgb_source_is_tagged_with_the_matrix_it_was_converted_with(tmp_path):
    # swscale converts RGB to YUV with BT.601: untagged, players assume BT.709 for HD.
    src = make_clip(tmp_path / "rgb.mkv", n=3, audio=None, codec="libx264rgb")
    process_video(src, tmp_path / "out.mp4", identity)
    with av.open(str(tmp_path / "out.mp4")) as c:
        frame = next(c.decode(video=0))
        assert int(frame.colorspace) == 6  # SMPTE 170M (BT.601)


def test_replacing_a_video_keeps_its_file_mode(clips, tmp_path):
    dst = tmp_path / "private.mp4"
    dst.write_bytes(b"old")
    dst.chmod(0o640)
    process_video(clips["even25_aac"], dst, identity)
    assert dst.stat().st_mode & 0o777 == 0o640


def test_a_chosen_codec_is_used_and_one_the_container_cannot_hold_is_refused_up_front(clips, tmp_path):
    report = process_video(clips["even25_aac"], tmp_path / "out.mp4", identity, codec="libx265", crf=30)
    assert report.video_codec.startswith("libx265")
    with av.open(str(tmp_path / "out.mp4")) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "hevc" and stream.codec_tag == "hvc1"  # Apple players need hvc1
        assert stream.frames == 30
    with pytest.raises(VideoError, match="libx264: webm files cannot hold h264"):
        process_video(clips["even25_aac"], tmp_path / "out.webm", identity, codec="libx264")
    assert leftovers(tmp_path) == []


def _clip_with_subtitles(path, codec="subrip", texts=(b"Hello", b"World"), frames=10):
    """A tiny clip with a subtitle track of ``texts``, one every 0.5 s (English)."""
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=10)
        vs.width, vs.height, vs.pix_fmt = 32, 32, "yuv420p"
        subs = c.add_mux_stream(codec)
        subs.time_base = Fraction(1, 1000)
        subs.metadata["language"] = "eng"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            frame.pts = i
            for p in vs.encode(frame):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        for k, text in enumerate(texts):
            packet = av.Packet(text)
            packet.stream, packet.pts, packet.dts, packet.duration = subs, k * 500, k * 500, 400
            packet.time_base = Fraction(1, 1000)
            c.mux(packet)
    return path


def test_a_stream_ffmpeg_cannot_decode_is_named_not_a_crash(tmp_path, caplog):
    # TTML subtitles in MP4 have no decoder: PyAV gives them no codec context, and naming the
    # dropped streams raised AttributeError, ending a whole batch.
    ttml = (b"<tt xmlns='http://www.w3.org/ns/ttml'><body><div><p begin='0s' end='1s'>hi</p></div></body></tt>",)
    path = _clip_with_subtitles(tmp_path / "ttml.mp4", "ttml", ttml, frames=5)
    with caplog.at_level(logging.WARNING):
        assert process_video(path, tmp_path / "out.mp4", identity).frames == 5
    assert "1 subtitle stream (a codec FFmpeg cannot read, eng) dropped" in caplog.text


@pytest.mark.parametrize("ext", [".mp4", ".mov"])
def test_an_ntsc_rate_from_matroska_comes_out_constant_in_mp4(tmp_path, ext):
    # Matroska keeps 1 ms: 23.976 fps alternates 41 and 42 ms. Copied into MP4 that read as
    # 320000/13339 fps, variable, to editors; on the frame grid it is 24000/1001 exactly.
    src = make_clip(tmp_path / "ntsc.mkv", n=24, fps=Fraction(24000, 1001), audio="aac")
    process_video(src, tmp_path / f"out{ext}", identity)
    with av.open(str(tmp_path / f"out{ext}")) as c:
        stream = c.streams.video[0]
        pts = sorted(p.pts for p in c.demux(stream) if p.pts is not None)
        steps = {(b - a) * stream.time_base for a, b in zip(pts, pts[1:])}
        assert stream.average_rate == Fraction(24000, 1001)
    assert steps == {Fraction(1001, 24000)}
    assert audio_summary(tmp_path / f"out{ext}")[0] == "aac"


def test_subtitles_are_copied_where_the_container_holds_them_and_said_where_not(tmp_path, caplog):
    src = _clip_with_subtitles(tmp_path / "subs.mkv")
    with caplog.at_level(logging.WARNING):
        assert process_video(src, tmp_path / "out.mkv", identity).frames == 10
    assert "subtitle" not in caplog.text
    with av.open(str(tmp_path / "out.mkv")) as c:
        stream = c.streams.subtitles[0]
        assert stream.metadata.get("language") == "eng"
        assert [(bytes(p), p.pts) for p in c.demux(stream) if p.size] == [(b"Hello", 0), (b"World", 500)]
    with caplog.at_level(logging.WARNING):
        assert process_video(src, tmp_path / "out.mp4", identity).frames == 10
    assert "a subrip subtitle track is dropped: .mp4 files cannot hold subrip; write .mkv to keep it" in caplog.text
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert not c.streams.subtitles


def test_mp4_subtitles_into_matroska_are_said_with_the_right_fix(tmp_path, caplog):
    src = _clip_with_subtitles(tmp_path / "subs.mp4", "mov_text", (b"\x00\x05Hello",))
    with caplog.at_level(logging.WARNING):
        process_video(src, tmp_path / "out.mkv", identity)
    assert "a mov_text subtitle track is dropped: .mkv files cannot hold mov_text; write .mp4 or .mov" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        process_video(src, tmp_path / "out.mp4", identity)
    assert "subtitle" not in caplog.text


def test_containers_hold_codecs_by_their_standard_names_too(tmp_path):
    # FFmpeg lists dca/dvdsub/pgssub: a DTS track was transcoded and DVD subtitles dropped,
    # even Matroska to Matroska.
    from deblur.runtime.video.encoders import _Muxer

    with av.open(str(tmp_path / "x.mkv"), "w") as c:
        mkv = _Muxer(c)
    assert all(mkv.stores(name) for name in ("dts", "dvd_subtitle", "hdmv_pgs_subtitle", "subrip", "h264"))


def test_codec_quality_settings_reach_the_encoder(clips, tmp_path):
    from deblur.runtime.video.encoders import _video_quality

    sizes = {}
    for crf in (6, 48):  # mpeg4 took every --crf as the same quantiser
        process_video(clips["even25_aac"], tmp_path / f"q{crf}.mkv", invert, codec="mpeg4", crf=crf)
        sizes[crf] = (tmp_path / f"q{crf}.mkv").stat().st_size
    assert sizes[48] < sizes[6]  # were byte-identical
    # SVT-AV1 reads CRF 0 as "unset", its default: --crf 0 came out worse than 18.
    assert _video_quality("libsvtav1", 0, 64, 48, Fraction(25))[0]["crf"] == "1"
    with pytest.raises(VideoError, match="mov files cannot hold vp9"):  # the MOV header failed, blamed on audio
        process_video(clips["even25_aac"], tmp_path / "x.mov", identity, codec="libvpx-vp9")


def test_matroska_5994_comes_out_as_60000_1001(tmp_path):
    src = make_clip(tmp_path / "obs.mkv", n=30, fps=Fraction(60000, 1001), audio=None)
    assert probe_video(src).fps == Fraction(60000, 1001)  # FFmpeg reads Matroska's 1 ms duration as 19001/317
    process_video(src, tmp_path / "out.mp4", identity)
    assert average_rate(tmp_path / "out.mp4") == Fraction(60000, 1001)


def test_track_flags_and_order_are_kept(tmp_path):
    # Forced subtitles (shown without asking) lost their flag; with no default flagged, FFmpeg's
    # "best" audio (by bitrate) went first.
    src = _clip_with_subtitles(tmp_path / "flags.mkv")
    with av.open(str(src)) as c, av.open(str(tmp_path / "flagged.mkv"), "w") as out:
        streams = {}
        for s in c.streams:
            streams[s.index] = out.add_stream_from_template(s)
            streams[s.index].metadata.update(s.metadata)
        streams[1].disposition = av.stream.Disposition.forced
        for packet in c.demux():
            if packet.size:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    process_video(tmp_path / "flagged.mkv", tmp_path / "out.mkv", identity)
    with av.open(str(tmp_path / "out.mkv")) as c:
        assert c.streams.subtitles[0].disposition & av.stream.Disposition.forced
    two = make_clip(tmp_path / "two.mkv", n=6, extra_audio=1)
    process_video(two, tmp_path / "two_out.mp4", identity)
    with av.open(str(tmp_path / "two_out.mp4")) as c:
        assert [s.metadata.get("language") for s in c.streams.audio] == ["eng", "deu"]


def test_avi_says_what_it_cannot_keep(tmp_path, caplog):
    src = make_clip(tmp_path / "vfr.mkv", n=6, audio=None, pts_ms=[0, 40, 80, 400, 440, 1000])
    with caplog.at_level(logging.WARNING):
        process_video(src, tmp_path / "out.avi", identity)
    assert "AVI stores no frame times: frames are re-timed at the average rate from 0" in caplog.text
    caplog.clear()
    # An even H.264 AVI (its first pts one reorder delay late: no late start) says nothing.
    even = make_clip(tmp_path / "even.avi", n=10, audio=None)
    with caplog.at_level(logging.WARNING):
        process_video(even, tmp_path / "again.avi", identity)
        process_video(make_clip(tmp_path / "bframes.mp4", n=10, audio=None), tmp_path / "b.avi", identity)
    assert "stores no frame times" not in caplog.text


def test_only_rates_next_to_ntsc_ones_are_taken_for_them():
    from deblur.runtime.video.probe import _standard_rate

    assert _standard_rate(Fraction(19001, 317)) == Fraction(60000, 1001)  # Matroska's 1 ms reading
    assert _standard_rate(Fraction(2997, 100)) == Fraction(30000, 1001)
    assert _standard_rate(Fraction(29972, 1000)) == Fraction(29972, 1000)  # a measured average stays


@pytest.mark.parametrize("ext", [".mkv", ".mp4", ".mov", ".webm"])
def test_chapters_are_carried(tmp_path, ext):
    # A film's chapter list was dropped.
    src = make_clip(tmp_path / "film.mkv", n=50, audio=None)
    with av.open(str(src)) as c, av.open(str(tmp_path / "chaptered.mkv"), "w") as out:
        out.add_stream_from_template(c.streams.video[0])
        out.set_chapters([{"id": 9_000_000_001, "start": 0, "end": 1000, "time_base": Fraction(1, 1000),
                           "metadata": {"title": "Intro"}},
                          {"id": 9_000_000_002, "start": 1000, "end": 2000, "time_base": Fraction(1, 1000),
                           "metadata": {"title": "Zweiter Teil"}}])
        for packet in c.demux():
            if packet.size:
                packet.stream = out.streams[0]
                out.mux(packet)
    process_video(tmp_path / "chaptered.mkv", tmp_path / f"out{ext}", identity)
    with av.open(str(tmp_path / f"out{ext}")) as c:
        chapters = [(float(ch["start"] * ch["time_base"]), float(ch["end"] * ch["time_base"]), ch["metadata"]["title"])
                    for ch in c.chapters()]
        assert not c.streams.subtitles
    assert chapters == [(0.0, 1.0, "Intro"), (1.0, 2.0, "Zweiter Teil")]


def test_avi_says_its_chapters_are_dropped(tmp_path, caplog):
    src = make_clip(tmp_path / "film.mp4", n=10, audio=None)
    with av.open(str(src)) as c, av.open(str(tmp_path / "chaptered.mp4"), "w") as out:
        out.add_stream_from_template(c.streams.video[0])
        out.set_chapters([{"id": 1, "start": 0, "end": 400, "time_base": Fraction(1, 1000), "metadata": {"title": "A"}}])
        for packet in c.demux():
            if packet.size:
                packet.stream = out.streams[0]
                out.mux(packet)
    with caplog.at_level(logging.WARNING):
        process_video(tmp_path / "chaptered.mp4", tmp_path / "out.avi", identity)
    assert "chapter list (1) cannot be stored in AVI" in caplog.text


def test_hdr10_metadata_is_carried(tmp_path, caplog):
    # An HDR10 clip's mastering display and light levels (SEI) were dropped: displays tone-map
    # by them.
    params = "log-level=none:master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1):" \
             "max-cll=1000,400"
    src = tmp_path / "hdr10.mp4"
    with av.open(str(src), "w") as c:
        vs = c.add_stream("libx265", rate=25, options={"x265-params": params})
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p10le"
        ctx = vs.codec_context
        ctx.color_primaries, ctx.colorspace, ctx.color_trc = 9, 9, 16
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20000, np.uint16), format="bgr48le")
            frame = frame.reformat(format="yuv420p10le")
            frame.pts = i
            c.mux(vs.encode(frame))
        c.mux(vs.encode())

    def side_data(path):  # in x265's units (AV1 stores its own fixed point)
        source = _probe(path)
        return {k: v for k, v in (("display", source.master_display), ("light", source.max_cll)) if v}

    # HEVC by default; AV1 (SVT-AV1) for .webm takes it in its own units.
    for out in ("out.mkv", "out.webm"):
        with caplog.at_level(logging.WARNING):
            process_video(src, tmp_path / out, identity)
        assert side_data(tmp_path / out) == side_data(src) and len(side_data(src)) == 2, out
    assert "HDR10" not in caplog.text
    with caplog.at_level(logging.WARNING):
        process_video(src, tmp_path / "h264.mkv", identity, codec="libx264")
    assert "HDR10 metadata (mastering display, light levels) is not carried by libx264; HEVC and AV1" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # 8 bits as asked: banding said, metadata left out
        process_video(src, tmp_path / "eight.mkv", identity, keep_depth=False)
    assert "10-bit PQ HDR video written with 8 bits per channel, as asked: it will show banding" in caplog.text
    assert len(side_data(tmp_path / "eight.mkv")) == 0

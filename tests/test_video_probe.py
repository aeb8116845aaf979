"""probe_video: what a video file holds, and one clear error for each kind of bad file."""

from fractions import Fraction

import av
import pytest

from deblur.runtime.video import VideoError, VideoInfo, probe_video
from video_fixtures import SAMPLE_RATE, write_sine


def test_probe_reports_size_rate_count_codec_audio(clips):
    info = probe_video(clips["even25_aac"])
    assert isinstance(info, VideoInfo)
    assert (info.width, info.height) == (64, 48)
    assert info.fps == Fraction(25)
    assert info.frame_count == 30
    assert info.codec == "h264"
    assert info.has_audio is True
    assert info.duration_s == pytest.approx(1.2, abs=0.05)

    odd = probe_video(clips["odd_ntsc_aac"])
    assert (odd.width, odd.height, odd.fps) == (65, 49, Fraction(30000, 1001))
    assert probe_video(clips["odd25_mute"]).has_audio is False


def test_probe_rejects_text_file_named_mp4(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("this is not a video\n" * 50)
    with pytest.raises(VideoError, match="notes.mp4.*not a readable video"):
        probe_video(p)


def test_probe_rejects_empty_file(tmp_path):
    p = tmp_path / "empty.mp4"
    p.write_bytes(b"")
    with pytest.raises(VideoError, match="empty.mp4.*empty"):
        probe_video(p)


def test_probe_rejects_missing_file(tmp_path):
    with pytest.raises(VideoError, match="nope.mp4.*no such file"):
        probe_video(tmp_path / "nope.mp4")


def test_probe_rejects_audio_only_file(tmp_path):
    p = tmp_path / "song.m4a"
    with av.open(str(p), "w") as c:
        a = c.add_stream("aac", rate=SAMPLE_RATE)
        a.layout = "stereo"
        write_sine(c, a, seconds=0.5)
    with pytest.raises(VideoError, match="song.m4a.*no video stream"):
        probe_video(p)


def test_probe_rejects_video_stream_without_frames(tmp_path):
    p = tmp_path / "hollow.mkv"
    with av.open(str(p), "w") as c:
        vs = c.add_stream("libx264", rate=25)
        vs.width, vs.height = 64, 48
        c.start_encoding()
    with pytest.raises(VideoError, match="hollow.mkv.*(no frames|before any video frame)"):
        probe_video(p)


def test_video_error_is_a_value_error():
    assert issubclass(VideoError, ValueError)

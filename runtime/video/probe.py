"""Reading a source video: what :func:`probe_video` reports and the pipeline needs.

Decodes the first frame of every file it accepts, so a file that opens but
holds no picture is refused before any work starts.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import av.error

from .errors import VideoError, _why

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` learned about a video file.

    Attributes:
        width, height: decoded frame size in pixels.
        fps: average frame rate (exact fraction, e.g. ``30000/1001``).
        frame_count: frames according to the container, ``None`` when it does not
            say (Matroska/WebM usually do not); never estimated.
        codec: the source video codec, e.g. ``"h264"``.
        has_audio: whether there is at least one audio track.
        duration_s: length in seconds, ``None`` when unknown.
        rotation: the display rotation players apply, degrees counterclockwise (a phone
            held upright records 90 or -90); 0 when none.
        video_duration_s: the video stream's own length (``duration_s`` may be the
            container's, which a longer audio track extends); ``None`` when unknown.
        sample_aspect_ratio: the shape of one pixel (DV and HDV store non-square ones:
            8/9, 4/3), ``None`` when square or unknown.
        color_primaries, color_trc: the H.273 colour primaries and transfer the video is
            tagged with (9 and 16/18: BT.2020 with PQ/HLG, HDR); 2 when untagged.
    """

    width: int
    height: int
    fps: Fraction
    frame_count: int | None
    codec: str
    has_audio: bool
    duration_s: float | None
    rotation: int = 0
    video_duration_s: float | None = None
    sample_aspect_ratio: Fraction | None = None
    color_primaries: int = 2
    color_trc: int = 2


@dataclass(frozen=True)
class _Source:
    """Probe results the pipeline needs beyond the public :class:`VideoInfo`."""

    path: str
    info: VideoInfo
    video_index: int
    # Every audio track as (stream index, codec), the one FFmpeg ranks first (the "default"
    # of a multi-language file) first: all are carried.
    audio_tracks: tuple[tuple[int, str], ...]
    # Subtitle tracks as (stream index, codec): copied where the output container holds the codec.
    subtitle_tracks: tuple[tuple[int, str], ...]
    time_base: Fraction
    colorspace: int
    color_range: int
    metadata: dict[str, str]
    pix_fmt: str = "yuv420p"  # the decoder's output format, e.g. yuv420p10le
    bits: int = 8  # per channel
    alpha: bool = False  # an alpha plane (e.g. PNG or ProRes 4444 in MOV); the output has none
    # Streams the output does not carry: other audio tracks, subtitles (as "2 audio tracks").
    dropped: tuple[str, ...] = ()
    # Frame times to re-derive from the rate: AVI stores none (only decode order), so frames
    # with B-frames come back with best-effort times out of order.
    untimed: bool = False
    # Chapters as PyAV gives them (start, end, time_base, metadata with the title).
    chapters: tuple[dict[str, Any], ...] = ()
    # HDR10 static metadata, in the integer units of its SEI (as x265 takes it): the G, B, R
    # primaries and white point x, y in 0.00002, then max and min luminance in 0.0001 cd/m2;
    # MaxCLL, MaxFALL in cd/m2. None when the source has none.
    master_display: tuple[int, ...] | None = None
    max_cll: tuple[int, int] | None = None


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Describe the video at ``path``.

    Decodes the first frame, so a file that opens but holds no picture is caught
    here rather than halfway through a run.

    Raises:
        VideoError: the file is missing, empty, not a video, has no video stream
            (e.g. audio only) or no decodable frame. The message names the file
            and what to do about it.
    """
    return _probe(path).info


def _probe(path: str | os.PathLike[str]) -> _Source:
    p = os.fspath(path)
    if not os.path.exists(p):
        raise VideoError(f"{p}: no such file; check the path")
    if os.path.isdir(p):
        raise VideoError(f"{p}: is a folder; pass a video file")
    if os.path.getsize(p) == 0:
        raise VideoError(f"{p}: the file is empty (0 bytes); re-export or re-download it")
    try:
        container = av.open(_local(p))
    except av.error.EOFError as e:
        # Headers parse but the stream probe hits the end: a stream with no frames.
        raise VideoError(
            f"{p}: the file ends before any video frame (no frames, or truncated); "
            "re-export it"
        ) from e
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise VideoError(
            f"{p}: not a readable video ({_why(e)}); check that it is a video file, "
            "or convert it first, e.g. `ffmpeg -i IN -c:v libx264 -c:a aac OUT.mp4`"
        ) from e
    with container:
        # Cover art in audio files shows up as a one-frame "video" stream.
        videos = [
            s
            for s in container.streams.video
            if not s.disposition & av.stream.Disposition.attached_pic
        ]
        if not videos:
            raise VideoError(
                f"{p}: has no video stream (audio-only or data file?); pass a video file"
            )
        vs = videos[0]
        try:
            first = next(iter(container.decode(vs)), None)
        except av.error.FFmpegError as e:
            raise VideoError(
                f"{p}: the video stream cannot be decoded ({_why(e)}); the file may be "
                "truncated or use a codec this FFmpeg build lacks; try re-encoding it "
                "with ffmpeg"
            ) from e
        if first is None:
            raise VideoError(
                f"{p}: the video stream has no frames; the file is probably truncated, "
                "re-export it"
            )

        tb = vs.time_base or Fraction(1, 90000)
        rate = vs.average_rate or vs.guessed_rate or vs.base_rate
        if not rate:
            rate = Fraction(25)
            log.warning("%s: frame rate unknown; assuming 25 fps", p)
        rate = _standard_rate(Fraction(rate))
        if vs.duration:
            duration: float | None = float(vs.duration * tb)
        elif container.duration:
            duration = container.duration / 1_000_000
        else:
            duration = None
        audio = _pick_audio(container)
        info = VideoInfo(
            width=first.width,
            height=first.height,
            fps=Fraction(rate),
            frame_count=vs.frames if vs.frames > 0 else None,
            codec=vs.codec_context.name,
            has_audio=audio is not None,
            duration_s=duration,
            rotation=_rotation_of(first),
            video_duration_s=_video_duration(vs, tb, container),
            sample_aspect_ratio=_pixel_shape(vs),
            color_primaries=int(first.color_primaries),
            color_trc=int(first.color_trc),
        )
        return _Source(
            path=p,
            info=info,
            video_index=vs.index,
            audio_tracks=tuple((s.index, _codec_name(s)) for s in ([audio] if audio is not None else [])
                               + [s for s in container.streams.audio if s is not audio and s.codec_context]),
            time_base=Fraction(tb),
            colorspace=int(first.colorspace),
            color_range=int(first.color_range),
            metadata=dict(container.metadata),
            pix_fmt=first.format.name,
            bits=_pixel_bits(first.format.name),
            alpha=any(c.is_alpha for c in first.format.components),
            **_hdr10(first),
            subtitle_tracks=tuple((s.index, _codec_name(s)) for s in container.streams.subtitles if s.codec_context),
            dropped=_dropped_streams(container, vs),
            untimed="avi" in container.format.name.split(","),
            chapters=tuple(container.chapters()),
        )


def _hdr10(frame: Any) -> dict[str, tuple[int, ...]]:
    """The frame's HDR10 static metadata (SMPTE ST 2086 mastering display, CTA-861.3 light
    levels), from FFmpeg's AVMasteringDisplayMetadata / AVContentLightMetadata side data."""
    found: dict[str, tuple[int, ...]] = {}
    for side in getattr(frame, "side_data", ()):
        kind, data = getattr(side.type, "name", str(side.type)), bytes(side)
        if kind == "MASTERING_DISPLAY_METADATA" and len(data) >= 88:
            # 10 rationals (R, G, B primaries x/y, white point x/y, min and max luminance) as
            # int32 pairs, then has_primaries and has_luminance.
            values = struct.unpack("<20i2i", data[:88])
            ratio = [n / d if d else 0.0 for n, d in zip(values[0:20:2], values[1:20:2])]
            if values[20] and values[21]:
                (rx, ry, gx, gy, bx, by, wx, wy), (low, high) = ratio[:8], ratio[8:10]
                found["master_display"] = (*(round(v * 50000) for v in (gx, gy, bx, by, rx, ry, wx, wy)),
                                           round(high * 10000), round(low * 10000))
        elif kind == "CONTENT_LIGHT_LEVEL" and len(data) >= 8:
            found["max_cll"] = struct.unpack("<2I", data[:8])
    return found


def _pixel_bits(pix_fmt: str) -> int:
    """Bits per channel of a pixel format (10 for yuv420p10le)."""
    return max((c.bits for c in av.VideoFormat(pix_fmt).components), default=8)


def _local(path: str) -> str:
    """``path`` as FFmpeg must get it to read a local file: absolute, because a relative name
    with a colon ("2024-05-01T10:30.mp4", "file:x.mp4") is taken for a protocol, and
    refused or, worse, resolved to another file."""
    return os.path.abspath(path)


def _video_duration(vs: Any, tb: Fraction, container: Any) -> float | None:
    """The video stream's own length: its header field, Matroska's per-track DURATION tag, or
    the container's when the video is its only stream (else audio may make that longer)."""
    if vs.duration:
        return float(vs.duration * tb)
    tag = vs.metadata.get("DURATION")  # "HH:MM:SS.nnnnnnnnn": where the track ends, not its length
    if tag:
        try:
            hours, minutes, seconds = tag.split(":")
            end = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
            return end - float((vs.start_time or 0) * tb)
        except ValueError:
            pass
    if len(container.streams) == 1 and container.duration:
        return container.duration / 1_000_000
    return None


def _pixel_shape(vs: Any) -> Fraction | None:
    """The sample (pixel) aspect ratio, from the container or the codec; None when square."""
    for sar in (vs.sample_aspect_ratio, vs.codec_context.sample_aspect_ratio):
        if sar and sar > 0 and sar != 1:
            return Fraction(sar)
    return None


def _codec_name(stream: Any) -> str:
    # No codec context where FFmpeg has no decoder for it (TTML subtitles in MP4).
    return stream.codec_context.codec.canonical_name if stream.codec_context is not None else "a codec FFmpeg cannot read"


def _dropped_streams(container: Any, kept_video: Any) -> tuple[str, ...]:
    """What a user would miss in the output, named (codec, language): further video streams and
    cover art, audio and subtitles FFmpeg cannot read."""
    def name(stream: Any) -> str:
        language = stream.metadata.get("language")
        return _codec_name(stream) + (f", {language}" if language and language != "und" else "")

    groups = {"audio track": [s for s in container.streams.audio if s.codec_context is None],
              "video stream": [s for s in container.streams.video if s is not kept_video],
              "subtitle stream": [s for s in container.streams.subtitles if s.codec_context is None]}
    return tuple(f"{len(streams)} {what}{'s' if len(streams) > 1 else ''} ({', '.join(map(name, streams))})"
                 for what, streams in groups.items() if streams)


def _standard_rate(rate: Fraction) -> Fraction:
    """An NTSC-family rate as itself: Matroska's 1 ms frame duration reads 59.94 as 19001/317,
    which MP4 outputs then carried as their rate (editors show 59.940063)."""
    for ntsc in (Fraction(24000, 1001), Fraction(30000, 1001), Fraction(48000, 1001), Fraction(60000, 1001),
                 Fraction(120000, 1001)):
        # Matroska's 19001/317 is 5e-8 away, a decimal 29.97 1e-6; a measured 29.972 (a phone's
        # variable rate) is 7e-5 away and stays itself.
        if abs(rate - ntsc) < ntsc * Fraction(1, 500_000):
            return ntsc
    return rate


def _pick_audio(container: Any) -> Any:
    if not container.streams.audio:
        return None
    # The track flagged default goes first; with none flagged, the source's order stands
    # (FFmpeg's "best" would pick by bitrate, putting a 5.1 dub before the original).
    readable = [s for s in container.streams.audio if s.codec_context is not None]
    flagged = [s for s in readable if s.disposition & av.stream.Disposition.default]
    return flagged[0] if flagged else readable[0] if readable else None


def _rotation_of(frame: Any) -> int:
    try:
        return int(round(frame.rotation))
    except Exception:  # no display matrix support in this build
        return 0

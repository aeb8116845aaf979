"""Frame-by-frame video deblurring pipeline used by ``deblur-run``.

:func:`process_video` decodes a video, hands every frame to a caller-supplied
``frame_fn`` (the ONNX model) and re-encodes the result next to the original
audio. Decoding, inference and encoding run in three threads joined by bounded
queues, so the model is never starved by I/O and memory stays flat however long
the video is.

Torch-free on purpose: only numpy and PyAV (FFmpeg) are used here.

Output guarantees:

* every source frame, in order, same width/height, source timestamps kept
  (so the average frame rate, and variable frame rate timing, survive);
* the first audio track is copied packet for packet when the output container
  accepts its codec, and otherwise transcoded (AAC, or Opus/Vorbis for WebM);
* the output appears atomically: it is written to a hidden temporary file in
  the destination folder and renamed at the end, so an error or a stop never
  leaves a partial file behind.

Video encoding: H.264 (libx264, yuv420p, CRF) when the PyAV build has it, else
the next encoder that really opens (libopenh264, then FFmpeg's built-in mpeg4;
libvpx-vp9, libvpx, SVT-AV1 for .webm), logged as a warning. H.264 4:2:0 cannot
represent odd widths/heights (its cropping works in 2-pixel steps), so odd-sized
video is written as 4:4:4 H.264 to keep the exact size; VP9 and mpeg4 keep odd
sizes in 4:2:0. Colour matrix, range, primaries and transfer tags of the source
are kept, and so is its rotation metadata.

Containers written: .mp4, .m4v, .mov, .mkv, .webm, .avi, .ts (others are refused
up front rather than risking a late muxer failure). AVI has no per-frame
timestamps, so there frames are re-timed at the average rate.

Not carried over: subtitle, data and extra audio tracks, chapters.
"""

from __future__ import annotations

import fractions
import logging
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import av
import av.error
import numpy as np
from av.video.reformatter import Interpolation

__all__ = [
    "VideoError",
    "VideoInfo",
    "VideoInterrupted",
    "VideoReport",
    "probe_video",
    "process_video",
]

log = logging.getLogger(__name__)

Fraction = fractions.Fraction

# Encoders tried in order when the caller does not name one. H.264 first because
# every player handles it; mpeg4 is FFmpeg's built-in last resort.
_H264_CHAIN = ("libx264", "libopenh264", "mpeg4")
_WEBM_CHAIN = ("libvpx-vp9", "libvpx", "libsvtav1")
# Audio encoders for the transcode path, best first, per output muxer.
_AAC_CHAIN = ("aac", "libfdk_aac")
_WEBM_AUDIO_CHAIN = ("libopus", "opus", "libvorbis", "vorbis")

# The output muxers we write, each with the audio codecs copied into it as-is.
# The muxers claim more (PCM in MP4 fails when writing the trailer, after all the
# video work; FLV aborts the whole process on some PCM), so anything not listed
# is transcoded, and other containers are refused up front. None: whatever the
# muxer says it stores (Matroska stores nearly everything).
_COPY_AUDIO: dict[str, frozenset[str] | None] = {
    "mp4": frozenset({"aac", "mp3", "ac3", "eac3", "alac", "opus"}),
    "mov": frozenset({"aac", "mp3", "ac3", "eac3", "alac"}),
    "ipod": frozenset({"aac", "alac"}),
    "matroska": None,
    "webm": frozenset({"opus", "vorbis"}),
    "avi": frozenset({"mp3", "mp2", "ac3", "aac", "pcm_s16le", "pcm_u8"}),
    "mpegts": frozenset({"aac", "ac3", "eac3", "mp3", "mp2"}),
}
_EXTENSIONS = ".mp4, .m4v, .mov, .mkv, .webm, .avi or .ts"
_VFR_MUXERS = frozenset({"mp4", "mov", "ipod", "matroska", "webm", "mpegts"})

# AVColorSpace values whose number is also the matching swscale SWS_CS_* value
# (BT.709, FCC, BT.470BG/601, SMPTE 170M, SMPTE 240M, BT.2020 NCL). Anything
# else (RGB, unspecified, ...) falls back to swscale's BT.601 default.
_SWS_MATRICES = {1, 4, 5, 6, 7, 9}
_RANGE_MPEG, _RANGE_JPEG = 1, 2
_AVFMT_VARIABLE_FPS = 0x0400
# FFmpeg's default layout per channel count, for sources whose layout is only
# "N channels" (PCM in Matroska, say), which most encoders refuse.
_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}
# Codec names of encoders that may be missing from the build, for muxer checks.
_CANONICAL = {
    "libx264": "h264",
    "libopenh264": "h264",
    "libvpx-vp9": "vp9",
    "libvpx": "vp8",
    "libsvtav1": "av1",
    "libopus": "opus",
    "libvorbis": "vorbis",
    "libfdk_aac": "aac",
}
# Pairings FFmpeg's codec query denies for MPEG-TS although the muxer writes them.
_ALSO_STORES = {"mpegts": frozenset({"h264", "hevc", "aac", "ac3", "eac3", "mp3", "opus"})}

# swscale flags for the BGR <-> YUV conversions. The default (plain bilinear)
# truncates instead of rounding and leaves chroma one code low: each round trip
# darkens by ~3 levels and tints green, on every frame. Accurate rounding plus
# full-resolution chroma brings the round trip error to ~0.1 level for a few ms
# per 1080p frame, spent in the decode/encode threads.
_SWS_FLAGS = (
    Interpolation.BILINEAR
    | Interpolation.ACCURATE_RND
    | Interpolation.FULL_CHR_H_INT
    | Interpolation.FULL_CHR_H_INP
)

# How often blocked queue operations wake up to look for an abort or a stop.
_POLL_S = 0.05


class VideoError(ValueError):
    """A video file cannot be read or written; the message says which and what to do."""


class VideoInterrupted(Exception):
    """Processing was stopped through ``stop_event``; no output file was written.

    Attributes:
        frames_done: frames that went through ``frame_fn`` before the stop.
        frames_total: frames in the source when the container says, else ``None``.
    """

    def __init__(self, frames_done: int, frames_total: int | None = None) -> None:
        self.frames_done = frames_done
        self.frames_total = frames_total
        of = f" of {frames_total}" if frames_total else ""
        super().__init__(f"stopped after {frames_done}{of} frames; no output written")


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
    """

    width: int
    height: int
    fps: Fraction
    frame_count: int | None
    codec: str
    has_audio: bool
    duration_s: float | None


@dataclass(frozen=True)
class VideoReport:
    """Outcome of :func:`process_video`.

    Attributes:
        frames: frames written (always every source frame).
        seconds: wall-clock time of the whole call.
        fps: frames per second achieved end to end.
        video_codec: the encoder that was used, e.g. ``"libx264"``.
        audio: ``"copied"``, ``"transcoded:<codec>"`` (e.g. ``"transcoded:aac"``) or ``"none"``.
        pix_fmt: encoded pixel format (``"yuv420p"``; ``"yuv444p"`` for odd sizes in H.264).
    """

    frames: int
    seconds: float
    fps: float
    video_codec: str
    audio: str
    pix_fmt: str


@dataclass(frozen=True)
class _Source:
    """Probe results the pipeline needs beyond the public :class:`VideoInfo`."""

    path: str
    info: VideoInfo
    video_index: int
    audio_index: int | None
    audio_codec: str | None
    time_base: Fraction
    colorspace: int
    color_range: int
    color_primaries: int
    color_trc: int
    rotation: int
    metadata: dict[str, str]


# --------------------------------------------------------------------------- probing


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
        container = av.open(p)
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
        )
        return _Source(
            path=p,
            info=info,
            video_index=vs.index,
            audio_index=None if audio is None else audio.index,
            audio_codec=None if audio is None else audio.codec_context.codec.canonical_name,
            time_base=Fraction(tb),
            colorspace=int(first.colorspace),
            color_range=int(first.color_range),
            color_primaries=int(first.color_primaries),
            color_trc=int(first.color_trc),
            rotation=_rotation_of(first),
            metadata=dict(container.metadata),
        )


def _pick_audio(container: Any) -> Any:
    if not container.streams.audio:
        return None
    try:
        # FFmpeg's pick honours the "default" disposition of multi-language files.
        best = container.streams.best("audio")
    except Exception:  # older PyAV without best(): fall back to the first track
        best = None
    return best if best is not None else container.streams.audio[0]


def _rotation_of(frame: Any) -> int:
    try:
        return int(round(frame.rotation))
    except Exception:  # no display matrix support in this build
        return 0


def _why(e: BaseException) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


# ------------------------------------------------------------------ encoder choice


@dataclass(frozen=True)
class _VideoPlan:
    encoder: str
    pix_fmt: str
    time_base: Fraction
    constant_rate: bool  # re-time frames as index / fps (muxer cannot store per-frame times)
    options: dict[str, str]
    bit_rate: int
    qscale: int | None  # mpeg4-style fixed quantiser, None for rate-controlled encoders


def _video_quality(
    name: str, crf: int, width: int, height: int, rate: Fraction
) -> tuple[dict[str, str], int, int | None]:
    """Translate an x264-style CRF into the named encoder's own quality knobs."""
    # A generous bitrate for encoders that only know bitrates: ~0.25 bit/pixel at CRF 18.
    bits = width * height * float(rate) * 0.25 * 2 ** ((18 - crf) / 6)
    bit_rate = int(min(max(bits, 200_000), 200_000_000))
    # libvpx/SVT-AV1 CRF runs 0..63 and lands near x264's look at ~1.75x the value.
    crf63 = str(min(63, max(0, round(crf * 1.75))))
    if name == "libx264":
        return {"crf": str(crf)}, 0, None
    if name == "libvpx-vp9":
        # bitrate 0 + crf = constant-quality mode; cpu-used 4 keeps VP9 usable speed-wise.
        return {"crf": crf63, "deadline": "good", "cpu-used": "4", "row-mt": "1"}, 0, None
    if name == "libvpx":
        # VP8 only supports constrained quality: crf needs a bitrate ceiling.
        return {"crf": crf63, "deadline": "good", "cpu-used": "4"}, bit_rate, None
    if name == "libsvtav1":
        return {"crf": crf63, "preset": "8"}, 0, None
    if name in {"mpeg4", "mpeg2video", "mpeg1video", "msmpeg4", "mjpeg"}:
        return {}, 0, min(31, max(1, round(crf / 6)))
    return {}, bit_rate, None


class _Muxer:
    """What the output muxer can store, asked once."""

    def __init__(self, container: Any) -> None:
        self.name: str = container.format.name
        # The ipod (.m4v) muxer lacks the flag but is MP4 underneath.
        self.variable_fps = self.name in _VFR_MUXERS or bool(
            container.format.flags & _AVFMT_VARIABLE_FPS
        )
        self.default_video: str | None = container.default_video_codec
        self.default_audio: str | None = container.default_audio_codec
        self._stores = frozenset(container.supported_codecs) | _ALSO_STORES.get(
            self.name, frozenset()
        )

    def stores(self, codec: str) -> bool:
        """Whether the muxer positively says it can hold ``codec`` (canonical name)."""
        return codec in self._stores

    def order(self, chain: tuple[str, ...], default: str | None) -> list[str]:
        """``chain`` plus the muxer's default, keeping those the muxer can store."""
        extra = [default] if default and default != "none" else []
        names = list(dict.fromkeys([*chain, *extra]))
        fitting = [n for n in names if self.stores(_canonical(n))]
        return fitting or names


def _canonical(encoder: str) -> str:
    try:
        return av.codec.Codec(encoder, "w").canonical_name
    except Exception:  # not in this build; still worth naming in the fallback log
        return _CANONICAL.get(encoder, encoder)


def _pix_fmt_candidates(codec: av.codec.Codec) -> list[str]:
    # 4:2:0 first for compatibility; 4:4:4 is the exact-size escape for odd frame
    # sizes in H.264, whose 4:2:0 cropping works in 2-pixel steps only.
    supported = [f.name for f in (codec.video_formats or [])]
    wanted = [f for f in ("yuv420p", "yuv444p") if not supported or f in supported]
    return wanted or supported[:1]


def _time_base_candidates(source: _Source, variable_fps: bool) -> list[Fraction]:
    frame_tick = 1 / source.info.fps
    if not variable_fps:
        # Muxers without per-frame timestamps (AVI) want one tick per frame.
        return [frame_tick]
    # The source's own time base keeps every pts exact; some encoders (mpeg4)
    # cap the denominator at 65535, hence the coarser fallbacks.
    return list(dict.fromkeys([source.time_base, frame_tick, Fraction(1, 1000)]))


def _configure_video(ctx: Any, plan: _VideoPlan, source: _Source) -> None:
    ctx.width = source.info.width
    ctx.height = source.info.height
    ctx.pix_fmt = plan.pix_fmt
    ctx.time_base = plan.time_base
    ctx.framerate = source.info.fps
    if plan.bit_rate:
        ctx.bit_rate = plan.bit_rate
    if plan.constant_rate:
        # Such muxers (AVI) store no presentation times, so reordered B-frames
        # would come back with scrambled timestamps.
        ctx.max_b_frames = 0
    if plan.qscale is not None:
        ctx.qscale = True
        ctx.global_quality = plan.qscale * 118  # FF_QP2LAMBDA
    # Tag the stream like the source so players apply the same YUV matrix/range.
    if source.colorspace in _SWS_MATRICES:
        ctx.colorspace = source.colorspace
    ctx.color_range = _RANGE_JPEG if source.color_range == _RANGE_JPEG else _RANGE_MPEG
    if source.color_primaries not in (0, 2):  # reserved / unspecified
        ctx.color_primaries = source.color_primaries
    if source.color_trc not in (0, 2):
        ctx.color_trc = source.color_trc
    ctx.options = dict(plan.options)


def _choose_video_plan(
    source: _Source, muxer: _Muxer, codec: str | None, crf: int
) -> _VideoPlan:
    """Find the first encoder/pixel format/time base that really opens for this size."""
    info = source.info
    variable_fps = muxer.variable_fps
    chain = _WEBM_CHAIN if muxer.name == "webm" else _H264_CHAIN
    candidates = [codec] if codec else muxer.order(chain, muxer.default_video)
    reasons: list[str] = []
    for name in candidates:
        try:
            codec_obj = av.codec.Codec(name, "w")
        except Exception:
            reasons.append(f"{name}: not in this PyAV/FFmpeg build")
            continue
        if codec_obj.type != "video":
            reasons.append(f"{name}: not a video encoder")
            continue
        options, bit_rate, qscale = _video_quality(
            codec_obj.name, crf, info.width, info.height, info.fps
        )
        last_error = "no usable pixel format"
        for pix_fmt in _pix_fmt_candidates(codec_obj):
            for tb in _time_base_candidates(source, variable_fps):
                plan = _VideoPlan(
                    codec_obj.name, pix_fmt, tb, not variable_fps, options, bit_rate, qscale
                )
                try:
                    # A throwaway open: "available" does not mean "accepts this size".
                    ctx = av.codec.CodecContext.create(codec_obj.name, "w")
                    _configure_video(ctx, plan, source)
                    ctx.open()
                    del ctx
                except (av.error.FFmpegError, ValueError, TypeError) as e:
                    last_error = _why(e)
                    continue
                if reasons:
                    log.warning(
                        "video encoder %s chosen after: %s", codec_obj.name, "; ".join(reasons)
                    )
                if pix_fmt != "yuv420p":
                    log.warning(
                        "%s cannot encode %dx%d as yuv420p (odd sizes need 4:4:4 in "
                        "H.264); writing %s to keep the exact size; some hardware players "
                        "cannot play that, pass codec='mpeg4' or an even-sized input if needed",
                        codec_obj.name,
                        info.width,
                        info.height,
                        pix_fmt,
                    )
                return plan
        reasons.append(f"{name}: does not open for {info.width}x{info.height} ({last_error})")
    raise VideoError(
        f"no usable video encoder for {muxer.name} output: {'; '.join(reasons)}; "
        "pick another codec or output extension (.mp4, .mkv, .webm)"
    )


# ------------------------------------------------------------------------- audio


class _AudioTrack:
    """Feeds the source's audio into the output, interleaved with the video.

    It reads the source through its own demuxer so audio never queues behind
    frames waiting for the model; the writer thread asks it for everything up
    to the current video time, which keeps both streams close together in the
    file and the muxer's interleaving buffer small.
    """

    def __init__(self, source: _Source, out: Any, transcode_chain: tuple[str, ...] | None):
        self.label = "none"
        self._input = av.open(source.path)
        try:
            self._in_stream = self._input.streams[source.audio_index]
            self._out_stream = None
            self._copy = transcode_chain is None
            if self._copy:
                # Raises ValueError when the muxer does not accept the codec.
                self._out_stream = out.add_stream_from_template(self._in_stream)
                self.label = "copied"
            else:
                self._out_stream, codec_name = self._add_encoder(out, transcode_chain)
                self.label = f"transcoded:{codec_name}"
            lang = self._in_stream.metadata.get("language")
            if lang:
                self._out_stream.metadata["language"] = lang
            self._packets: Iterator[Any] = self._input.demux(self._in_stream)
            self._pending: Any = None
            self._done = False
        except BaseException:
            self._input.close()
            raise

    def _add_encoder(self, out: Any, chain: tuple[str, ...]) -> tuple[Any, str]:
        src_ctx = self._in_stream.codec_context
        reasons = []
        for name in chain:
            try:
                codec = av.codec.Codec(name, "w")
            except Exception:
                reasons.append(f"{name}: not in this build")
                continue
            rates = codec.audio_rates
            rate = src_ctx.sample_rate or 48000
            if rates and rate not in rates:
                rate = 48000 if 48000 in rates else max(rates)
            channels = src_ctx.channels or 2
            last = f"{name}: no usable channel layout"
            layouts = [src_ctx.layout.name, _DEFAULT_LAYOUTS.get(channels, "stereo"), "stereo"]
            for layout in dict.fromkeys(layouts):
                try:
                    # Throwaway open first: add_stream cannot be undone if it then fails.
                    trial = av.codec.CodecContext.create(name, "w")
                    self._configure_audio(trial, codec, rate, layout, channels)
                    trial.open()
                    del trial
                except (av.error.FFmpegError, ValueError) as e:
                    log.debug("audio encoder %s refuses layout %s: %s", name, layout, _why(e))
                    last = f"{name} ({layout}): {_why(e)}"
                    continue
                stream = out.add_stream(name, rate=rate)
                self._configure_audio(stream.codec_context, codec, rate, layout, channels)
                stream.time_base = Fraction(1, rate)
                if reasons:
                    log.warning("audio encoder %s chosen after: %s", name, "; ".join(reasons))
                if av.AudioLayout(layout).nb_channels != channels:
                    log.warning(
                        "audio downmixed from %d channels to %s for %s", channels, layout, name
                    )
                return stream, codec.canonical_name
            reasons.append(last)
        raise VideoError(f"no usable audio encoder: {'; '.join(reasons)}")

    @staticmethod
    def _configure_audio(ctx: Any, codec: Any, rate: int, layout: str, channels: int) -> None:
        ctx.sample_rate = rate
        ctx.layout = layout
        ctx.time_base = Fraction(1, rate)
        ctx.format = codec.audio_formats[0].name if codec.audio_formats else "fltp"
        per_channel = 64_000 if codec.canonical_name == "opus" else 96_000
        ctx.bit_rate = min(512_000, per_channel * max(1, min(channels, 8)))
        if codec.experimental:
            # FFmpeg's native Vorbis encoder is flagged experimental.
            ctx.options = {"strict": "experimental"}

    @staticmethod
    def _time(packet: Any) -> float | None:
        ts = packet.pts if packet.pts is not None else packet.dts
        if ts is None or packet.time_base is None:
            return None
        return float(ts * packet.time_base)

    def _next(self) -> Any:
        if self._pending is None and not self._done:
            self._pending = next(self._packets, None)
            if self._pending is None:
                self._done = True
        return self._pending

    def mux_until(self, out: Any, t: float | None) -> None:
        """Write audio up to video time ``t`` seconds (everything when ``t`` is None)."""
        while (packet := self._next()) is not None:
            pt = self._time(packet)
            if t is not None and pt is not None and pt > t:
                return
            self._pending = None
            self._write(out, packet)

    def _write(self, out: Any, packet: Any) -> None:
        if self._copy:
            if packet.dts is None and packet.size == 0:
                return  # demuxer's end-of-stream marker
            packet.stream = self._out_stream
            out.mux(packet)
            return
        # decode() on the empty end marker flushes the decoder, as FFmpeg expects.
        for frame in packet.decode():
            for p in self._out_stream.encode(frame):
                out.mux(p)

    def finish(self, out: Any) -> None:
        self.mux_until(out, None)
        if not self._copy:
            for p in self._out_stream.encode(None):
                out.mux(p)

    def close(self) -> None:
        self._input.close()


def _transcode_chain(muxer: _Muxer) -> tuple[str, ...]:
    chain = _WEBM_AUDIO_CHAIN if muxer.name == "webm" else _AAC_CHAIN
    return tuple(muxer.order(chain, muxer.default_audio))


# ------------------------------------------------------------------------ output


class _Output:
    """The temporary output container with its video stream and optional audio."""

    def __init__(
        self,
        tmp: str,
        ext: str,
        source: _Source,
        codec: str | None,
        crf: int,
        copy_audio: bool,
    ) -> None:
        self.audio: _AudioTrack | None = None
        try:
            self.container = av.open(tmp, "w")
        except (av.error.FFmpegError, ValueError) as e:
            raise VideoError(
                f"cannot write {ext or 'extension-less'} files ({_why(e)}); use {_EXTENSIONS}"
            ) from e
        try:
            muxer = _Muxer(self.container)
            if muxer.name not in _COPY_AUDIO:
                raise VideoError(
                    f"writing {muxer.name} files ({ext}) is not supported; use {_EXTENSIONS}"
                )
            if muxer.name in {"mp4", "mov", "ipod"}:
                # Index up front so the file streams/plays before fully downloaded.
                self.container.container_options["movflags"] = "+faststart"
            self.plan = _choose_video_plan(source, muxer, codec, crf)
            self.stream = self.container.add_stream(self.plan.encoder, rate=source.info.fps)
            _configure_video(self.stream.codec_context, self.plan, source)
            self.stream.time_base = self.plan.time_base
            # For FFmpeg-threaded encoders (mpeg4); x264/vpx run their own threads.
            self.stream.codec_context.thread_type = "AUTO"
            if source.rotation:
                self.stream.set_display_rotation(source.rotation)
            self._copy_metadata(source.metadata)
            if source.audio_index is not None:
                # Strict query: some muxers "accept" any codec, then fail or write junk.
                allowed = _COPY_AUDIO[muxer.name]
                copyable = copy_audio and (
                    source.audio_codec in allowed
                    if allowed is not None
                    else muxer.stores(source.audio_codec or "")
                )
                chain = None if copyable else _transcode_chain(muxer)
                try:
                    self.audio = _AudioTrack(source, self.container, chain)
                except ValueError:
                    if chain is not None:
                        raise
                    self.audio = _AudioTrack(source, self.container, _transcode_chain(muxer))
            # Writes the header now, so codec/muxer mismatches surface before any work.
            self.container.start_encoding()
        except BaseException:
            self.close(quiet=True)
            raise

    @property
    def audio_label(self) -> str:
        return self.audio.label if self.audio else "none"

    def _copy_metadata(self, metadata: dict[str, str]) -> None:
        # The muxer writes its own brand/encoder tags; copying the source's would lie.
        skip = {"major_brand", "minor_version", "compatible_brands", "encoder", "duration"}
        for k, v in metadata.items():
            if k.lower() not in skip:
                self.container.metadata[k] = v

    def close(self, quiet: bool = False) -> None:
        """Close the audio source and the output (writing its trailer); idempotent."""
        closers = []
        if self.audio is not None:
            closers.append(self.audio.close)
        closers.append(self.container.close)
        self.audio = None
        for close in closers:
            try:
                close()
            except Exception:
                if not quiet:
                    raise
                log.debug("error while closing a discarded output", exc_info=True)


def _temp_path(dst: str) -> str:
    folder, base = os.path.split(os.path.abspath(dst))
    stem, ext = os.path.splitext(base)
    while True:
        tmp = os.path.join(folder, f".{stem}.tmp-{secrets.token_hex(4)}{ext}")
        try:
            # O_EXCL: never clobber a file another run is writing. Mode 0o666 lets the
            # umask decide, so the final file gets normal permissions (mkstemp: 0600).
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError:
        log.warning("could not remove temporary file %s", path, exc_info=True)


# ---------------------------------------------------------------------- pipeline

_END = object()  # end of stream
_HALT = object()  # returned by _Pipeline.get when the run is being torn down


@dataclass
class _Item:
    index: int
    pts: int | None
    image: np.ndarray


class _Pipeline:
    """Shared stop/abort state for the three stages."""

    def __init__(self, stop_event: threading.Event | None) -> None:
        self.abort = threading.Event()
        self.stop_event = stop_event
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()

    def fail(self, exc: BaseException) -> None:
        with self._lock:
            self._errors.append(exc)
        self.abort.set()

    @property
    def error(self) -> BaseException | None:
        with self._lock:
            return self._errors[0] if self._errors else None

    def halted(self) -> bool:
        return self.abort.is_set() or (self.stop_event is not None and self.stop_event.is_set())

    def put(self, q: queue.Queue[Any], item: Any) -> bool:
        while not self.halted():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                pass
        return False

    def get(self, q: queue.Queue[Any], producer: threading.Thread | None) -> Any:
        while not self.halted():
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                if producer is not None and not producer.is_alive() and q.empty():
                    # Producers always queue _END or record an error; this is a bug guard.
                    self.fail(RuntimeError(f"{producer.name} stopped without finishing"))
        return _HALT


def _decode_stage(source: _Source, out_q: queue.Queue[Any], pipe: _Pipeline) -> None:
    w, h = source.info.width, source.info.height
    index = 0
    try:
        with av.open(source.path) as container:
            stream = container.streams[source.video_index]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                # Fixed size even if the stream changes resolution midway: the
                # encoder cannot. to_ndarray converts with the frame's own YUV tags.
                image = frame.to_ndarray(
                    format="bgr24", width=w, height=h, interpolation=_SWS_FLAGS
                )
                if not pipe.put(out_q, _Item(index, frame.pts, image)):
                    return
                index += 1
        pipe.put(out_q, _END)
    except av.error.FFmpegError as e:
        err = VideoError(f"{source.path}: decoding failed after {index} frames ({_why(e)})")
        err.__cause__ = e
        pipe.fail(err)
    except BaseException as e:
        pipe.fail(e)


class _Timestamps:
    """Source pts -> encoder pts, kept strictly increasing as encoders require."""

    def __init__(self, source: _Source, plan: _VideoPlan) -> None:
        self._scale = source.time_base / plan.time_base
        self._step = max(1, round(1 / (source.info.fps * plan.time_base)))
        self._constant = plan.constant_rate
        self._last: int | None = None
        self.repaired = 0

    def __call__(self, pts: int | None) -> int:
        if self._constant:
            out = 0 if self._last is None else self._last + self._step
        elif pts is None:
            out = 0 if self._last is None else self._last + self._step
        else:
            out = round(pts * self._scale)
        if self._last is not None and out <= self._last:
            out = self._last + 1
            self.repaired += 1
        self._last = out
        return out


def _encode_stage(
    output: _Output,
    source: _Source,
    in_q: queue.Queue[Any],
    pipe: _Pipeline,
    written: list[int],
) -> None:
    plan = output.plan
    stream = output.stream
    container = output.container
    stamps = _Timestamps(source, plan)
    colorspace = source.colorspace if source.colorspace in _SWS_MATRICES else None
    color_range = _RANGE_JPEG if source.color_range == _RANGE_JPEG else _RANGE_MPEG
    try:
        while True:
            item = pipe.get(in_q, None)
            if item is _HALT:
                return
            if item is _END:
                break
            frame = av.VideoFrame.from_ndarray(item.image, format="bgr24")
            # Convert to YUV with the source's matrix/range so colours round-trip.
            frame = frame.reformat(
                format=plan.pix_fmt,
                dst_colorspace=colorspace,
                dst_color_range=color_range,
                interpolation=_SWS_FLAGS,
            )
            frame.pts = stamps(item.pts)
            frame.time_base = plan.time_base
            if output.audio is not None:
                output.audio.mux_until(container, float(frame.pts * plan.time_base))
            for packet in stream.encode(frame):
                container.mux(packet)
            written[0] += 1
        for packet in stream.encode(None):
            container.mux(packet)
        if output.audio is not None:
            output.audio.finish(container)
        if stamps.repaired:
            log.warning("%d frames had missing or non-increasing timestamps", stamps.repaired)
    except av.error.FFmpegError as e:
        err = VideoError(f"encoding failed after {written[0]} frames ({_why(e)})")
        err.__cause__ = e
        pipe.fail(err)
    except BaseException as e:
        pipe.fail(e)


def _check_output(result: Any, like: np.ndarray, index: int) -> np.ndarray:
    if not isinstance(result, np.ndarray):
        raise TypeError(
            f"frame_fn returned {type(result).__name__} for frame {index}; "
            "expected a numpy array"
        )
    if result.shape != like.shape or result.dtype != np.uint8:
        raise ValueError(
            f"frame_fn returned shape {result.shape} dtype {result.dtype} for frame {index}; "
            f"expected {like.shape} uint8 (same as its input)"
        )
    return np.ascontiguousarray(result)


def process_video(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    frame_fn: Callable[[np.ndarray], np.ndarray],
    *,
    codec: str | None = None,
    crf: int = 18,
    queue_size: int = 8,
    progress: Callable[[int], None] | None = None,
    stop_event: threading.Event | None = None,
) -> VideoReport:
    """Run ``frame_fn`` over every frame of ``src`` and write the result to ``dst``.

    Args:
        src: input video.
        dst: output path; its extension picks the container (.mp4, .mkv, .mov,
            .webm, ...). An existing file is replaced only once the new one is
            complete.
        frame_fn: takes an HxWx3 uint8 BGR frame and returns one of the same shape
            and dtype. Called from the calling thread, frames in order.
        codec: video encoder to use (e.g. ``"libx264"``, ``"mpeg4"``,
            ``"libvpx-vp9"``); ``None`` picks H.264 (VP9 for .webm) and falls back
            to what this PyAV build has, logging the choice.
        crf: quality in x264 CRF terms (0 best ... 51 worst, 18 visually
            lossless); mapped onto other encoders' scales.
        queue_size: frames buffered between decoder, model and encoder (each queue).
        progress: called from the calling thread with the cumulative number of
            frames processed so far, after each frame.
        stop_event: when set (e.g. by a SIGINT/SIGTERM handler), processing stops
            at the next frame and :class:`VideoInterrupted` is raised.

    Returns:
        A :class:`VideoReport`.

    Raises:
        VideoError: unreadable input, unwritable output, no usable encoder, or a
            decode/encode failure midway.
        VideoInterrupted: ``stop_event`` was set; carries ``frames_done``.
        Any exception raised by ``frame_fn`` or ``progress``, unchanged.

    Whatever is raised, no output and no temporary file are left behind.
    """
    if queue_size < 1:
        raise ValueError(f"queue_size must be >= 1, got {queue_size}")
    if not 0 <= crf <= 63:
        raise ValueError(f"crf must be within 0..63 (x264 uses 0..51), got {crf}")
    started = time.perf_counter()
    source = _probe(src)
    dst_path = os.fspath(dst)
    folder = os.path.dirname(os.path.abspath(dst_path))
    if not os.path.isdir(folder):
        raise VideoError(f"{dst_path}: the folder {folder} does not exist; create it first")
    if os.path.exists(dst_path) and os.path.samefile(source.path, dst_path):
        raise VideoError(f"{dst_path}: output would overwrite the input; choose another name")

    ext = os.path.splitext(dst_path)[1]
    tmp = _temp_path(dst_path)
    output: _Output | None = None
    committed = False
    try:
        try:
            output = _Output(tmp, ext, source, codec, crf, copy_audio=True)
        except av.error.FFmpegError as e:
            if source.audio_index is None:
                raise VideoError(f"{dst_path}: cannot start writing ({_why(e)})") from e
            # Header writing rejected the copied audio (a codec the muxer cannot
            # store despite saying so); retry with transcoded audio.
            log.warning("cannot copy the audio track into %s; transcoding it", dst_path)
            _remove_quietly(tmp)
            tmp = _temp_path(dst_path)
            try:
                output = _Output(tmp, ext, source, codec, crf, copy_audio=False)
            except av.error.FFmpegError as e2:
                raise VideoError(f"{dst_path}: cannot start writing ({_why(e2)})") from e2

        frames = _run(source, output, frame_fn, queue_size, progress, stop_event)
        audio_label = output.audio_label
        try:
            output.close()
        except av.error.FFmpegError as e:
            raise VideoError(f"{dst_path}: finishing the file failed ({_why(e)})") from e
        if stop_event is not None and stop_event.is_set():
            raise VideoInterrupted(frames, source.info.frame_count)
        os.replace(tmp, dst_path)
        committed = True
    finally:
        if not committed:
            if output is not None:
                output.close(quiet=True)
            _remove_quietly(tmp)

    seconds = time.perf_counter() - started
    report = VideoReport(
        frames=frames,
        seconds=seconds,
        fps=frames / seconds if seconds > 0 else 0.0,
        video_codec=output.plan.encoder,
        audio=audio_label,
        pix_fmt=output.plan.pix_fmt,
    )
    log.info(
        "%s -> %s: %d frames in %.1f s (%.1f fps), video %s %s, audio %s",
        source.path,
        dst_path,
        report.frames,
        report.seconds,
        report.fps,
        report.video_codec,
        report.pix_fmt,
        report.audio,
    )
    return report


def _run(
    source: _Source,
    output: _Output,
    frame_fn: Callable[[np.ndarray], np.ndarray],
    queue_size: int,
    progress: Callable[[int], None] | None,
    stop_event: threading.Event | None,
) -> int:
    """Drive decode -> frame_fn (this thread) -> encode; returns frames written."""
    pipe = _Pipeline(stop_event)
    decoded: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
    processed: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
    written = [0]
    reader = threading.Thread(
        target=_decode_stage, args=(source, decoded, pipe), name="deblur-decode", daemon=True
    )
    writer = threading.Thread(
        target=_encode_stage,
        args=(output, source, processed, pipe, written),
        name="deblur-encode",
        daemon=True,
    )
    done = 0
    reader.start()
    writer.start()
    try:
        while True:
            item = pipe.get(decoded, reader)
            if item is _HALT:
                break
            if item is _END:
                pipe.put(processed, _END)
                break
            result = _check_output(frame_fn(item.image), item.image, item.index)
            if not pipe.put(processed, _Item(item.index, item.pts, result)):
                break
            done += 1
            if progress is not None:
                progress(done)
        writer.join()  # flushes the encoder and the remaining audio
    except BaseException:
        pipe.abort.set()
        raise
    finally:
        # Both threads watch `abort`, so these joins end promptly; the output
        # container must not be closed while the encoder thread still uses it.
        reader.join()
        writer.join()

    if pipe.error is not None:
        raise pipe.error
    if stop_event is not None and stop_event.is_set():
        raise VideoInterrupted(done, source.info.frame_count)
    if written[0] != done:
        raise RuntimeError(f"internal error: {done} frames processed but {written[0]} written")
    return written[0]

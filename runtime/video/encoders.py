"""Choosing how the output is written: muxer abilities, video encoder, pixel format, time base.

Every choice is checked by really opening the encoder with the frame size at
hand, so a build that lists an encoder but cannot use it falls through to the
next one (logged) instead of failing after the video work.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import av.error

from .errors import VideoError, _why
from .probe import _pixel_bits, _Source, _local

log = logging.getLogger(__name__)
# SVT-AV1 prints a banner of info lines per encoder opened (several per video: trial opens);
# errors only, unless the user set a level.
os.environ.setdefault("SVT_LOG", "1")

# Encoders tried in order when the caller does not name one. H.264 first because
# every player handles it; mpeg4 is FFmpeg's built-in last resort.
_H264_CHAIN = ("libx264", "libopenh264", "mpeg4")
_WEBM_CHAIN = ("libvpx-vp9", "libvpx", "libsvtav1")
# A source with more than 8 bits per channel (HDR from phones, 10-bit log, ProRes) keeps them:
# HEVC Main 10 is what such cameras record and what players decode in hardware (H.264's
# High 10 profile mostly is not); in WebM AV1, as this build's VP9 has 8 bits only.
_DEEP_CHAIN = ("libx265", "libx264", "libopenh264", "mpeg4")
_DEEP_WEBM_CHAIN = ("libsvtav1", "libvpx-vp9", "libvpx")
# Transfer functions of HDR video (PQ, HLG): in 8 bits their wide range shows steps.
_HDR_TRC = {16: "PQ", 18: "HLG"}
_DEEPEST_BITS = 12  # x265's 12-bit formats: the deepest any encoder in the chains writes

# The output muxers we write, each with the audio codecs copied into it as-is.
# The muxers claim more (PCM in MP4 fails when writing the trailer, after all the
# video work; FLV aborts the whole process on some PCM), so anything not listed
# is transcoded, and other containers are refused up front. None: whatever the
# muxer says it stores (Matroska stores nearly everything).
_COPY_AUDIO: dict[str, frozenset[str] | None] = {
    # FLAC in MP4 (ISO/IEC 14496-12's fLaC): lossless stays lossless (browsers, VLC, Android).
    "mp4": frozenset({"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"}),
    # MOV (unlike MP4) stores PCM: cameras and ProRes workflows record it so.
    "mov": frozenset({"aac", "mp3", "ac3", "eac3", "alac", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s24be",
                      "pcm_s32le", "pcm_s32be", "pcm_f32le", "pcm_f32be"}),
    "ipod": frozenset({"aac", "alac"}),
    "matroska": None,
    "webm": frozenset({"opus", "vorbis"}),
    "avi": frozenset({"mp3", "mp2", "ac3", "aac", "pcm_s16le", "pcm_u8"}),
    "mpegts": frozenset({"aac", "ac3", "eac3", "mp3", "mp2"}),
}
_EXTENSIONS = ".mp4, .m4v, .mov, .mkv, .webm, .avi or .ts"
_VFR_MUXERS = frozenset({"mp4", "mov", "ipod", "matroska", "webm", "mpegts"})
_AVFMT_VARIABLE_FPS = 0x0400

# AVColorSpace values whose number is also the matching swscale SWS_CS_* value
# (BT.709, FCC, BT.470BG/601, SMPTE 170M, SMPTE 240M, BT.2020 NCL). Anything
# else (RGB, unspecified, ...) falls back to swscale's BT.601 default.
_SWS_MATRICES = {1, 4, 5, 6, 7, 9}
_RANGE_MPEG, _RANGE_JPEG = 1, 2
_SPC_SMPTE170M = 6  # AVColorSpace BT.601 (525-line): swscale's default matrix
# Codec names of encoders that may be missing from the build, for muxer checks.
_CANONICAL = {
    "libx264": "h264",
    "libopenh264": "h264",
    "libvpx-vp9": "vp9",
    "libvpx": "vp8",
    "libsvtav1": "av1",
    "libx265": "hevc",
    "libopus": "opus",
    "libvorbis": "vorbis",
    "libfdk_aac": "aac",
}
# Pairings the MOV muxer claims but fails at its header ("Invalid argument"): MP4 writes them.
_CLAIMED_NOT_WRITTEN = {"mov": frozenset({"vp8", "vp9", "av1"})}
# Pairings FFmpeg's codec query denies for MPEG-TS although the muxer writes them.
_ALSO_STORES = {"mpegts": frozenset({"h264", "hevc", "aac", "ac3", "eac3", "mp3", "opus"})}


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
        # FFmpeg lists implementation names (dca, dvdsub, pgssub); probes give the standard
        # ones (dts, dvd_subtitle, hdmv_pgs_subtitle): both count.
        names = frozenset(container.supported_codecs)
        self._stores = names | frozenset(filter(None, map(_standard_name, names))) | _ALSO_STORES.get(
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


def _standard_name(name: str) -> str | None:
    for mode in ("r", "w"):
        try:
            return av.codec.Codec(name, mode).canonical_name
        except Exception:
            continue
    return None


def _canonical(encoder: str) -> str:
    codec = _find_encoder(encoder)
    if codec is None:  # not in this build; still worth naming in the fallback log
        return _CANONICAL.get(encoder, encoder)
    return codec.canonical_name


# ------------------------------------------- shared by the video and audio choice


def _find_encoder(name: str) -> av.codec.Codec | None:
    """The encoder called ``name``, or ``None`` when this PyAV/FFmpeg build lacks it."""
    try:
        return av.codec.Codec(name, "w")
    except Exception:
        return None


def _trial_open(name: str, configure: Callable[..., None], *settings: Any) -> None:
    """Open a throwaway ``name`` encoder set up by ``configure(ctx, *settings)``.

    "Available" does not mean "accepts these settings", and a stream added to the
    output cannot be taken back, so each candidate is opened once on its own first.
    Raises whatever FFmpeg or PyAV raise for settings the encoder refuses.
    """
    ctx = av.codec.CodecContext.create(name, "w")
    configure(ctx, *settings)
    ctx.open()


def _log_fallback(kind: str, chosen: str, reasons: list[str]) -> None:
    """Warn when ``chosen`` is not the first encoder tried, saying why the others failed."""
    if reasons:
        log.warning("%s encoder %s chosen after: %s", kind, chosen, "; ".join(reasons))


def _yuv_matrix(source: _Source) -> int | None:
    """The source's YUV matrix when swscale knows it; ``None`` means swscale's BT.601."""
    return source.colorspace if source.colorspace in _SWS_MATRICES else None


def _yuv_range(source: _Source) -> int:
    """The source's YUV range: full (JPEG) when it says so, else limited (MPEG)."""
    return _RANGE_JPEG if source.color_range == _RANGE_JPEG else _RANGE_MPEG


# ------------------------------------------------------------------- video plan


@dataclass(frozen=True)
class _VideoPlan:
    encoder: str
    pix_fmt: str
    time_base: Fraction
    constant_rate: bool  # re-time frames as index / fps (muxer cannot store per-frame times)
    options: dict[str, str]
    bit_rate: int
    qscale: int | None  # mpeg4-style fixed quantiser, None for rate-controlled encoders
    b_frames: bool = True  # off for uneven frame times into MP4/MOV (see _frame_timing)

    @property
    def bits(self) -> int:
        return _pixel_bits(self.pix_fmt)

    @property
    def frame_format(self) -> str:
        """The packed BGR format frames travel in: 16 bits per channel for a deeper output."""
        return "bgr48le" if self.bits > 8 else "bgr24"


def _chroma(pix_fmt: str) -> str:
    """"420", "422" or "444": the source's chroma resolution (RGB counts as 444; grey, which has
    none, as 420: the format every player takes)."""
    fmt = av.VideoFormat(pix_fmt, 16, 16)
    if fmt.is_rgb:
        return "444"
    if len(fmt.components) < 3:
        return "420"
    luma, chroma = fmt.components[0], fmt.components[1]
    if chroma.width == luma.width:
        return "444"
    return "422" if chroma.height == luma.height else "420"


def _video_quality(
    name: str, crf: int, width: int, height: int, rate: Fraction
) -> tuple[dict[str, str], int, int | None]:
    """Translate an x264-style CRF into the named encoder's own quality knobs."""
    # A generous bitrate for encoders that only know bitrates: ~0.25 bit/pixel at CRF 18.
    bits = width * height * float(rate) * 0.25 * 2 ** ((18 - crf) / 6)
    bit_rate = int(min(max(bits, 200_000), 200_000_000))
    # libvpx/SVT-AV1 CRF runs 0..63 and lands near x264's look at ~1.75x the value.
    crf63 = str(min(63, max(1, round(crf * 1.75))))  # SVT-AV1 takes 0 for "unset": its default
    if name == "libx264":
        return {"crf": str(crf)}, 0, None
    if name == "libx265":  # x265's CRF 28 looks like x264's 23 (x265's documentation): +5
        # x265 prints its own errors for the trial opens that are expected to fail (odd sizes
        # in 4:2:0); what fails for good is reported here.
        return {"crf": str(min(51, crf + 5)), "x265-params": "log-level=none"}, 0, None
    if name == "libvpx-vp9":
        # bitrate 0 + crf = constant-quality mode; cpu-used 4 keeps VP9 usable speed-wise.
        return {"crf": crf63, "deadline": "good", "cpu-used": "4", "row-mt": "1"}, 0, None
    if name == "libvpx":
        # VP8 only supports constrained quality: crf needs a bitrate ceiling.
        return {"crf": crf63, "deadline": "good", "cpu-used": "4"}, bit_rate, None
    if name == "libsvtav1":
        return {"crf": crf63, "preset": "8"}, 0, None
    if name in {"mpeg4", "mpeg2video", "mpeg1video", "msmpeg4", "mjpeg"}:
        # The quantiser through qmin = qmax: FFmpeg takes a fixed one from each frame, which
        # PyAV never sets, so global_quality alone changed nothing.
        q = min(31, max(1, round(crf / 6)))
        return {"qmin": str(q), "qmax": str(q)}, 0, q
    return {}, bit_rate, None


@dataclass(frozen=True)
class _Timing:
    uneven: bool  # a phone's variable rate, a held final still
    on_grid: bool  # every frame rounds to its own slot of the frame grid (index / fps)
    offset: bool  # the video starts later than 0


def _frame_timing(source: _Source) -> _Timing:
    """How the source's frames are spaced: one demux pass over packet times, no decoding
    (seconds for an hour of video)."""
    try:
        with av.open(_local(source.path)) as container:
            stream = container.streams[source.video_index]
            timed = [(p.pts, p.duration or 0, p.dts) for p in container.demux(stream) if p.pts is not None]
    except av.error.FFmpegError:  # damage the decoder will report: assume the worst, quietly
        return _Timing(uneven=True, on_grid=False, offset=False)
    packets = sorted((pts, duration) for pts, duration, _ in timed)
    # Where the video starts: its first decode time (AVI and B-frame MP4s give the first frame
    # a pts one reorder delay late, which is no late start); AVI sources are re-timed anyway.
    first = min((dts if dts is not None else pts for pts, _, dts in timed), default=0)
    offset = not source.untimed and first * source.time_base > 0.01
    if len(packets) < 2:
        return _Timing(False, True, offset)
    steps = [b[0] - a[0] for a, b in zip(packets, packets[1:])]
    steps.append(packets[-1][1] or steps[-1])  # the last frame shows for its packet's duration
    typical = sorted(steps)[len(steps) // 2]
    # Containers round times (Matroska to 1 ms: 23.976 fps alternates 41 and 42 ms): that is even.
    slack = max(2, typical // 50)
    frame = 1 / (source.info.fps * source.time_base)  # in source ticks
    start = packets[0][0]
    return _Timing(uneven=any(abs(step - typical) > slack for step in steps),
                   on_grid=all(round((pts - start) / frame) == i for i, (pts, _) in enumerate(packets)),
                   offset=offset)


def _pix_fmt_candidates(codec: av.codec.Codec, source: _Source, keep_depth: bool = True) -> list[str]:
    # 8-bit sources: 4:2:0 for compatibility (a webcam's 4:2:2 MJPEG or a 4:4:4 screen capture
    # as H.264 4:2:2/4:4:4 would not play on phones or in browsers). Deeper sources are
    # professional or HDR footage: their depth, and their chroma (ProRes 4:2:2), are kept
    # where the encoder can (x265 up to 12 bits, x264 10, SVT-AV1 10 in 4:2:0). 4:4:4 is the
    # exact-size escape for odd frame sizes, whose 4:2:0 cropping works in 2-pixel steps only.
    wanted = []
    if keep_depth and source.bits > 8:
        depths = dict.fromkeys(["12le" if source.bits >= 12 else "10le", "10le"])
        wanted = [f"yuv{chroma}p{depth}" for chroma in dict.fromkeys([_chroma(source.pix_fmt), "420", "444"])
                  for depth in depths]
    wanted += ["yuv420p", "yuv444p"]
    supported = [f.name for f in (codec.video_formats or [])]
    fitting = [f for f in wanted if not supported or f in supported]
    return fitting or supported[:1]


_HDR10_ENCODERS = ("libx265", "libsvtav1")


def _hdr10_options(encoder: str, source: _Source, options: dict[str, str]) -> dict[str, str]:
    """The source's HDR10 static metadata (displays tone-map by it) in the encoder's options:
    x265 takes the SEI's integer units, SVT-AV1 chromaticities and cd/m2."""
    if not (source.master_display or source.max_cll) or encoder not in _HDR10_ENCODERS:
        return {}
    x265 = encoder == "libx265"
    params = []
    if source.master_display:
        # x265 takes the SEI's units as they are; SVT-AV1 chromaticities and cd/m2.
        *xy, high, low = (map(str, source.master_display) if x265 else
                          [f"{v / 50000:g}" for v in source.master_display[:8]] +
                          [f"{v / 10000:g}" for v in source.master_display[8:]])
        points = "".join(f"{name}({xy[2 * i]},{xy[2 * i + 1]})" for i, name in enumerate(("G", "B", "R", "WP")))
        params.append(f"{'master-display' if x265 else 'mastering-display'}={points}L({high},{low})")
    if source.max_cll:
        params.append(f"{'max-cll' if x265 else 'content-light'}={source.max_cll[0]},{source.max_cll[1]}")
    return {"x265-params": ":".join([options["x265-params"], *params])} if x265 else {"svtav1-params": ":".join(params)}


def _say_losses(source: _Source, plan: _VideoPlan, keep_depth: bool, muxer_name: str) -> None:
    """Say what a deep source loses in this output: bits per channel (HDR in 8 bits shows steps),
    chroma resolution (4:2:2 footage as 4:2:0), and what would keep them."""
    hdr = _HDR_TRC.get(source.info.color_trc)
    if source.bits > 8 and not keep_depth:  # asked for
        if hdr:
            log.warning("%s: %d-bit %s HDR video written with 8 bits per channel, as asked: it will show banding "
                        "(its HDR tags stay, its HDR10 metadata is left out)", source.path, source.bits, hdr)
        else:
            log.info("%s: %d-bit video written with 8 bits per channel", source.path, source.bits)
        return
    if (source.master_display or source.max_cll) and (plan.encoder not in _HDR10_ENCODERS or plan.bits == 8):
        log.warning("%s: its HDR10 metadata (mastering display, light levels) is not carried by %s%s", source.path,
                    plan.encoder, "; HEVC and AV1 (the defaults for deep sources) carry it" if plan.bits > 8 else
                    " at 8 bits")
    if source.bits <= 8:
        return
    deepest = min(source.bits, _DEEPEST_BITS)
    hevc = "write .mkv or .mp4 (HEVC)" if muxer_name == "webm" else "choose --video-codec hevc"
    if plan.bits < deepest:
        banding = f": its {hdr} HDR picture will show banding" if hdr and plan.bits == 8 else ""
        log.warning("%s: %d-bit video (%s) is written with %d bits per channel, as %s has no deeper format here; "
                    "%s to keep %d%s", source.path, source.bits, source.pix_fmt, plan.bits, plan.encoder, hevc,
                    deepest, banding)
    elif plan.bits < source.bits:
        log.info("%s: %d-bit video written with %d bits per channel, the most %s takes", source.path,
                 source.bits, plan.bits, plan.encoder)
    if plan.encoder == "libx264" and (plan.bits > 8 or _chroma(plan.pix_fmt) == "422"):
        # High 10 / High 4:2:2: no phone, TV or browser decodes them in hardware.
        log.warning("%s: H.264 at %d bits %s:%s:%s plays in few players (phones, TVs and browsers take 8-bit "
                    "4:2:0 H.264); HEVC in .mp4, .mov or .mkv keeps the depth and plays, --video-depth 8 writes "
                    "8-bit H.264",
                    source.path, plan.bits, *_chroma(plan.pix_fmt))
    kept, wanted = _chroma(plan.pix_fmt), _chroma(source.pix_fmt)
    if plan.bits > 8 and kept < wanted:  # "420" < "422" < "444"
        log.warning("%s: its %s:%s:%s colour is written %s:%s:%s by %s; %s to keep it", source.path, *wanted, *kept,
                    plan.encoder, hevc)


def _time_base_candidates(source: _Source, variable_fps: bool, even: bool = False) -> list[Fraction]:
    frame_tick = 1 / source.info.fps
    if not variable_fps:
        # Muxers without per-frame timestamps (AVI) want one tick per frame.
        return [frame_tick]
    if even and (1 / (source.info.fps * source.time_base)).denominator != 1:
        # Evenly spaced frames in a time base that cannot hold the step (Matroska's 1 ms at
        # 23.976 fps: 41 and 42 ms in turn) go onto the frame grid: MP4 shows a constant rate
        # (editors took 320000/13339 fps for variable), each frame moved by under a millisecond.
        return list(dict.fromkeys([frame_tick, source.time_base, Fraction(1, 1000)]))
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
    if plan.constant_rate or not plan.b_frames:
        # Muxers without presentation times (AVI) would scramble reordered B-frames; MP4/MOV
        # end a track at its last *decoded* frame, which with B-frames and uneven frame times
        # is not the last shown one: the track came out ending before its last frame.
        ctx.max_b_frames = 0
    if plan.qscale is not None:
        ctx.qscale = True
        ctx.global_quality = plan.qscale * 118  # FF_QP2LAMBDA
    if source.info.sample_aspect_ratio:  # DV/HDV pixels are not square: keep the picture's shape
        ctx.sample_aspect_ratio = source.info.sample_aspect_ratio
    # Tag the stream like the source so players apply the same YUV matrix/range.
    matrix = _yuv_matrix(source)
    if matrix is not None:
        ctx.colorspace = matrix
    elif av.VideoFormat(source.pix_fmt).is_rgb:
        # An RGB-coded source (libx264rgb, qtrle, FFV1 RGB, PNG in MOV; tagged RGB or not at all)
        # is converted with swscale's BT.601 matrix: say so, or players assume BT.709 for HD
        # and shift every colour (mean 7 levels on a 720p test clip).
        ctx.colorspace = _SPC_SMPTE170M
    ctx.color_range = _yuv_range(source)
    if source.info.color_primaries not in (0, 2):  # reserved / unspecified
        ctx.color_primaries = source.info.color_primaries
    if source.info.color_trc not in (0, 2):
        ctx.color_trc = source.info.color_trc
    ctx.options = dict(plan.options)


def _choose_video_plan(
    source: _Source, muxer: _Muxer, codec: str | None, crf: int, keep_depth: bool = True
) -> _VideoPlan:
    """Find the first encoder/pixel format/time base that really opens for this size."""
    info = source.info
    variable_fps = muxer.variable_fps
    mp4 = muxer.name in {"mp4", "mov", "ipod"}
    timing = _frame_timing(source) if mp4 or not variable_fps else _Timing(False, False, False)
    b_frames = not (mp4 and timing.uneven)
    if not b_frames:
        log.info("%s: uneven frame times (variable rate or a held frame): B-frames off, so %s keeps every "
                 "frame's time", source.path, muxer.name.upper())
    if not variable_fps and (timing.uneven or timing.offset):
        log.warning("%s: %s stores no frame times: frames are re-timed at the average rate from 0, so uneven "
                    "times, held frames and a late start are lost (and audio may drift from the picture); "
                    "write .mp4 or .mkv to keep them", source.path, muxer.name.upper())
    deep = keep_depth and source.bits > 8
    if muxer.name == "webm":
        chain = _DEEP_WEBM_CHAIN if deep else _WEBM_CHAIN
    else:
        chain = _DEEP_CHAIN if deep else _H264_CHAIN
    candidates = [codec] if codec else muxer.order(chain, muxer.default_video)
    reasons: list[str] = []
    for name in candidates:
        codec_obj = _find_encoder(name)
        if codec_obj is None:
            reasons.append(f"{name}: not in this PyAV/FFmpeg build")
            continue
        if codec_obj.type != "video":
            reasons.append(f"{name}: not a video encoder")
            continue
        if codec and (not muxer.stores(codec_obj.canonical_name)  # asked for by name: say why not, up front
                      or codec_obj.canonical_name in _CLAIMED_NOT_WRITTEN.get(muxer.name, ())):
            reasons.append(f"{name}: {muxer.name} files cannot hold {codec_obj.canonical_name}")
            continue
        options, bit_rate, qscale = _video_quality(
            codec_obj.name, crf, info.width, info.height, info.fps
        )
        if deep:
            options = {**options, **_hdr10_options(codec_obj.name, source, options)}
        last_error = "no usable pixel format"
        for pix_fmt in _pix_fmt_candidates(codec_obj, source, keep_depth):
            # Onto the frame grid only where every frame has its own slot there: snapping
            # frames that are not (a declared rate slower than the real one) pushed them late.
            for tb in _time_base_candidates(source, variable_fps, even=mp4 and not timing.uneven and timing.on_grid):
                plan = _VideoPlan(
                    codec_obj.name, pix_fmt, tb, not variable_fps, options, bit_rate, qscale, b_frames
                )
                try:
                    _trial_open(codec_obj.name, _configure_video, plan, source)
                except (av.error.FFmpegError, ValueError, TypeError) as e:
                    last_error = _why(e)
                    continue
                _log_fallback("video", codec_obj.name, reasons)
                _say_losses(source, plan, keep_depth, muxer.name)
                meant = _chroma(source.pix_fmt) if plan.bits > 8 else "420"
                if _chroma(pix_fmt) == "444" and meant != "444":
                    log.warning(
                        "%s cannot encode %dx%d with subsampled colour (4:2:0 needs even sizes "
                        "there); writing %s to keep the exact size; some hardware players cannot "
                        "play that: crop the input to even sizes%s",
                        codec_obj.name,
                        info.width,
                        info.height,
                        pix_fmt,
                        ", or write .webm (VP9 keeps odd sizes in 4:2:0)" if plan.bits == 8 else "",
                    )
                return plan
        reasons.append(f"{name}: does not open for {info.width}x{info.height} ({last_error})")
    raise VideoError(
        f"no usable video encoder for {muxer.name} output: {'; '.join(reasons)}; "
        "pick another codec or output extension (.mp4, .mkv, .webm)"
    )

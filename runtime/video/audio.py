"""The output's audio and subtitle tracks: each of the source's, copied packet for packet
or (audio) transcoded.

Copying is tried when the output muxer is known to store the codec; otherwise
(or when the muxer refuses the copy) an audio track is decoded and re-encoded with
the first encoder in the muxer's chain that opens (AAC, or Opus/Vorbis for WebM).
Subtitles are copied or left out (text subtitles would need converting between
the containers' own formats: SRT in Matroska, mov_text in MP4).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import av
import av.error

from .encoders import _find_encoder, _log_fallback, _Muxer, _trial_open
from .errors import VideoError, _why
from .probe import _Source, _local

log = logging.getLogger(__name__)

# Audio encoders for the transcode path, best first, per output muxer.
_AAC_CHAIN = ("aac", "libfdk_aac")
_WEBM_AUDIO_CHAIN = ("libopus", "opus", "libvorbis", "vorbis")

# MOV (QuickTime) files label a track with one of the old Macintosh language codes, which
# FFmpeg's MOV muxer writes from its own table: any other code leaves the track unlabelled.
# These are the codes that table holds (checked by writing and reading back each one) ...
_MOV_LANGUAGES = frozenset(
    "eng fra ger ita dut sve spa dan por nor heb jpn ara fin gre ice mlt tur chi urd hin tha kor "
    "lit pol hun est lav rus iri alb ron ces slk slv yid mac bul ukr bel uzb kaz aze arm geo mol "
    "kir tgk tuk mon pus kur kas snd tib nep san mar ben asm guj ori mal kan tam tel bur khm lao "
    "vie ind tgl may amh tir orm som swa run mlg epo wel baq cat lat que grn aym tat uig dzo jav "
    "per".split()
)
# ... and the ISO 639-2 spellings (terminology/bibliographic twins) that mean the same language.
_MOV_ALIASES = {
    "deu": "ger", "fre": "fra", "swe": "sve", "nld": "dut", "zho": "chi", "cze": "ces",
    "slo": "slk", "rum": "ron", "ell": "gre", "isl": "ice", "gle": "iri", "sqi": "alb",
    "mkd": "mac", "hye": "arm", "kat": "geo", "bod": "tib", "mya": "bur", "msa": "may",
    "fas": "per", "nob": "nor", "nno": "nor", "eus": "baq", "cym": "wel", "fil": "tgl",
}

# FFmpeg's default layout per channel count, for sources whose layout is only
# "N channels" (PCM in Matroska, say), which most encoders refuse.
_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}


class _SideStreams:
    """The source's audio and subtitle tracks, fed into the output interleaved with the video.

    They are read through one demuxer of their own (one more pass over the file, however many
    tracks: a movie with five languages is not read six times), so audio never queues behind
    frames waiting for the model; the writer thread asks for everything up to the current
    video time, which keeps the streams close together in the file and the muxer's
    interleaving buffer small.
    """

    def __init__(self, source: _Source) -> None:
        self._input = av.open(_local(source.path))
        self.tracks: dict[int, _Track] = {}
        self._packets: Iterator[Any] | None = None
        self._pending: Any = None
        self._done = False
        # Subtitle packets read ahead of their time: set aside (they are small and sparse)
        # rather than holding back the audio behind them in the file.
        self._early: list[tuple[float, int, Any]] = []

    def add(self, index: int, out: Any, transcode_chain: tuple[str, ...] | None) -> _Track:
        """Track ``index`` into ``out``: copied (``transcode_chain`` None; ValueError when the
        muxer refuses the codec) or transcoded with the chain's first encoder that opens."""
        track = _Track(self._input.streams[index], out, transcode_chain)
        self.tracks[index] = track
        return track

    @staticmethod
    def _time(packet: Any) -> float | None:
        # Decode time: the order the file keeps packets in (a PGS subtitle's pts runs far ahead).
        ts = packet.dts if packet.dts is not None else packet.pts
        if ts is None or packet.time_base is None:
            return None
        return float(ts * packet.time_base)

    def _next(self) -> Any:
        if self._packets is None:
            self._packets = self._input.demux([track.in_stream for track in self.tracks.values()])
        if self._pending is None and not self._done:
            self._pending = next(self._packets, None)
            if self._pending is None:
                self._done = True
        return self._pending

    def mux_until(self, out: Any, t: float | None) -> None:
        """Write every track up to video time ``t`` seconds (everything when ``t`` is None)."""
        if not self.tracks:
            return
        while self._early and (t is None or self._early[0][0] <= t):
            _, _, packet = heapq.heappop(self._early)
            self.tracks[packet.stream.index].write(out, packet)
        while (packet := self._next()) is not None:
            pt = self._time(packet)
            if t is not None and pt is not None and pt > t:
                if packet.stream.type != "subtitle":
                    return  # audio waits for the video to catch up
                heapq.heappush(self._early, (pt, id(packet), packet))
            else:
                self.tracks[packet.stream.index].write(out, packet)
            self._pending = None

    def finish(self, out: Any) -> None:
        self.mux_until(out, None)
        for track in self.tracks.values():
            track.flush(out)

    def close(self) -> None:
        self._input.close()


class _Track:
    """One audio or subtitle track's way into the output: copied packet for packet, or (audio)
    decoded and re-encoded."""

    def __init__(self, in_stream: Any, out: Any, transcode_chain: tuple[str, ...] | None):
        self.in_stream = in_stream
        self._copy = transcode_chain is None
        if self._copy:
            # Raises ValueError when the muxer does not accept the codec.
            self._out_stream = out.add_stream_from_template(in_stream)
            self.label = "copied"
        else:
            self._out_stream, codec_name = self._add_encoder(out, transcode_chain)
            self.label = f"transcoded:{codec_name}"
        # which track is which, in a player's menu
        if in_stream.metadata.get("title"):
            self._out_stream.metadata["title"] = in_stream.metadata["title"]
        language = _output_language(in_stream, out.format.name)
        if language:
            self._out_stream.metadata["language"] = language
            self.label += f" ({language})"
        # default, forced (subtitles shown without asking), commentary, hearing impaired
        self._out_stream.disposition = in_stream.disposition

    def _add_encoder(self, out: Any, chain: tuple[str, ...]) -> tuple[Any, str]:
        src_ctx = self.in_stream.codec_context
        reasons = []
        for name in chain:
            codec = _find_encoder(name)
            if codec is None:
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
                    _trial_open(name, self._configure_audio, codec, rate, layout, channels)
                except (av.error.FFmpegError, ValueError) as e:
                    log.debug("audio encoder %s refuses layout %s: %s", name, layout, _why(e))
                    last = f"{name} ({layout}): {_why(e)}"
                    continue
                stream = out.add_stream(name, rate=rate)
                self._configure_audio(stream.codec_context, codec, rate, layout, channels)
                stream.time_base = Fraction(1, rate)
                _log_fallback("audio", name, reasons)
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

    def write(self, out: Any, packet: Any) -> None:
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

    def flush(self, out: Any) -> None:
        """The encoder's last packets, after the source's end (a copied track has none)."""
        if not self._copy:
            for p in self._out_stream.encode(None):
                out.mux(p)


def _output_language(in_stream: Any, muxer_name: str) -> str | None:
    """The language code the output track will carry (None: unlabelled), said when it is lost."""
    language = (in_stream.metadata.get("language") or "").strip().lower()
    if not language or language == "und":
        return None
    if muxer_name != "mov":
        return language
    mac = _MOV_ALIASES.get(language, language)
    if mac not in _MOV_LANGUAGES:
        log.warning(
            "%s track %d: MOV files cannot label its language %r (QuickTime's own language "
            "codes only); the track is carried unlabelled. Write .mp4 or .mkv to keep it",
            in_stream.type, in_stream.index, language,
        )
        return None
    return mac


def _transcode_chain(muxer: _Muxer) -> tuple[str, ...]:
    chain = _WEBM_AUDIO_CHAIN if muxer.name == "webm" else _AAC_CHAIN
    return tuple(muxer.order(chain, muxer.default_audio))

"""The output container being written: its video stream, its audio tracks, its tags.

Everything that can be refused (muxer, encoder, audio codec, header) is set up
here, before the first frame is decoded, so a bad combination fails in seconds
rather than after the whole video went through the model.
"""

from __future__ import annotations

import logging

import av
import av.error

from .audio import _SideStreams, _Track, _transcode_chain
from .encoders import _COPY_AUDIO, _EXTENSIONS, _choose_video_plan, _configure_video, _Muxer
from .errors import VideoError, _why
from .probe import _Source

log = logging.getLogger(__name__)


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
        keep_depth: bool = True,
    ) -> None:
        self.audio: list[_Track] = []
        self._side: _SideStreams | None = None
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
            self.plan = _choose_video_plan(source, muxer, codec, crf, keep_depth)
            self.stream = self.container.add_stream(self.plan.encoder, rate=source.info.fps)
            _configure_video(self.stream.codec_context, self.plan, source)
            self.stream.time_base = self.plan.time_base
            if self.plan.encoder == "libx265" and muxer.name in {"mp4", "mov", "ipod"}:
                self.stream.codec_context.codec_tag = "hvc1"  # what Apple's players require of HEVC
            if (source.info.sample_aspect_ratio and self.plan.encoder.startswith(("libvpx", "libsvtav1"))
                    and muxer.name in {"matroska", "webm"}):
                # H.264, HEVC and MPEG-4 carry the pixel shape in their bitstream, MP4/MOV in
                # the codec parameters; VP8/VP9/AV1 in Matroska need the stream's own field,
                # which PyAV cannot set.
                log.warning("%s: its non-square pixels (aspect %s) are not kept by %s in %s: the output plays "
                            "squeezed; write .mp4 or .mov, or choose --video-codec h264 or hevc", source.path,
                            source.info.sample_aspect_ratio, self.plan.encoder, ext)
            # For FFmpeg-threaded encoders (mpeg4); x264/vpx run their own threads.
            self.stream.codec_context.thread_type = "AUTO"
            if source.info.rotation:
                self.stream.set_display_rotation(source.info.rotation)
                if muxer.name == "avi":  # no display matrix in AVI: the tag is lost
                    log.warning("%s: its %d-degree display rotation cannot be stored in AVI: the output plays "
                                "turned; write .mp4, .mov or .mkv to keep it", source.path, source.info.rotation)
            self._copy_metadata(source.metadata)
            if source.chapters:
                self._copy_chapters(source, muxer.name)
            if source.audio_tracks or source.subtitle_tracks:
                self._side = _SideStreams(source)
            for index, audio_codec in source.audio_tracks:
                # Strict query: some muxers "accept" any codec, then fail or write junk.
                allowed = _COPY_AUDIO[muxer.name]
                copyable = copy_audio and (
                    audio_codec in allowed if allowed is not None else muxer.stores(audio_codec)
                )
                chain = None if copyable else _transcode_chain(muxer)
                try:
                    track = self._side.add(index, self.container, chain)
                except ValueError:
                    if chain is not None:
                        raise
                    track = self._side.add(index, self.container, _transcode_chain(muxer))
                self.audio.append(track)
            for index, subtitle_codec in source.subtitle_tracks if copy_audio else ():
                track = None
                if muxer.stores(subtitle_codec):
                    try:
                        track = self._side.add(index, self.container, None)
                    except ValueError:
                        pass
                if track is None:
                    home = ".mp4 or .mov" if subtitle_codec == "mov_text" else ".mkv"
                    fix = f"; write {home} to keep it" if ext.lower() not in home.split(" or ") else ""
                    log.warning("%s: a %s subtitle track is dropped: %s files cannot hold %s%s",
                                source.path, subtitle_codec, ext, subtitle_codec, fix)
            # Writes the header now, so codec/muxer mismatches surface before any work.
            self.container.start_encoding()
        except BaseException:
            self.close(quiet=True)
            raise

    @property
    def audio_label(self) -> str:
        """"copied", "transcoded:aac", ...; one per track, comma-separated; "none"."""
        return ", ".join(track.label for track in self.audio) or "none"

    def mux_tracks_until(self, t: float | None) -> None:
        """Every audio and subtitle track up to video time ``t``."""
        if self._side is not None:
            self._side.mux_until(self.container, t)

    def finish_tracks(self) -> None:
        if self._side is not None:
            self._side.finish(self.container)

    def _copy_metadata(self, metadata: dict[str, str]) -> None:
        # The muxer writes its own brand/encoder tags; copying the source's would lie.
        skip = {"major_brand", "minor_version", "compatible_brands", "encoder", "duration"}
        for k, v in metadata.items():
            if k.lower() not in skip:
                self.container.metadata[k] = v

    def _copy_chapters(self, source: _Source, muxer_name: str) -> None:
        if muxer_name in ("avi", "mpegts"):
            log.warning("%s: its chapter list (%d) cannot be stored in %s and is dropped; write "
                        ".mp4, .mov or .mkv to keep it", source.path, len(source.chapters),
                        "AVI" if muxer_name == "avi" else "MPEG-TS")
            return
        # Numbered afresh: Matroska's chapter ids are 64-bit UIDs, MP4 counts from 0.
        self.container.set_chapters([dict(chapter, id=i + 1) for i, chapter in enumerate(source.chapters)])

    def close(self, quiet: bool = False) -> None:
        """Close the audio source and the output (writing its trailer); idempotent."""
        closers = ([self._side.close] if self._side is not None else []) + [self.container.close]
        self.audio, self._side = [], None
        for close in closers:
            try:
                close()
            except Exception:
                if not quiet:
                    raise
                log.debug("error while closing a discarded output", exc_info=True)

"""The public entry point :func:`process_video`: checks, atomic output, report.

The output is written to a hidden temporary file in the destination folder and
renamed over ``dst`` only once it is complete, so an error or a stop never
leaves a partial file behind (and never clobbers an existing ``dst``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import av
import av.error
import numpy as np

from ..atomic import new_temp_beside, replace_keeping_mode
from .errors import VideoError, VideoInterrupted, _why
from .output import _Output
from .probe import _probe
from .stages import _run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoReport:
    """Outcome of :func:`process_video`.

    Attributes:
        frames: frames written (always every source frame).
        seconds: wall-clock time of the whole call.
        fps: frames per second achieved end to end.
        video_codec: the encoder that was used, e.g. ``"libx264"``.
        audio: per audio track ``"copied"`` or ``"transcoded:<codec>"`` (e.g. ``"transcoded:aac"``),
            comma-separated, or ``"none"``.
        pix_fmt: encoded pixel format (``"yuv420p"``; ``"yuv444p"`` for odd sizes in H.264;
            ``"yuv420p10le"``, ``"yuv422p10le"``, ... for sources deeper than 8 bits).
    """

    frames: int
    seconds: float
    fps: float
    video_codec: str
    audio: str
    pix_fmt: str


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
    keep_depth: bool = True,
) -> VideoReport:
    """Run ``frame_fn`` over every frame of ``src`` and write the result to ``dst``.

    Args:
        src: input video.
        dst: output path; its extension picks the container (.mp4, .mkv, .mov,
            .webm, ...). An existing file is replaced only once the new one is
            complete.
        frame_fn: takes an HxWx3 BGR frame and returns one of the same shape and dtype:
            uint8, or uint16 (full 0..65535 scale) when the output keeps a source's
            10 or 12 bits per channel (see ``keep_depth``). Called from the calling
            thread, frames in order.
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
        keep_depth: a source with more than 8 bits per channel (HDR, 10-bit log,
            ProRes) is written with its depth and chroma (HEVC, or AV1 for .webm,
            unless ``codec`` says otherwise), its frames handed to ``frame_fn`` as
            uint16 (uint8 where the encoder has only 8-bit formats, e.g. mpeg4, with
            a warning). False: uint8 frames and an 8-bit 4:2:0 output whatever the source.

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
    if source.dropped:
        tracks = len(source.audio_tracks)
        kept = f"{tracks} audio track{'s' if tracks > 1 else ''}" if tracks else "no audio"
        log.warning("%s: %s dropped: the output holds the video and %s", source.path, " and ".join(source.dropped),
                    kept)
    if source.alpha:
        log.warning("%s: the video's alpha plane (%s) is dropped: the output is opaque H.264 or the "
                    "container's usual codec", source.path, source.pix_fmt)
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

    def open_output(path: str, copy_audio: bool) -> _Output:
        try:
            return _Output(path, ext, source, codec, crf, copy_audio=copy_audio, keep_depth=keep_depth)
        except VideoError as e:  # the encoder and muxer choice knows no file names: say which
            raise VideoError(f"{source.path} -> {dst_path}: {e}") from None

    try:
        try:
            output = open_output(tmp, copy_audio=True)
        except av.error.FFmpegError as e:
            if not (source.audio_tracks or source.subtitle_tracks):
                raise VideoError(f"{dst_path}: cannot start writing ({_why(e)})") from e
            # Header writing rejected the copied audio (a codec the muxer cannot
            # store despite saying so); retry with transcoded audio.
            log.warning("cannot copy the audio or subtitles into %s; transcoding the audio, leaving the subtitles "
                        "out", dst_path)
            _remove_quietly(tmp)
            tmp = _temp_path(dst_path)
            try:
                output = open_output(tmp, copy_audio=False)
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
        replace_keeping_mode(tmp, dst_path)
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


def _temp_path(dst: str) -> str:
    try:
        return str(new_temp_beside(os.path.abspath(dst)))
    except OSError as exc:
        raise VideoError(f"{dst}: cannot write here ({exc.strerror or exc}); check the folder's permissions "
                         "and free space, or write somewhere else") from None


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError:
        log.warning("could not remove temporary file %s", path, exc_info=True)

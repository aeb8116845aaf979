"""The three stages of a run: decode thread -> ``frame_fn`` (calling thread) -> encode thread.

They are joined by bounded queues, so the model is never starved by I/O and
memory stays flat however long the video is. Any stage that fails records its
error and sets ``abort``; every blocking queue operation polls for that (and for
the caller's ``stop_event``), so the run winds down promptly from any side.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
import av.error
import numpy as np
from av.video.reformatter import Interpolation

from .encoders import _VideoPlan, _yuv_matrix, _yuv_range
from .errors import VideoError, VideoInterrupted, _why
from .output import _Output
from .probe import _Source, _local

log = logging.getLogger(__name__)

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
# Decoding to 48-bit BGR (deep sources) without full-resolution chroma interpolation: with it,
# swscale (FFmpeg 8.1) turns 10/12-bit 4:2:0 into magenta with green blotches (58 levels of
# error on a colourful picture; 0.5 without, and 4:2:2/4:4:4 are alike either way).
_SWS_DEEP_DECODE = _SWS_FLAGS & ~Interpolation.FULL_CHR_H_INT

# How often blocked queue operations wake up to look for an abort or a stop.
_POLL_S = 0.05

_END = object()  # end of stream
_HALT = object()  # returned by _Pipeline.get when the run is being torn down


@dataclass
class _Item:
    index: int
    pts: int | None
    image: np.ndarray
    duration: int = 0  # source ticks the frame is shown; 0: unknown


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


def _stage_error(exc: BaseException, failure: str) -> BaseException:
    """What a stage thread hands on: FFmpeg errors become a :class:`VideoError`
    saying ``failure``; anything else (``frame_fn``'s own errors, bugs) unchanged."""
    if not isinstance(exc, av.error.FFmpegError):
        return exc
    err = VideoError(f"{failure} ({_why(exc)})")
    err.__cause__ = exc
    return err


def _decode_stage(source: _Source, frame_format: str, out_q: queue.Queue[Any], pipe: _Pipeline) -> None:
    w, h = source.info.width, source.info.height
    index = 0
    last_pts: int | None = None
    last_duration = 0
    start: int | None = None
    interpolation = _SWS_FLAGS if frame_format == "bgr24" else _SWS_DEEP_DECODE
    try:
        with av.open(_local(source.path)) as container:
            stream = container.streams[source.video_index]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                # Fixed size even if the stream changes resolution midway: the
                # encoder cannot. to_ndarray converts with the frame's own YUV tags.
                image = frame.to_ndarray(
                    format=frame_format, width=w, height=h, interpolation=interpolation
                )
                if not pipe.put(out_q, _Item(index, frame.pts, image, frame.duration or 0)):
                    return
                index += 1
                last_pts, last_duration = frame.pts, frame.duration
            start = stream.start_time
        missing = _missing_frames(source, index, last_pts, start, last_duration)
        if missing:
            pipe.fail(VideoError(
                f"{source.path}: the video stops after {missing}; the file is truncated or damaged. "
                "To process the frames it has, remux it first (`ffmpeg -i IN -c copy FIXED.mkv`)"))
            return
        pipe.put(out_q, _END)
    except BaseException as e:
        pipe.fail(_stage_error(e, f"{source.path}: decoding failed after {index} frames"))


def _missing_frames(source: _Source, decoded: int, last_pts: int | None, start: int | None,
                    last_duration: int | None = 0) -> str | None:
    """How far a source that ended early got, or None when it ended where its header says.

    Evidence: the container's frame count (MP4) and the video stream's own length (never the
    container's, which a longer audio track may set), with slack for rounding and a last frame
    shown longer. Where both exist both must agree: a trimmed MP4 keeps the cut frames in its
    count but an edit list hides them, and its duration says so.
    """
    info = source.info
    short_count = None
    if info.frame_count is not None:
        short_count = decoded < info.frame_count - max(2, info.frame_count // 100)
    short_time, span = None, 0.0
    if info.video_duration_s is not None and last_pts is not None:
        # The last frame lasts what its packet says (a held final still: seconds), else one frame.
        shown = float(last_duration * source.time_base) if last_duration else 1 / float(info.fps)
        span = float((last_pts - (start or 0)) * source.time_base) + shown
        short_time = info.video_duration_s - span > max(0.5, 0.1 * info.video_duration_s)
    seconds = f" ({span:.2f} of {info.video_duration_s:.2f} s)" if short_time else ""
    if short_count and short_time is not False:
        return f"{decoded} of {info.frame_count} frames{seconds}"
    if short_count is None and short_time:
        return f"{decoded} frames{seconds}"
    return None


class _Timestamps:
    """Source pts -> encoder pts, kept strictly increasing as encoders require."""

    def __init__(self, source: _Source, plan: _VideoPlan) -> None:
        self._scale = source.time_base / plan.time_base
        self._step = max(1, round(1 / (source.info.fps * plan.time_base)))
        self._constant = plan.constant_rate or source.untimed
        self._last: int | None = None
        self.repaired = 0

    def __call__(self, pts: int | None) -> int:
        if self._constant or pts is None:
            out = 0 if self._last is None else self._last + self._step
        else:
            out = round(pts * self._scale)
        if self._last is not None and out <= self._last:
            out = self._last + 1
            self.repaired += 1
        self._last = out
        return out

    def duration(self, ticks: int) -> int:
        """A frame's display time in encoder ticks: the source's (a held final still keeps its
        seconds), one frame step when unknown or re-timed."""
        if self._constant or not ticks:
            return self._step
        return max(1, round(ticks * self._scale))


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
    durations: dict[int, int] = {}  # encoder pts -> ticks shown, until its packet is muxed
    colorspace = _yuv_matrix(source)
    color_range = _yuv_range(source)
    try:
        while True:
            item = pipe.get(in_q, None)
            if item is _HALT:
                return
            if item is _END:
                break
            frame = av.VideoFrame.from_ndarray(item.image, format=plan.frame_format)
            # Convert to YUV with the source's matrix/range so colours round-trip.
            frame = frame.reformat(
                format=plan.pix_fmt,
                dst_colorspace=colorspace,
                dst_color_range=color_range,
                interpolation=_SWS_FLAGS,
            )
            frame.pts = stamps(item.pts)
            frame.time_base = plan.time_base
            # By pts: encoders reorder frames, and libx264 does not carry frame durations over.
            durations[frame.pts] = stamps.duration(item.duration)
            output.mux_tracks_until(float(frame.pts * plan.time_base))
            for packet in stream.encode(frame):
                _mux_timed(container, packet, durations)
            written[0] += 1
        for packet in stream.encode(None):
            _mux_timed(container, packet, durations)
        output.finish_tracks()
        if stamps.repaired:
            log.warning("%d frames had missing or non-increasing timestamps", stamps.repaired)
    except BaseException as e:
        pipe.fail(_stage_error(e, f"encoding failed after {written[0]} frames"))


def _mux_timed(container: Any, packet: Any, durations: dict[int, int]) -> None:
    """Mux a video packet with its frame's display time: a held final still (a slideshow) keeps
    its seconds, where the encoder would give every packet one frame step."""
    if packet.pts is not None and packet.pts in durations:
        packet.duration = durations.pop(packet.pts)
    container.mux(packet)


def _check_output(result: Any, like: np.ndarray, index: int) -> np.ndarray:
    if not isinstance(result, np.ndarray):
        raise TypeError(
            f"frame_fn returned {type(result).__name__} for frame {index}; "
            "expected a numpy array"
        )
    if result.shape != like.shape or result.dtype != like.dtype:
        deep = (" (the video keeps its 10/12 bits, so frames come as uint16 on the full 16-bit scale; "
                "process_video(..., keep_depth=False) hands on uint8 frames)") if like.dtype == np.uint16 else ""
        raise ValueError(
            f"frame_fn returned shape {result.shape} dtype {result.dtype} for frame {index}; "
            f"expected {like.shape} {like.dtype} (same as its input){deep}"
        )
    return np.ascontiguousarray(result)


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
        target=_decode_stage, args=(source, output.plan.frame_format, decoded, pipe), name="deblur-decode", daemon=True
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
            if not pipe.put(processed, _Item(item.index, item.pts, result, item.duration)):
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

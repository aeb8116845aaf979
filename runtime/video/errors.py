"""The video pipeline's exceptions, and how FFmpeg errors are worded in them."""

from __future__ import annotations


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


def _why(e: BaseException) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__

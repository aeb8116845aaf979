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
* every audio track (the default one first) is copied packet for packet when the
  output container accepts its codec, and otherwise transcoded (AAC, or
  Opus/Vorbis for WebM), with its language and title; subtitle tracks and
  chapters where the output container holds them;
* the output appears atomically: it is written to a hidden temporary file in
  the destination folder and renamed at the end, so an error or a stop never
  leaves a partial file behind.

Video encoding: H.264 (libx264, yuv420p, CRF) when the PyAV build has it, else
the next encoder that really opens (libopenh264, then FFmpeg's built-in mpeg4;
libvpx-vp9, libvpx, SVT-AV1 for .webm), logged as a warning. H.264 4:2:0 cannot
represent odd widths/heights (its cropping works in 2-pixel steps), so odd-sized
video is written as 4:4:4 H.264 to keep the exact size; VP9 and mpeg4 keep odd
sizes in 4:2:0. A source with more than 8 bits per channel (a phone's HDR video,
10-bit log, ProRes) keeps its depth and chroma (4:2:2, 4:4:4): HEVC by default
(AV1 for .webm), frames handed on as uint16; ``keep_depth=False`` gives the 8-bit
path. Colour matrix, range, primaries and transfer tags of the source are kept,
and so is its rotation metadata.

Containers written: .mp4, .m4v, .mov, .mkv, .webm, .avi, .ts (others are refused
up front rather than risking a late muxer failure). AVI has no per-frame
timestamps, so there frames are re-timed at the average rate.

* subtitle tracks are copied where the output container holds their format
  (Matroska: SRT/ASS/WebVTT, MP4: mov_text), and said to be dropped elsewhere.

Not carried over: data streams (timecode, telemetry), further video streams.

Layout: ``probe`` reads the source, ``encoders`` picks the encoder, pixel
format and time base for the output muxer, ``audio`` copies or transcodes the
audio tracks, ``output`` opens the output container, ``stages`` runs the three
threads and ``pipeline`` holds :func:`process_video` and the atomic write.
"""

from .errors import VideoError, VideoInterrupted
from .pipeline import VideoReport, process_video
from .probe import VideoInfo, probe_video

__all__ = [
    "VideoError",
    "VideoInfo",
    "VideoInterrupted",
    "VideoReport",
    "probe_video",
    "process_video",
]

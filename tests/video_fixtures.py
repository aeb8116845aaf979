"""Video test helpers: clips generated with PyAV whose frame i carries its index as a brightness
ramp (grey level 20 + 5*i, cycling after 47 frames) plus a fixed red quadrant, so tests can check
frame order, colour handling and content after lossy re-encoding."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import Interpolation


SAMPLE_RATE = 44100
# Accurate swscale conversions in the test's own encode/decode, so measured levels
# reflect the pipeline rather than swscale's default rounding bias.
SWS = (
    Interpolation.BILINEAR
    | Interpolation.ACCURATE_RND
    | Interpolation.FULL_CHR_H_INT
    | Interpolation.FULL_CHR_H_INP
)


def frame_level(i: int) -> int:
    return 20 + 5 * (i % 47)  # distinct for the first 47 frames; long clips cycle


def frame_image(i: int, w: int, h: int) -> np.ndarray:
    img = np.full((h, w, 3), frame_level(i), np.uint8)
    img[: h // 2, : w // 2] = (30, 30, 200)  # BGR red quadrant, catches RGB/BGR swaps
    return img


def make_clip(
    path: Path,
    *,
    w: int = 64,
    h: int = 48,
    n: int = 30,
    fps: Fraction = Fraction(25),
    audio: str | None = "aac",
    pts_ms: list[int] | None = None,
    rotation: int = 0,
    extra_audio: int = 0,
    audio_seconds: float | None = None,
    sar: Fraction | None = None,
    codec: str = "libx264",
    hold_last_s: float | None = None,
) -> Path:
    """Write a test clip; ``pts_ms`` gives variable-rate timestamps in milliseconds;
    ``extra_audio`` more audio tracks (a second language) beside the first; ``sar`` non-square
    pixels (DV, HDV); ``codec`` libx264rgb for an RGB-coded source; ``hold_last_s`` shows the
    last frame that long (a final still: its packet's duration)."""
    with av.open(str(path), "w") as c:
        vs = c.add_stream(codec, rate=fps)
        vs.width, vs.height = w, h
        # H.264 4:2:0 cannot hold odd sizes; 4:4:4 can.
        vs.pix_fmt = "bgr24" if codec == "libx264rgb" else "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"
        if sar:
            vs.codec_context.sample_aspect_ratio = sar
        tb = Fraction(1, 1000) if pts_ms else 1 / fps
        vs.codec_context.time_base = tb
        if rotation:
            vs.set_display_rotation(rotation)
        astreams, held = [], []
        for i in range(1 + extra_audio if audio else 0):
            astreams.append(c.add_stream(audio, rate=SAMPLE_RATE))
            astreams[-1].layout = "stereo"
            if extra_audio:  # languages tell the tracks apart
                astreams[-1].metadata["language"] = ("eng", "deu", "fra", "spa", "swe", "zul")[i % 6]
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(frame_image(i, w, h), format="bgr24")
            frame = frame.reformat(format=vs.pix_fmt, interpolation=SWS)
            frame.pts = pts_ms[i] if pts_ms else i
            frame.time_base = tb
            packets = vs.encode(frame)
            if hold_last_s is None:
                for p in packets:
                    c.mux(p)
            else:
                held.extend(packets)
        held.extend(vs.encode())
        if hold_last_s is not None:
            last = max(held, key=lambda p: p.pts)
            last.duration = round(hold_last_s / last.time_base)
        for p in held:
            c.mux(p)
        for astream in astreams:
            write_sine(c, astream, seconds=audio_seconds or n / fps)
    return path


def write_sine(c, astream, seconds: float) -> None:
    total = int(seconds * SAMPLE_RATE)
    t = np.arange(total) / SAMPLE_RATE
    samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for pos in range(0, total, 1024):
        chunk = samples[pos : pos + 1024]
        frame = av.AudioFrame.from_ndarray(
            np.stack([chunk, chunk]), format="fltp", layout="stereo"
        )
        frame.sample_rate = SAMPLE_RATE
        frame.pts = pos
        frame.time_base = Fraction(1, SAMPLE_RATE)
        for p in astream.encode(frame):
            c.mux(p)
    for p in astream.encode():
        c.mux(p)


def read_frames(path: Path) -> tuple[list[np.ndarray], list[float], av.video.stream.VideoStream]:
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        frames, times = [], []
        for f in c.decode(vs):
            frames.append(f.to_ndarray(format="bgr24", interpolation=SWS))
            times.append(float(f.time))
        return frames, times, vs


def average_rate(path: Path) -> Fraction:
    with av.open(str(path)) as c:
        return c.streams.video[0].average_rate


def audio_summary(path: Path) -> tuple[str, float] | None:
    """(codec, decoded duration in seconds) of the first audio track, None if none."""
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return None
        a = c.streams.audio[0]
        samples = sum(f.samples for f in c.decode(a))
        return a.codec_context.codec.canonical_name, samples / a.sample_rate


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


def ramp(frames: list[np.ndarray]) -> np.ndarray:
    """Mean level of the bottom-right quadrant (the frame-index ramp) per frame."""
    h, w = frames[0].shape[:2]
    return np.array([f[h // 2 + 2 :, w // 2 + 2 :].mean() for f in frames])


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


def identity(img: np.ndarray) -> np.ndarray:
    return img


def invert(img: np.ndarray) -> np.ndarray:
    return 255 - img


def make_deep_clip(path, pix_fmt: str, codec: str = "libx265", hdr: bool = False, frames: int = 4):
    """A 64x48 clip of smooth 16-bit colour (banding shows in 8 bits; colour shows a chroma
    conversion gone wrong), optionally tagged PQ HDR."""
    y, x = np.mgrid[0:48, 0:64]
    ramp = np.dstack([x * 1000, y * 1300, 65535 - x * 500 - y * 600]).clip(0, 65535).astype(np.uint16)
    with av.open(str(path), "w") as c:
        vs = c.add_stream(codec, rate=25, options={"x265-params": "log-level=none"})
        vs.width, vs.height, vs.pix_fmt = 64, 48, pix_fmt
        if hdr:  # BT.2020 primaries and matrix, PQ transfer: a phone's HDR video
            ctx = vs.codec_context
            ctx.color_primaries, ctx.colorspace, ctx.color_trc = 9, 9, 16
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(ramp, format="bgr48le").reformat(format=pix_fmt)
            frame.pts = i
            c.mux(vs.encode(frame))
        c.mux(vs.encode())
    return path

"""End-to-end video throughput of the ``deblur-run`` path versus the model alone.

The video pipeline decodes, runs the model and encodes in separate threads; if it hides I/O
well, end-to-end frames/s is close to what the model alone manages on the same frames
(target ratio >= 0.9). Both are measured with the same ``Deblurrer``, alternating pipeline
and model-only passes so background load affects them alike.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from deblur.runtime.deblurrer import Deblurrer
from deblur.runtime.errors import InputError

from . import report
from .latency import parse_size, photo

log = logging.getLogger(__name__)


@dataclass
class VideoSettings:
    model: str
    provider: str = "cpu"
    size: str = "480p"
    frames: int = 30  # frames in the generated clip
    fps: int = 25
    repeats: int = 3  # pipeline / model-only pass pairs; medians reported
    tile: int = 0
    threads: int | None = None
    photo: str | None = None


def make_clip(path: Path, width: int, height: int, frames: int, fps: int, source: str | None = None) -> Path:
    """An H.264 clip panning across a photo: real texture, real motion, cheap to decode."""
    import av

    base = photo(width + frames * 4, height, source)
    with av.open(str(path), "w") as container:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(base[:, i * 4:i * 4 + width]), format="bgr24")
            for packet in stream.encode(frame.reformat(format=stream.pix_fmt)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _decode_all(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


def run_video(settings: VideoSettings) -> dict[str, Any]:
    """Measure and return the JSON payload (system, settings, one row, ratio)."""
    from deblur.runtime.video import VideoError, process_video

    if settings.frames < 2 or settings.repeats < 1:
        raise InputError(f"--frames ({settings.frames}) must be >= 2 and --repeats ({settings.repeats}) >= 1")
    label, width, height = parse_size(settings.size)
    deb = Deblurrer(settings.model, settings.provider, tile=settings.tile, threads=settings.threads)
    with tempfile.TemporaryDirectory(prefix="deblur-bench-video-") as tmp:
        clip = make_clip(Path(tmp) / "clip.mp4", width, height, settings.frames, settings.fps, settings.photo)
        frames = _decode_all(clip)
        deb(frames[0])  # warm-up: first run allocates and picks kernels
        pipeline_fps, model_fps = [], []
        for r in range(settings.repeats):
            start = time.perf_counter()
            for frame in frames:
                deb(frame)
            model_fps.append(len(frames) / (time.perf_counter() - start))
            try:
                result = process_video(clip, Path(tmp) / f"out{r}.mp4", deb)
            except VideoError as exc:
                raise InputError(str(exc)) from None
            pipeline_fps.append(result.frames / result.seconds)
            log.info("pass %d: pipeline %.2f fps, model-only %.2f fps", r + 1, pipeline_fps[-1], model_fps[-1])
    e2e, model = statistics.median(pipeline_fps), statistics.median(model_fps)
    row = {
        "model": str(deb.model_path), "precision": deb.info.precision, "provider": deb.provider, "size": label,
        "width": width, "height": height, "tile": deb.tile, "frames": len(frames), "video_codec": result.video_codec,
        "end_to_end_fps": e2e, "model_only_fps": model, "ratio": e2e / model,
        "end_to_end_fps_runs": pipeline_fps, "model_only_fps_runs": model_fps, "target_ratio": 0.9,
    }
    return {"benchmark": "video", "system": report.system_info(deb.provider, settings.threads or report.physical_cores()),
            "settings": asdict(settings), "rows": [row]}


COLUMNS = ["model", "provider", "size", "tile", "frames", "end_to_end_fps", "model_only_fps", "ratio"]

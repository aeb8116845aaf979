"""A long video through deblur-run: flat memory, every frame, and clean stops by signal."""

from __future__ import annotations

import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from deblur.runtime.video import probe_video
from local_models import LOCAL_METADATA, local_conv_model
from video_fixtures import make_clip, read_frames
from train_fixtures import ONE_THREAD_ENV

FRAMES = 2400  # 96 s at 25 fps


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("long")
    model = local_conv_model(folder / "local.onnx", metadata=LOCAL_METADATA)
    return make_clip(folder / "long.mp4", w=160, h=120, n=FRAMES, audio="aac"), model


def _watch_rss(proc: subprocess.Popen, samples: list[tuple[float, int]]) -> None:
    start = time.perf_counter()
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))
            samples.append((time.perf_counter() - start, rss))
        except (OSError, StopIteration):
            pass
        time.sleep(0.05)


def _start(args: list[str]) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "deblur-run"
    return subprocess.Popen([str(exe), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ONE_THREAD_ENV)


def test_long_video_keeps_every_frame_with_flat_memory(long_clip, tmp_path):
    clip, model = long_clip
    out = tmp_path / "out.mp4"
    proc = _start([str(clip), "-m", str(model), "-o", str(out), "-q"])
    samples: list[tuple[float, int]] = []
    watcher = threading.Thread(target=_watch_rss, args=(proc, samples))
    watcher.start()
    _, err = proc.communicate(timeout=600)
    watcher.join()
    assert proc.returncode == 0, err
    frames, _, _ = read_frames(out)
    assert len(frames) == probe_video(out).frame_count == FRAMES
    # Memory once the pipeline is warm (queues full, encoder buffers allocated) must not grow
    # with the frame count: a leak of even a tenth of a frame per frame would add 14 MB here.
    duration = samples[-1][0]
    warm = [rss for t, rss in samples if 0.2 * duration <= t <= 0.4 * duration]
    late = [rss for t, rss in samples if t >= 0.8 * duration]
    assert len(warm) >= 3 and len(late) >= 3, samples
    growth = max(late) - statistics.median(warm)
    assert growth < 12 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB: {samples[::10]}"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_video_stops_cleanly_and_says_how_far(long_clip, tmp_path, signum):
    clip, model = long_clip
    out = tmp_path / "out.mp4"
    # 16-px tiles: many model calls per frame, so the run lasts far longer than the wait.
    proc = _start([str(clip), "-m", str(model), "-o", str(out), "--tile", "16", "--overlap", "2", "--blend", "2"])
    seen = False
    for line in proc.stderr:  # the model is loaded and the signal handlers are about to be set
        if "deblurring with" in line:
            seen = True
            break
    assert seen, "deblur-run never started"
    time.sleep(1.5)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert f"of {FRAMES} frames" in err and "no partial output" in err, err
    assert list(tmp_path.iterdir()) == []  # neither the output nor its temporary file

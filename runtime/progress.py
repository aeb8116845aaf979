"""Progress bars for deblur-run: files, and frames within a video. Silent when not a TTY."""

from __future__ import annotations

import sys

from tqdm import tqdm


class Progress:
    def __init__(self, jobs: list, enabled: bool = True) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.jobs = jobs
        self._files = None
        self._frames = None
        self._frames_job = None

    def __enter__(self) -> "Progress":
        if self.enabled and len(self.jobs) > 1:
            self._files = tqdm(total=len(self.jobs), unit="file", desc="deblur", leave=True)
        return self

    def file_done(self, job) -> None:
        self._close_frames()
        if self._files is not None:
            self._files.update(1)

    def frames(self, job, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        if self._frames_job is not job:
            self._close_frames()
            self._frames = tqdm(total=total, unit="frame", desc=job.src.name, leave=False)
            self._frames_job = job
        self._frames.update(done - self._frames.n)

    def _close_frames(self) -> None:
        if self._frames is not None:
            self._frames.close()
            self._frames, self._frames_job = None, None

    def __exit__(self, *exc) -> None:
        self._close_frames()
        if self._files is not None:
            self._files.close()

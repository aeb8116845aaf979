"""Progress for deblur-run: files, and frames within a video. Bars on a terminal; where stderr
is a log (CI, nohup, a job scheduler) a line now and then instead, so a long video is not
silent for an hour."""

from __future__ import annotations

import logging
import sys
import time

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

log = logging.getLogger(__name__)


class Progress:
    def __init__(self, jobs: list, enabled: bool = True, interval_s: float = 30.0) -> None:
        self.bars = enabled and sys.stderr.isatty()
        self.lines = enabled and not self.bars
        self.jobs = jobs
        self.interval_s = interval_s
        self._files = None
        self._frames = None
        self._frames_job = None
        self._done = 0
        self._last_line = time.monotonic()
        self._redirect = None

    def __enter__(self) -> "Progress":
        if self.bars:
            # Warnings printed through the bars would break them: tqdm writes them above.
            self._redirect = logging_redirect_tqdm()
            self._redirect.__enter__()
            if len(self.jobs) > 1:
                self._files = tqdm(total=len(self.jobs), unit="file", desc="deblur", leave=True)
        return self

    def file_done(self, job) -> None:
        self._close_frames()
        self._done += 1
        if self._files is not None:
            self._files.update(1)
        if self.lines and len(self.jobs) > 1 and self._due():
            log.info("%d of %d files done", self._done, len(self.jobs))

    def frames(self, job, done: int, total: int | None) -> None:
        if self.lines and self._due():
            log.info("%s: %d%s frames", job.src.name, done, f" of {total}" if total else "")
        if not self.bars:
            return
        if self._frames_job is not job:
            self._close_frames()
            self._frames = tqdm(total=total, unit="frame", desc=job.src.name, leave=False)
            self._frames_job = job
        self._frames.update(done - self._frames.n)

    def _due(self) -> bool:
        now = time.monotonic()
        if now - self._last_line < self.interval_s:
            return False
        self._last_line = now
        return True

    def _close_frames(self) -> None:
        if self._frames is not None:
            self._frames.close()
            self._frames, self._frames_job = None, None

    def __exit__(self, *exc) -> None:
        self._close_frames()
        if self._files is not None:
            self._files.close()
        if self._redirect is not None:
            self._redirect.__exit__(*exc)

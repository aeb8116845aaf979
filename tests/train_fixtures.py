"""Helpers for the trainer's tests: synthetic photos and tiny, fast training configs."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

# The test machines have 2 cores shared with other jobs: intra-op threads then spin against
# each other and a 1 ms step takes 30. Subprocesses get this environment.
ONE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def write_photos(folder: Path, count: int = 6, size: tuple[int, int] = (80, 96), *, seed: int = 0,
                 grey: bool = False) -> list[Path]:
    """Piecewise-flat 'photos' (rectangles on a background): edges for the blur to smear."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        height, width = size
        image = np.zeros((height, width, 3), np.uint8) + rng.integers(0, 255, 3, dtype=np.uint8)
        for _ in range(12):
            y, x = int(rng.integers(0, height - 8)), int(rng.integers(0, width - 8))
            h, w = int(rng.integers(4, 30)), int(rng.integers(4, 30))
            image[y:y + h, x:x + w] = rng.integers(0, 255, 3, dtype=np.uint8)
        if grey:
            image = image[:, :, 0]
        path = folder / f"photo_{i:02d}.png"
        cv2.imwrite(str(path), image)
        paths.append(path)
    return paths


def tiny_overrides(data: Path, **extra) -> dict:
    """ngf 8, one block, crop 64, batch 2, a narrow critic: about 0.1 s a step on one core."""
    values = dict(data=[str(data)], arch_args={"ngf": 8, "n_blocks": 1}, crop=64, val_crop=64, val_count=4,
                  batch_size=2, ndf=8, content="l1", workers=0, device="cpu", log_every=5,
                  val_every=1000, checkpoint_every=1000, snapshot_every=1000)
    values.update(extra)
    return values

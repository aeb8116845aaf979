"""What a run tells its user: metrics files, TensorBoard, validation scores and sample grids.

Only rank 0 creates a ``RunLog``. Rows go to ``metrics.jsonl`` (everything) and to
``train.csv`` / ``val.csv`` (fixed columns, for a spreadsheet), and to TensorBoard when the
``tensorboard`` package is installed.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from deblur.benchmarks.metrics import mean_psnr, psnr, ssim
from deblur.runtime.atomic import atomic_path

log = logging.getLogger(__name__)

TRAIN_COLUMNS = ("step", "lr", "loss_critic", "loss_g", "loss_adv", "loss_content", "critic_gap",
                 "gradient_penalty", "step_time")
VAL_COLUMNS = ("step", "psnr", "ssim", "psnr_identity", "ssim_identity")


class RunLog:
    """metrics.jsonl, train.csv, val.csv and TensorBoard, appended to across resumes.

    ``resume_step``: rows logged after the checkpoint being resumed from are dropped first —
    the resumed run computes those steps again, and the logs must not hold them twice. A new
    run (None) starts the files afresh: a run that died before its first checkpoint leaves
    rows that are no part of this one.
    """

    def __init__(self, run_dir: Path, resume_step: int | None = None) -> None:
        self.run_dir = run_dir
        if resume_step is not None:
            _drop_rows_after(run_dir, resume_step)
        else:
            for name in ("metrics.jsonl", "train.csv", "val.csv"):
                (run_dir / name).unlink(missing_ok=True)
        self.jsonl = open(run_dir / "metrics.jsonl", "a", encoding="utf-8")
        self.csv = {kind: self._open_csv(run_dir / f"{kind}.csv", columns)
                    for kind, columns in (("train", TRAIN_COLUMNS), ("val", VAL_COLUMNS))}
        try:
            from torch.utils.tensorboard import SummaryWriter

            # A new run hides any earlier events in the folder from step 0 on.
            purge = 0 if resume_step is None else resume_step + 1
            self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge)
        except ImportError:  # tensorboard is optional; the files above hold the same numbers
            self.tensorboard = None

    @staticmethod
    def _open_csv(path: Path, columns: tuple[str, ...]):
        new = not path.exists() or path.stat().st_size == 0
        handle = open(path, "a", newline="", encoding="utf-8")
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        if new:
            writer.writeheader()
        return handle, writer

    def write(self, kind: str, row: dict) -> None:
        self.jsonl.write(json.dumps({"kind": kind, **row}) + "\n")
        self.jsonl.flush()
        handle, writer = self.csv[kind]
        writer.writerow(row)
        handle.flush()
        if self.tensorboard is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(f"{kind}/{key}", value, row["step"])

    def close(self) -> None:
        self.jsonl.close()
        for handle, _ in self.csv.values():
            handle.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def _step_of(line: str, parse) -> int | None:
    """A logged row's step; None for a line a crash or full disk left torn (dropped)."""
    try:
        return int(parse(line))
    except (ValueError, TypeError, AttributeError):
        return None


def _drop_rows_after(run_dir: Path, step: int) -> None:
    path = run_dir / "metrics.jsonl"
    if path.exists():
        kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                if (s := _step_of(line, lambda text: json.loads(text).get("step", 0))) is not None and s <= step]
        with atomic_path(path) as tmp:
            tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    for kind in ("train", "val"):
        path = run_dir / f"{kind}.csv"
        if not path.exists():
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        width = lines[0].count(",") if lines else 0  # a torn row has fewer fields
        kept = lines[:1] + [line for line in lines[1:] if line.count(",") == width
                            and (s := _step_of(line, lambda text: text.split(",", 1)[0])) is not None and s <= step]
        with atomic_path(path) as tmp:
            tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def to_uint8_images(batch: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> (N, H, W, 3) uint8 RGB."""
    array = ((batch.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte()
    return array.permute(0, 2, 3, 1).numpy()


def image_scores(restored: np.ndarray, sharp: np.ndarray) -> tuple[float, float]:
    """Mean PSNR (dB) and SSIM over a batch of uint8 images, with deblur-bench's definitions
    (RGB, data range 255, Wang et al. SSIM) but no border crop: validation crops are small."""
    return (mean_psnr(psnr(r, s) for r, s in zip(restored, sharp)),
            float(np.mean([ssim(r, s) for r, s in zip(restored, sharp)])))


@torch.no_grad()
def restore(generator: nn.Module, blurred: torch.Tensor, device: torch.device, batch_size: int = 4) -> torch.Tensor:
    """Run the generator in eval mode (no dropout, running norm statistics) in small batches."""
    was_training = generator.training
    generator.eval()
    try:
        outputs = [generator(chunk.to(device)).float().cpu() for chunk in blurred.split(batch_size)]
    finally:
        generator.train(was_training)
    return torch.cat(outputs)


def save_grid(path: Path, blurred: np.ndarray, restored: np.ndarray, sharp: np.ndarray, rows: int = 4) -> None:
    """One row per sample: blurred | restored | sharp, written as PNG (atomically)."""
    lines = [np.concatenate([b, r, s], axis=1) for b, r, s in zip(blurred[:rows], restored[:rows], sharp[:rows])]
    grid = np.concatenate(lines, axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".png", grid[:, :, ::-1])
    if not ok:
        raise RuntimeError(f"PNG encoding of {path} failed")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())

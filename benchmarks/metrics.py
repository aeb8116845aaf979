"""Full-reference quality metrics for the deblurring benchmarks: PSNR and SSIM.

Convention (every number in ``benchmarks/results`` follows it):

* Inputs are ``HxWx3`` uint8 images in **BGR** order, as OpenCV reads and writes them, or
  ``HxW`` uint8 grey images. Both images must have the same shape. Floats are refused on
  purpose: "is this [0, 1] or [0, 255]?" is the classic way metric numbers go silently wrong.
* ``on="rgb"`` (default): computed on all three colour channels with ``data_range=255``.
  PSNR uses the MSE over every pixel and channel; SSIM is the mean of the per-channel SSIMs
  (scikit-image's ``channel_axis``). Both are symmetric in the channel order, so BGR vs RGB
  does not change them.
* ``on="y"``: computed on the BT.601 luma in studio range (``Y = 16 + (65.481 R + 128.553 G
  + 24.966 B) / 255``, MATLAB's ``rgb2ycbcr``), kept as float (not rounded), still with
  ``data_range=255``. This is what super-resolution and many deblurring papers report, so
  our numbers can be compared with theirs. Grey inputs are used as they are.
* SSIM is ``skimage.metrics.structural_similarity`` with Wang et al. 2004's settings:
  Gaussian window sigma 1.5 (11x11), ``use_sample_covariance=False``, K1=0.01, K2=0.03.
  PSNR is ``skimage.metrics.peak_signal_noise_ratio``.
* ``crop_border`` pixels are removed from every side of both images before measuring.
  Deconvolution and the blur itself are least defined near the frame edge (the blur pulled
  in reflected pixels that no method can know), and those artefacts would otherwise dominate
  the score. The quality benchmark passes ``DEFAULT_CROP_BORDER`` = half the synthetic
  kernel size (31 // 2 = 15), the width of the band the blur reached outside the frame.
* Identical images have PSNR ``inf``. Per-image values keep the ``inf``; ``mean_psnr`` caps
  each value at ``PSNR_CAP_DB`` before averaging, so one perfect image cannot turn a table's
  mean into ``inf`` while still ranking it above any real restoration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Literal

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = [
    "DATA_RANGE",
    "DEFAULT_CROP_BORDER",
    "PSNR_CAP_DB",
    "Metrics",
    "psnr",
    "ssim",
    "measure",
    "mean_psnr",
    "to_y",
]

DATA_RANGE = 255.0
# Half of BlurConfig().kernel_size (31): the blur mixed this many pixels of reflected
# border into the frame, so no method can restore them faithfully.
DEFAULT_CROP_BORDER = 15
# A single 1-LSB error in a 256x256x3 image already scores ~101 dB, so 100 dB is "perfect"
# for any benchmark image while staying finite in a mean.
PSNR_CAP_DB = 100.0

Channel = Literal["rgb", "y"]


@dataclass(frozen=True)
class Metrics:
    """PSNR (dB, may be ``inf``) and SSIM of one restored image against its reference."""

    psnr: float
    ssim: float


def to_y(image_bgr: np.ndarray) -> np.ndarray:
    """BT.601 studio-range luma (float64 in [16, 235]) of a uint8 BGR image; grey passes through."""
    image = np.asarray(image_bgr)
    if image.ndim == 2:
        return image.astype(np.float64)
    b, g, r = (image[..., c].astype(np.float64) for c in range(3))
    return 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def _prepare(
    restored: np.ndarray, reference: np.ndarray, crop_border: int, on: Channel
) -> tuple[np.ndarray, np.ndarray]:
    restored = np.asarray(restored)
    reference = np.asarray(reference)
    for name, image in (("restored", restored), ("reference", reference)):
        if image.dtype != np.uint8:
            raise TypeError(f"{name} must be uint8 (0..255), got {image.dtype}")
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
            raise ValueError(f"{name} must be HxW or HxWx3, got shape {image.shape}")
    if restored.shape != reference.shape:
        raise ValueError(f"shape mismatch: restored {restored.shape} vs reference {reference.shape}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if crop_border:
        h, w = reference.shape[:2]
        if 2 * crop_border >= min(h, w):
            raise ValueError(f"crop_border {crop_border} leaves nothing of a {h}x{w} image")
        restored = restored[crop_border:-crop_border, crop_border:-crop_border]
        reference = reference[crop_border:-crop_border, crop_border:-crop_border]
    if on == "y":
        return to_y(restored), to_y(reference)
    if on != "rgb":
        raise ValueError(f"on must be 'rgb' or 'y', got {on!r}")
    # float64 so skimage does not reject or overflow-handle uint8 differences itself.
    return restored.astype(np.float64), reference.astype(np.float64)


def psnr(
    restored: np.ndarray, reference: np.ndarray, *, crop_border: int = 0, on: Channel = "rgb"
) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(255^2 / MSE)``; ``inf`` when identical."""
    a, b = _prepare(restored, reference, crop_border, on)
    if np.array_equal(a, b):
        # skimage would divide by zero and warn; inf is the exact answer.
        return math.inf
    return float(peak_signal_noise_ratio(b, a, data_range=DATA_RANGE))


def ssim(
    restored: np.ndarray, reference: np.ndarray, *, crop_border: int = 0, on: Channel = "rgb"
) -> float:
    """Structural similarity (Wang et al. 2004 settings), 1.0 for identical images."""
    a, b = _prepare(restored, reference, crop_border, on)
    return float(
        structural_similarity(
            b,
            a,
            data_range=DATA_RANGE,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            channel_axis=-1 if a.ndim == 3 else None,
        )
    )


def measure(
    restored: np.ndarray, reference: np.ndarray, *, crop_border: int = 0, on: Channel = "rgb"
) -> Metrics:
    """Both metrics under the same convention and crop."""
    return Metrics(
        psnr=psnr(restored, reference, crop_border=crop_border, on=on),
        ssim=ssim(restored, reference, crop_border=crop_border, on=on),
    )


def mean_psnr(values: Iterable[float], *, cap: float = PSNR_CAP_DB) -> float:
    """Mean of per-image PSNRs with each capped at ``cap`` dB (so ``inf`` stays finite)."""
    capped = [min(float(v), cap) for v in values]
    if not capped:
        raise ValueError("mean_psnr of no values")
    if any(math.isnan(v) for v in capped):
        raise ValueError("PSNR values contain NaN")
    return float(np.mean(capped))

"""Classical non-blind deconvolution baselines for the quality benchmark.

They answer "does the GAN beat deconvolution that is even told the kernel?": each gets the
*true* blur kernel that ``deblur.train.blur.degrade`` returned, which no real deployment has,
so they are an optimistic reference for what linear / Bayesian deconvolution can do.

Every entry of ``BASELINES`` is ``fn(blurred, kernel) -> restored`` with ``blurred`` a
``HxWx3`` (BGR) or ``HxW`` uint8 image and ``kernel`` the 2-D PSF in the true-convolution
convention of ``deblur.train.blur.apply_kernel``; the result has the input's shape and dtype.
All work is per channel in float [0, 1]; the channel order does not matter to any of them.

Boundaries: the blur was made with reflected borders, but scikit-image's Wiener assumes a
*periodic* image (FFT) and its Richardson-Lucy a *zero* one (``convolve(mode="same")``).
Both mismatches ring in from the frame edge, so the image is reflected out by the kernel
size first and cropped back after; for Wiener the outer band of that padding is also tapered
into its circularly blurred self (MATLAB's ``edgetaper`` idea) so the periodic wrap is
continuous. ``benchmarks/results/baseline_tuning.md`` has the measured effect of each.

The constants below were tuned once by ``python -m deblur.benchmarks.tune_baselines`` on 20
centre crops of CBSD68 (not the Set5 + Set14 validation split), maximising mean PSNR
(RGB, border 15) pooled over noise/JPEG on and off.
"""

from __future__ import annotations

from typing import Callable, Literal

import cv2
import numpy as np
from skimage import restoration

__all__ = [
    "BASELINES",
    "Baseline",
    "Boundary",
    "RL_BOUNDARY",
    "RL_NUM_ITER",
    "WIENER_BALANCE",
    "WIENER_BOUNDARY",
    "WIENER_REG",
    "identity",
    "richardson_lucy",
    "wiener",
]

Boundary = Literal["none", "reflect", "taper"]
Baseline = Callable[[np.ndarray, np.ndarray], np.ndarray]

# Tuned (see module docstring): mean PSNR 28.31 dB with noise/JPEG, 30.70 dB without, vs
# 21.9 dB for the blurred input; 1e-3 and 1e-2 both lose 0.4-2.0 dB. "identity" is the
# textbook Wiener filter with a constant noise-to-signal ratio; it beat scikit-image's default
# Laplacian prior (best 25.8 dB pooled) because long motion kernels have spectral zeros at low
# frequencies, where a Laplacian barely regularises and quantisation noise returns as stripes.
WIENER_BALANCE = 3e-3
WIENER_REG: Literal["identity", "laplacian"] = "identity"
WIENER_BOUNDARY: Boundary = "taper"
# Iterations are RL's only regulariser: too few leave blur, too many amplify noise and JPEG
# blocking. 100 scored 27.54 / 28.88 dB (noise+JPEG / clean); 50 and 200 were 0.2-0.9 dB lower.
RL_NUM_ITER = 100
RL_BOUNDARY: Boundary = "reflect"


def _check(blurred: np.ndarray, kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    blurred = np.asarray(blurred)
    if blurred.dtype != np.uint8:
        raise TypeError(f"blurred must be uint8, got {blurred.dtype}")
    if not (blurred.ndim == 2 or blurred.ndim == 3):
        raise ValueError(f"blurred must be HxW or HxWxC, got shape {blurred.shape}")
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2 or kernel.sum() <= 0:
        raise ValueError("kernel must be a 2-D PSF with a positive sum")
    # A PSF that does not sum to 1 would also rescale brightness, which is not the blur's job.
    return blurred, kernel / kernel.sum()


def _to_float(image: np.ndarray) -> np.ndarray:
    work = image.astype(np.float64) / 255.0
    return work[..., None] if work.ndim == 2 else work


def _to_uint8(work: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return np.clip(np.rint(work * 255.0), 0, 255).astype(np.uint8).reshape(shape)


def _taper(padded: np.ndarray, kernel: np.ndarray, band: int) -> np.ndarray:
    # Inside the outer `band` pixels, fade linearly to the image blurred *circularly* by the
    # kernel: that version is exactly periodic under the PSF, so the FFT sees no jump at the
    # wrap. The band lies wholly in the reflected padding, so real pixels are untouched.
    flipped = np.ascontiguousarray(kernel[::-1, ::-1])
    wrapped = cv2.filter2D(padded, cv2.CV_64F, flipped, borderType=cv2.BORDER_WRAP)
    wrapped = wrapped.reshape(padded.shape)

    def ramp(n: int) -> np.ndarray:
        r = np.ones(n)
        rise = np.arange(1, band + 1) / (band + 1)
        r[:band], r[n - band :] = rise, rise[::-1]
        return r

    alpha = np.outer(ramp(padded.shape[0]), ramp(padded.shape[1]))[..., None]
    return alpha * padded + (1.0 - alpha) * wrapped


def _pad(work: np.ndarray, kernel: np.ndarray, boundary: Boundary) -> tuple[np.ndarray, int]:
    if boundary == "none":
        return work, 0
    if boundary not in ("reflect", "taper"):
        raise ValueError(f"boundary must be 'none', 'reflect' or 'taper', got {boundary!r}")
    # A full kernel width: the blur reached half a kernel out of the frame, and the taper
    # band needs room that is not real image.
    pad = max(kernel.shape)
    # "symmetric" (edge pixel repeated) is cv2.BORDER_REFLECT, the blur generator's border.
    padded = np.pad(work, ((pad, pad), (pad, pad), (0, 0)), mode="symmetric")
    if boundary == "taper":
        padded = _taper(padded, kernel, min(pad, padded.shape[0] // 2, padded.shape[1] // 2))
    return padded, pad


def _unpad(work: np.ndarray, pad: int) -> np.ndarray:
    return work[pad:-pad, pad:-pad] if pad else work


def identity(blurred: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """The blurred input itself: the floor every method must beat."""
    blurred, _ = _check(blurred, kernel)
    return blurred.copy()


def wiener(
    blurred: np.ndarray,
    kernel: np.ndarray,
    balance: float = WIENER_BALANCE,
    *,
    reg: Literal["identity", "laplacian"] = WIENER_REG,
    boundary: Boundary = WIENER_BOUNDARY,
) -> np.ndarray:
    """Wiener-Hunt deconvolution (``skimage.restoration.wiener``) per channel, given the PSF.

    ``balance`` is the regularisation weight; ``reg="identity"`` penalises all frequencies
    equally (classic Wiener, constant noise-to-signal ratio), ``"laplacian"`` is
    scikit-image's default smoothness prior.
    """
    blurred, kernel = _check(blurred, kernel)
    if reg == "identity":
        reg_ir = np.ones((1, 1))
    elif reg == "laplacian":
        reg_ir = None
    else:
        raise ValueError(f"reg must be 'identity' or 'laplacian', got {reg!r}")
    padded, pad = _pad(_to_float(blurred), kernel, boundary)
    # clip=False: scikit-image clips to [-1, 1]; the [0, 1] clip happens in _to_uint8.
    channels = [
        restoration.wiener(padded[..., c], kernel, balance, reg=reg_ir, clip=False)
        for c in range(padded.shape[2])
    ]
    return _to_uint8(_unpad(np.stack(channels, axis=-1), pad), blurred.shape)


def richardson_lucy(
    blurred: np.ndarray,
    kernel: np.ndarray,
    num_iter: int = RL_NUM_ITER,
    *,
    boundary: Boundary = RL_BOUNDARY,
) -> np.ndarray:
    """Richardson-Lucy deconvolution (``skimage.restoration.richardson_lucy``), given the PSF."""
    blurred, kernel = _check(blurred, kernel)
    if num_iter < 1:
        raise ValueError(f"num_iter must be >= 1, got {num_iter}")
    padded, pad = _pad(_to_float(blurred), kernel, boundary)
    # float32 halves the FFT work of the many iterations; the result is quantised to uint8.
    # A trailing PSF axis of 1 deconvolves all channels in one call without mixing them.
    restored = restoration.richardson_lucy(
        padded.astype(np.float32), kernel.astype(np.float32)[..., None], num_iter=num_iter, clip=False
    )
    return _to_uint8(_unpad(restored, pad), blurred.shape)


BASELINES: dict[str, Baseline] = {
    "identity": identity,
    "wiener": wiener,
    "richardson_lucy": richardson_lucy,
}

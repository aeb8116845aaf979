"""Synthetic motion blur: make (blurred, sharp) training and validation pairs from sharp photos.

Camera-shake kernels follow Boracchi & Foi 2012 ("Modeling the performance of image
restoration from motion blur"), the generator DeblurGAN trained on: an inertial random walk
with a pull back towards where it started, Gaussian shake and rare abrupt turns, rasterised
with sub-pixel accumulation. A fraction of simple linear kernels is mixed in, then optional
sensor noise and JPEG re-compression make the inputs look like real phone photos.

Pure numpy + cv2 on purpose: the benchmarks import this without torch. Every random choice
comes from an explicit ``numpy.random.Generator`` so validation pairs are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "BlurConfig",
    "camera_shake_trajectory",
    "trajectory_to_psf",
    "linear_motion_kernel",
    "random_kernel",
    "apply_kernel",
    "degrade",
    "make_pair",
]


@dataclass
class BlurConfig:
    """Parameters of the degradation pipeline; ranges are sampled uniformly per image."""

    # Odd, so the kernel has a centre pixel and blurring does not shift the image by half a pixel.
    kernel_size: int = 31
    # DeblurGAN mixed some straight-line blur in; it is also what a panning shot looks like.
    linear_fraction: float = 0.2
    # Length of a linear kernel in pixels.
    linear_length: tuple[float, float] = (3.0, 25.0)
    # Path length of a shake trajectory in pixels. The path wanders, so its extent is
    # typically a third of its length: 60 fills a 31 px kernel now and then (scale it with
    # kernel_size). Paths that would not fit are shrunk to fit.
    min_trajectory_length: float = 10.0
    max_trajectory_length: float = 60.0
    # Boracchi & Foi's anxiety term (shake strength, abrupt-turn rate); DeblurGAN's script
    # draws it between 0.001 and 0.01 (with exposures down to 1/1000: nearly sharp pairs);
    # much larger values make the walk jitter in place into a small blob.
    expl: tuple[float, float] = (0.003, 0.01)
    # Fraction of the trajectory the shutter was open for; short exposures give the network
    # mildly blurred inputs too, so it learns not to over-sharpen.
    exposure: tuple[float, float] = (0.5, 1.0)
    # Std of the sensor noise at white, in [0, 1] units; added with noise_probability.
    noise_sigma: tuple[float, float] = (0.0, 0.01)
    noise_probability: float = 0.5
    # JPEG quality range of the re-compression, applied with jpeg_probability.
    jpeg_quality: tuple[int, int] = (60, 95)
    jpeg_probability: float = 0.3


def camera_shake_trajectory(
    rng: np.random.Generator,
    *,
    length: float = 30.0,
    iterations: int = 2000,
    expl: float = 0.005,
) -> np.ndarray:
    """Random camera-shake path (Boracchi & Foi 2012) as complex positions ``x + 1j*y``.

    The path starts at 0, has ``iterations`` samples equally spaced in time and total arc
    length ``length`` pixels (``y`` points down, as image rows do). Each step keeps the
    previous velocity (inertia), adds Gaussian shake and a pull towards the origin
    (centripetal), and with a small probability turns abruptly by about 180 degrees.
    """
    if iterations < 2:
        raise ValueError("a trajectory needs at least 2 samples")
    step = length / (iterations - 1)
    # Per-trajectory personality, drawn like the reference code so the kernel statistics match.
    centripetal = 0.7 * rng.random()
    prob_big_shake = 0.2 * rng.random()
    gaussian_shake = 10.0 * rng.random()
    v = np.exp(2j * np.pi * rng.random()) * step
    # All per-step randomness is drawn up front: fewer generator calls, same determinism.
    turn = rng.random(iterations - 1) < prob_big_shake * expl
    turn_angle = np.pi + (rng.random(iterations - 1) - 0.5)
    noise = rng.standard_normal(iterations - 1) + 1j * rng.standard_normal(iterations - 1)

    x = np.zeros(iterations, dtype=np.complex128)
    for t in range(iterations - 1):
        dv = expl * (gaussian_shake * noise[t] - centripetal * x[t]) * step
        if turn[t]:
            dv += 2 * v * np.exp(1j * turn_angle[t])
        v += dv
        # Constant speed, as in the reference: only the direction wanders, so the arc length
        # is exactly `length` and one number controls how much blur a kernel carries.
        v = v / max(abs(v), 1e-12) * step
        x[t + 1] = x[t] + v
    return x


def _check_kernel_size(kernel_size: int) -> None:
    if kernel_size < 3 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and >= 3, got {kernel_size}")


def trajectory_to_psf(trajectory: np.ndarray, kernel_size: int, exposure: float = 1.0) -> np.ndarray:
    """Rasterise a trajectory into a ``(kernel_size, kernel_size)`` float32 PSF summing to 1.

    ``trajectory`` is complex ``x + 1j*y`` or an ``(N, 2)`` array of ``(x, y)``. With
    ``exposure < 1`` only the first fraction of the path is used (a shorter shutter time).

    The path is translated so its centre of mass lands on the kernel centre: a PSF whose mass
    is off-centre also shifts the image, which a PSNR-trained network would be punished for
    not reproducing. A path too wide for the kernel is scaled down about that centre rather
    than cropped, as cropping would both move the centre and cut the path unphysically.
    """
    _check_kernel_size(kernel_size)
    points = np.asarray(trajectory)
    if np.iscomplexobj(points):
        points = np.stack([points.real, points.imag], axis=-1)
    points = points.astype(np.float64).reshape(-1, 2)
    if not 0.0 < exposure <= 1.0:
        raise ValueError(f"exposure must be in (0, 1], got {exposure}")
    points = points[: max(1, int(np.ceil(exposure * len(points))))]

    half = (kernel_size - 1) / 2
    offsets = points - points.mean(axis=0)
    reach = np.abs(offsets).max()
    if reach > half:
        offsets *= half / reach
    pos = np.clip(offsets + half, 0.0, kernel_size - 1)

    # Bilinear splatting keeps the PSF's centre of mass exactly at the mean of the samples,
    # so the centring above survives rasterisation. Clamping the base to k-2 keeps the +1
    # neighbour in range for points on the last row/column (their weight there is 1).
    base = np.minimum(np.floor(pos), kernel_size - 2).astype(np.intp)
    frac = pos - base
    psf = np.zeros(kernel_size * kernel_size)
    for dy in (0, 1):
        for dx in (0, 1):
            weight = (frac[:, 0] if dx else 1 - frac[:, 0]) * (frac[:, 1] if dy else 1 - frac[:, 1])
            index = (base[:, 1] + dy) * kernel_size + base[:, 0] + dx
            psf += np.bincount(index, weights=weight, minlength=psf.size)
    psf /= psf.sum()
    return psf.reshape(kernel_size, kernel_size).astype(np.float32)


def linear_motion_kernel(length: float, angle_deg: float, kernel_size: int) -> np.ndarray:
    """Anti-aliased straight-line blur of ``length`` pixels, centred, summing to 1.

    ``angle_deg`` is counter-clockwise from the +x axis as seen on screen. The segment is
    sampled densely and splatted bilinearly, so oblique lines have no staircase artefacts.
    """
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    t = np.linspace(-length / 2, length / 2, max(2, int(np.ceil(4 * length)) + 1))
    angle = np.deg2rad(angle_deg)
    return trajectory_to_psf(t * np.exp(-1j * angle), kernel_size)


def random_kernel(rng: np.random.Generator, config: BlurConfig | None = None) -> np.ndarray:
    """Draw one blur kernel: linear with probability ``linear_fraction``, else camera shake."""
    config = config or BlurConfig()
    if rng.random() < config.linear_fraction:
        length = rng.uniform(*config.linear_length)
        return linear_motion_kernel(length, rng.uniform(0.0, 180.0), config.kernel_size)
    trajectory = camera_shake_trajectory(
        rng,
        length=rng.uniform(config.min_trajectory_length, config.max_trajectory_length),
        expl=rng.uniform(*config.expl),
    )
    return trajectory_to_psf(trajectory, config.kernel_size, exposure=rng.uniform(*config.exposure))


def _to_float(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if np.issubdtype(image.dtype, np.floating):
        return image.astype(np.float32)
    raise TypeError(f"expected a uint8 or floating image, got {image.dtype}")


def _from_float(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype == np.uint8:
        return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    return image.astype(dtype)


def apply_kernel(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve an ``HxW`` or ``HxWxC`` image with ``kernel``; same shape and dtype back.

    uint8 images are taken as [0, 255], floats as [0, 1]; the work is done in float32.
    cv2.filter2D correlates, so the kernel is flipped to make this a true convolution: the
    benchmarks hand the same kernel to Wiener and Richardson-Lucy, which assume one.
    Reflected borders avoid the dark frame a zero border would blur in.
    """
    flipped = np.asarray(kernel[::-1, ::-1], dtype=np.float32)
    # Only the kernel's non-zero bounding box, anchored where the full kernel's centre falls:
    # the same sums (to float rounding), but a camera-shake path covers a fraction of its
    # 31x31 box, and the smaller kernel halves filter2D's time — the data loader's largest cost,
    # which is what kept the GPU legs waiting.
    # (filter2D wants the anchor inside the kernel, so the box always includes the centre.)
    rows, cols = np.flatnonzero(flipped.any(axis=1)), np.flatnonzero(flipped.any(axis=0))
    if len(rows) == 0:
        raise ValueError("the blur kernel is all zeros")
    cy, cx = flipped.shape[0] // 2, flipped.shape[1] // 2  # filter2D's default anchor
    top, left = min(int(rows[0]), cy), min(int(cols[0]), cx)
    bottom, right = max(int(rows[-1]), cy), max(int(cols[-1]), cx)
    support = np.ascontiguousarray(flipped[top:bottom + 1, left:right + 1])
    anchor = (cx - left, cy - top)
    work = _to_float(image)
    blurred = cv2.filter2D(work, cv2.CV_32F, support, anchor=anchor, borderType=cv2.BORDER_REFLECT)
    # cv2 drops a trailing channel axis of size 1; put it back.
    return _from_float(blurred.reshape(image.shape), image.dtype)


def _add_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    # Read noise plus shot noise: variance grows with brightness (Poisson-like) on top of a
    # floor, so sigma is the std at white and a quarter of that variance remains in the blacks.
    std = sigma * np.sqrt(0.25 + 0.75 * np.clip(image, 0.0, 1.0))
    noisy = image + std * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    # Channel order is passed through untouched; for RGB input the codec's BGR colour weights
    # only shift the artefact mix slightly, which is harmless as augmentation.
    def roundtrip(plane: np.ndarray) -> np.ndarray:
        ok, buffer = cv2.imencode(".jpg", plane, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED).reshape(plane.shape)

    as_uint8 = _from_float(image, np.dtype(np.uint8))
    if as_uint8.ndim == 2 or as_uint8.shape[2] in (1, 3):
        out = roundtrip(as_uint8)
    else:  # JPEG has no 2- or 4+-channel mode: compress each channel as grey.
        out = np.stack([roundtrip(as_uint8[..., c]) for c in range(as_uint8.shape[2])], axis=-1)
    return out.astype(np.float32) / 255.0


def degrade(
    sharp: np.ndarray, rng: np.random.Generator, config: BlurConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Blur ``sharp`` with a random kernel, then maybe add noise and JPEG re-compression.

    Returns ``(blurred, kernel)``: the blurred image in ``sharp``'s shape and dtype (uint8 in
    [0, 255] or float in [0, 1]) and the float32 kernel that made it, which non-blind
    baselines (Wiener, Richardson-Lucy) need.
    """
    config = config or BlurConfig()
    kernel = random_kernel(rng, config)
    image = apply_kernel(_to_float(sharp), kernel)
    # All four draws happen whatever the probabilities, so changing noise_probability or
    # jpeg_probability alone leaves a seed's sigma and quality (and kernel) as they were.
    use_noise = rng.random() < config.noise_probability
    sigma = rng.uniform(*config.noise_sigma)
    use_jpeg = rng.random() < config.jpeg_probability
    quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1], endpoint=True))
    if use_noise and sigma > 0:
        image = _add_noise(image, sigma, rng)
    if use_jpeg:
        image = _jpeg(image, quality)
    return _from_float(image, sharp.dtype), kernel


def make_pair(
    sharp: np.ndarray, seed: int, config: BlurConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic ``(blurred, sharp)`` pair: the same seed always gives the same blur.

    Equal to ``degrade(sharp, np.random.default_rng(seed), config)[0]`` paired with ``sharp``;
    call that instead when the kernel is needed.
    """
    blurred, _ = degrade(sharp, np.random.default_rng(seed), config)
    return blurred, sharp

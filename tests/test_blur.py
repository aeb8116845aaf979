"""Tests for the synthetic motion-blur generator (deblur.train.blur)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from deblur.train.blur import (
    BlurConfig,
    apply_kernel,
    camera_shake_trajectory,
    degrade,
    linear_motion_kernel,
    make_pair,
    random_kernel,
    trajectory_to_psf,
)

K = 31
CENTRE = (K - 1) / 2


def centre_of_mass(kernel: np.ndarray) -> tuple[float, float]:
    """(x, y) centre of mass of a 2-D array."""
    yy, xx = np.mgrid[: kernel.shape[0], : kernel.shape[1]]
    total = kernel.sum(dtype=np.float64)
    return float((kernel * xx).sum() / total), float((kernel * yy).sum() / total)


def support(kernel: np.ndarray, eps: float = 1e-7) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the rows and columns that carry any weight."""
    return np.nonzero(kernel.sum(axis=1) > eps)[0], np.nonzero(kernel.sum(axis=0) > eps)[0]


def high_frequency_energy(image: np.ndarray) -> float:
    img = image.astype(np.float64)
    return float(np.mean(np.diff(img, axis=0) ** 2) + np.mean(np.diff(img, axis=1) ** 2))


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    return data.camera()[128:320, 160:352]  # 192x192 grey uint8, keeps the tests fast


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()[40:200, 160:320]  # 160x160x3 uint8, the face


# --- kernels ----------------------------------------------------------------------------


@pytest.mark.parametrize("linear_fraction", [0.0, 0.2, 1.0])
def test_random_kernels_are_normalised_non_negative_and_centred(linear_fraction: float) -> None:
    config = BlurConfig(linear_fraction=linear_fraction)
    for seed in range(25):
        kernel = random_kernel(np.random.default_rng(seed), config)
        assert kernel.shape == (K, K)
        assert kernel.dtype == np.float32
        assert kernel.min() >= 0.0
        assert kernel.sum(dtype=np.float64) == pytest.approx(1.0, abs=1e-5)
        cx, cy = centre_of_mass(kernel)
        assert cx == pytest.approx(CENTRE, abs=1e-3)
        assert cy == pytest.approx(CENTRE, abs=1e-3)
        rows, cols = support(kernel)
        # A real blur, not a delta: a few pixels of extent in at least one direction.
        assert max(np.ptp(rows), np.ptp(cols)) >= 2


def test_kernel_size_from_config_is_respected() -> None:
    for seed in range(5):
        kernel = random_kernel(np.random.default_rng(seed), BlurConfig(kernel_size=15))
        assert kernel.shape == (15, 15)
        assert centre_of_mass(kernel) == pytest.approx((7.0, 7.0), abs=1e-3)


@pytest.mark.parametrize("kernel_size", [0, 1, 2, 30])
def test_even_or_tiny_kernel_size_is_rejected(kernel_size: int) -> None:
    with pytest.raises(ValueError):
        linear_motion_kernel(5, 0, kernel_size)


def test_trajectory_has_requested_length_and_samples() -> None:
    trajectory = camera_shake_trajectory(np.random.default_rng(3), length=25.0, iterations=2000)
    assert trajectory.shape == (2000,)
    assert trajectory[0] == 0
    assert np.abs(np.diff(trajectory)).sum() == pytest.approx(25.0, rel=1e-6)


def test_psf_extent_follows_the_trajectory_when_it_fits() -> None:
    for seed in range(10):
        trajectory = camera_shake_trajectory(np.random.default_rng(seed), length=30.0)
        width, height = np.ptp(trajectory.real), np.ptp(trajectory.imag)
        assert max(width, height) < K - 2, "test premise: this path fits the kernel"
        rows, cols = support(trajectory_to_psf(trajectory, K))
        # Bilinear splatting adds at most one pixel on either side of the path.
        assert width <= np.ptp(cols) <= width + 2
        assert height <= np.ptp(rows) <= height + 2


def test_oversized_off_centre_trajectory_is_shrunk_into_the_kernel_and_centred() -> None:
    # An L-shaped path far from the origin and five times wider than the kernel.
    leg = np.linspace(0, 150, 500)
    trajectory = np.concatenate([leg, 150 + 1j * leg[: 100]]) + (400 - 700j)
    psf = trajectory_to_psf(trajectory, K)
    assert psf.shape == (K, K)
    assert psf.sum(dtype=np.float64) == pytest.approx(1.0, abs=1e-5)
    assert centre_of_mass(psf) == pytest.approx((CENTRE, CENTRE), abs=1e-3)
    rows, cols = support(psf)
    assert cols.min() == 0 or cols.max() == K - 1  # scaled to touch the edge, not cropped
    assert np.ptp(rows) >= 3  # the short vertical leg survives the scaling


def test_trajectory_accepts_complex_or_xy_pairs() -> None:
    trajectory = camera_shake_trajectory(np.random.default_rng(1), length=20.0)
    xy = np.stack([trajectory.real, trajectory.imag], axis=-1)
    np.testing.assert_array_equal(trajectory_to_psf(trajectory, K), trajectory_to_psf(xy, K))


def test_partial_exposure_uses_the_first_fraction_of_the_path() -> None:
    trajectory = camera_shake_trajectory(np.random.default_rng(7), length=40.0)
    half = trajectory_to_psf(trajectory, K, exposure=0.5)
    np.testing.assert_array_equal(half, trajectory_to_psf(trajectory[:1000], K))
    assert not np.array_equal(half, trajectory_to_psf(trajectory, K))
    short = trajectory_to_psf(trajectory, K, exposure=0.05)
    assert (short > 1e-7).sum() < (trajectory_to_psf(trajectory, K) > 1e-7).sum()
    assert centre_of_mass(short) == pytest.approx((CENTRE, CENTRE), abs=1e-3)


@pytest.mark.parametrize("length", [2.5, 5.0, 9.0, 14.3, 20.0])
def test_horizontal_linear_kernel_has_extent_of_its_length(length: float) -> None:
    kernel = linear_motion_kernel(length, 0.0, K)
    rows, cols = support(kernel)
    np.testing.assert_array_equal(rows, [int(CENTRE)])  # exactly one row
    # Each anti-aliased end may spill into one extra pixel.
    assert length <= np.ptp(cols) + 1 <= np.ceil(length) + 2
    profile = kernel.sum(axis=0)
    # Flat profile of width L: total mass over peak height measures the length sub-pixel.
    assert profile.sum() / profile.max() == pytest.approx(length, abs=0.5)


def test_vertical_and_oblique_linear_kernels() -> None:
    vertical = linear_motion_kernel(10.0, 90.0, K)
    np.testing.assert_allclose(vertical, linear_motion_kernel(10.0, 0.0, K).T, atol=1e-6)
    oblique = linear_motion_kernel(12.0, 30.0, K)
    assert centre_of_mass(oblique) == pytest.approx((CENTRE, CENTRE), abs=1e-3)
    rows, cols = support(oblique)
    assert np.ptp(cols) == pytest.approx(12.0 * np.cos(np.pi / 6), abs=2.0)
    assert np.ptp(rows) == pytest.approx(12.0 * np.sin(np.pi / 6), abs=2.0)
    # Counter-clockwise on screen: the right end of the line is the upper one.
    yy, xx = np.mgrid[:K, :K]
    assert ((xx - CENTRE) * (yy - CENTRE) * oblique).sum() < 0


def test_zero_length_linear_kernel_is_a_delta() -> None:
    kernel = linear_motion_kernel(0.0, 45.0, K)
    assert kernel[int(CENTRE), int(CENTRE)] == pytest.approx(1.0)


# --- determinism ------------------------------------------------------------------------


def test_kernels_are_deterministic_per_seed_and_differ_across_seeds() -> None:
    config = BlurConfig()
    first = random_kernel(np.random.default_rng(123), config)
    np.testing.assert_array_equal(first, random_kernel(np.random.default_rng(123), config))
    others = [random_kernel(np.random.default_rng(seed), config) for seed in range(124, 130)]
    assert all(not np.allclose(first, other) for other in others)


def test_make_pair_is_deterministic_and_matches_degrade(astronaut: np.ndarray) -> None:
    blurred, sharp = make_pair(astronaut, seed=5)
    again, _ = make_pair(astronaut, seed=5)
    np.testing.assert_array_equal(blurred, again)
    assert sharp is astronaut
    np.testing.assert_array_equal(blurred, degrade(astronaut, np.random.default_rng(5))[0])
    other, _ = make_pair(astronaut, seed=6)
    assert np.abs(other.astype(int) - blurred.astype(int)).mean() > 0.5


# --- applying kernels -------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        data.camera()[:64, :80],
        data.astronaut()[:64, :80],
        data.camera()[:64, :80, None],
        data.astronaut()[:64, :80].astype(np.float32) / 255,
        data.camera()[:64, :80].astype(np.float64) / 255,
    ],
    ids=["grey-u8", "rgb-u8", "grey1-u8", "rgb-f32", "grey-f64"],
)
def test_delta_kernel_is_identity(image: np.ndarray) -> None:
    delta = np.zeros((K, K), np.float32)
    delta[int(CENTRE), int(CENTRE)] = 1.0
    out = apply_kernel(image, delta)
    assert out.shape == image.shape
    assert out.dtype == image.dtype
    if image.dtype == np.uint8:
        np.testing.assert_array_equal(out, image)
    else:
        np.testing.assert_allclose(out, image, atol=1e-6)


def test_apply_kernel_convolves_rather_than_correlates(camera: np.ndarray) -> None:
    # Convolving with a delta two pixels right of centre moves the picture two pixels right;
    # correlation would move it left, and Wiener/Richardson-Lucy would then use the wrong PSF.
    shift = np.zeros((K, K), np.float32)
    shift[int(CENTRE), int(CENTRE) + 2] = 1.0
    out = apply_kernel(camera, shift)
    np.testing.assert_array_equal(out[:, 2:], camera[:, :-2])


@pytest.mark.parametrize("shape", [(31, 31), (15, 15), (8, 10)])
def test_only_the_kernels_support_is_convolved_with_the_same_result(camera: np.ndarray, shape) -> None:
    # apply_kernel crops the kernel to its non-zero box and re-anchors it: compared with the
    # whole kernel through filter2D, including where the support sits off-centre, at a corner
    # and in even-sized kernels (whose centre filter2D puts at size // 2).
    import cv2

    rng = np.random.default_rng(3)
    image = camera.astype(np.float32) / 255
    for case in range(4):
        kernel = np.zeros(shape, np.float32)
        if case == 0:
            kernel[:3, :2] = rng.random((3, 2))  # a corner
        elif case == 1:
            kernel[-1, -1] = 1.0
        else:
            rows, cols = sorted(rng.integers(0, shape[0], 2)), sorted(rng.integers(0, shape[1], 2))
            kernel[rows[0]:rows[1] + 1, cols[0]:cols[1] + 1] = rng.random((rows[1] - rows[0] + 1, cols[1] - cols[0] + 1))
        kernel /= kernel.sum()
        whole = cv2.filter2D(image, cv2.CV_32F, np.ascontiguousarray(kernel[::-1, ::-1]), borderType=cv2.BORDER_REFLECT)
        np.testing.assert_allclose(apply_kernel(image, kernel), whole, atol=2e-6)
    with pytest.raises(ValueError, match="all zeros"):
        apply_kernel(image, np.zeros(shape, np.float32))


def test_blurring_does_not_shift_the_image() -> None:
    dot = np.zeros((101, 101), np.float32)
    dot[50, 50] = 1.0
    for seed in range(5):
        kernel = random_kernel(np.random.default_rng(seed), BlurConfig(linear_fraction=0.0))
        assert centre_of_mass(apply_kernel(dot, kernel)) == pytest.approx((50.0, 50.0), abs=1e-3)


def test_blur_removes_high_frequency_energy(camera: np.ndarray) -> None:
    sharp_energy = high_frequency_energy(camera)
    kernels = [linear_motion_kernel(9.0, 20.0, K)]
    kernels += [random_kernel(np.random.default_rng(seed), BlurConfig(linear_fraction=0.0)) for seed in range(3)]
    for kernel in kernels:
        assert high_frequency_energy(apply_kernel(camera, kernel)) < 0.5 * sharp_energy


# --- the full pipeline ------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        data.camera()[200:296, 200:328],
        data.astronaut()[40:136, 180:308],
        data.camera()[200:296, 200:328].astype(np.float32) / 255,
        data.astronaut()[40:136, 180:308].astype(np.float32) / 255,
        data.astronaut()[40:136, 180:308].astype(np.float64) / 255,
    ],
    ids=["grey-u8", "rgb-u8", "grey-f32", "rgb-f32", "rgb-f64"],
)
def test_degrade_keeps_shape_and_dtype(image: np.ndarray) -> None:
    # Textured crops (flat sky would barely change under blur, weakening the last check).
    config = BlurConfig(noise_probability=1.0, jpeg_probability=1.0)
    blurred, kernel = degrade(image, np.random.default_rng(0), config)
    assert blurred.shape == image.shape
    assert blurred.dtype == image.dtype
    assert kernel.shape == (K, K)
    if image.dtype != np.uint8:
        assert 0.0 <= blurred.min() and blurred.max() <= 1.0
    scale = 255.0 if image.dtype == np.uint8 else 1.0
    assert np.abs(blurred.astype(np.float64) - image).mean() / scale > 0.005


def test_clean_degrade_is_exactly_the_returned_kernel(astronaut: np.ndarray) -> None:
    # The benchmarks trust the returned kernel; without noise/JPEG it must reproduce the blur.
    config = BlurConfig(noise_probability=0.0, jpeg_probability=0.0)
    for seed in range(3):
        blurred, kernel = degrade(astronaut, np.random.default_rng(seed), config)
        np.testing.assert_array_equal(blurred, apply_kernel(astronaut, kernel))


def test_noise_option_adds_noise_of_the_requested_strength(camera: np.ndarray) -> None:
    sharp = camera.astype(np.float32) / 255
    clean_cfg = BlurConfig(noise_probability=0.0, jpeg_probability=0.0)
    noisy_cfg = BlurConfig(noise_sigma=(0.05, 0.05), noise_probability=1.0, jpeg_probability=0.0)
    clean, clean_kernel = degrade(sharp, np.random.default_rng(9), clean_cfg)
    noisy, noisy_kernel = degrade(sharp, np.random.default_rng(9), noisy_cfg)
    np.testing.assert_array_equal(clean_kernel, noisy_kernel)  # only the noise differs
    residual = (noisy - clean)[(clean > 0.1) & (clean < 0.9)]  # away from clipping
    # sigma is the std at white and half of it in the blacks, so it lands in between.
    assert 0.025 < residual.std() < 0.05
    assert abs(residual.mean()) < 0.005


def test_jpeg_option_changes_the_output(astronaut: np.ndarray) -> None:
    clean_cfg = BlurConfig(noise_probability=0.0, jpeg_probability=0.0)
    jpeg_cfg = BlurConfig(noise_probability=0.0, jpeg_probability=1.0, jpeg_quality=(10, 10))
    clean, _ = degrade(astronaut, np.random.default_rng(4), clean_cfg)
    jpeg, _ = degrade(astronaut, np.random.default_rng(4), jpeg_cfg)
    difference = np.abs(jpeg.astype(int) - clean.astype(int))
    assert difference.mean() > 1.0
    # Better quality, smaller error: the quality setting really reaches the encoder.
    good_cfg = BlurConfig(noise_probability=0.0, jpeg_probability=1.0, jpeg_quality=(95, 95))
    good, _ = degrade(astronaut, np.random.default_rng(4), good_cfg)
    assert 0 < np.abs(good.astype(int) - clean.astype(int)).mean() < difference.mean()

"""Quality metrics against hand-computed values, and the deconvolution baselines on a real photo."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from skimage import data

from deblur.benchmarks.baselines import BASELINES, identity, richardson_lucy, wiener
from deblur.benchmarks.metrics import (
    DEFAULT_CROP_BORDER,
    PSNR_CAP_DB,
    Metrics,
    measure,
    mean_psnr,
    psnr,
    ssim,
    to_y,
)
from deblur.train.blur import BlurConfig, apply_kernel, linear_motion_kernel, random_kernel


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    # A real photo (BGR as OpenCV would give it), small so the deconvolutions stay fast.
    return np.ascontiguousarray(data.astronaut()[30:190, 150:310, ::-1])


@pytest.fixture()
def noise_image() -> np.ndarray:
    return np.random.default_rng(0).integers(10, 240, size=(40, 48, 3), dtype=np.uint8)


def test_psnr_of_constant_offset_matches_hand_value(noise_image):
    # Every value off by 5: MSE = 25, PSNR = 10 log10(255^2 / 25) = 20 log10(51).
    shifted = noise_image + np.uint8(5)
    assert psnr(shifted, noise_image) == pytest.approx(20 * math.log10(51), abs=1e-9)
    assert psnr(noise_image[..., 0], shifted[..., 0]) == pytest.approx(34.1514, abs=1e-4)


def test_psnr_follows_mse_formula_without_uint8_wraparound():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    b = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255.0**2 / mse), abs=1e-9)
    assert psnr(a, b) == pytest.approx(psnr(b, a), abs=1e-12)


def test_identical_images_give_inf_psnr_and_unit_ssim(noise_image):
    assert psnr(noise_image, noise_image.copy()) == math.inf
    assert ssim(noise_image, noise_image.copy()) == pytest.approx(1.0, abs=1e-12)
    assert measure(noise_image, noise_image) == Metrics(psnr=math.inf, ssim=pytest.approx(1.0))


def test_mean_psnr_caps_inf_but_keeps_finite_values():
    assert mean_psnr([30.0, 40.0]) == pytest.approx(35.0)
    assert mean_psnr([math.inf, 20.0]) == pytest.approx((PSNR_CAP_DB + 20.0) / 2)
    with pytest.raises(ValueError):
        mean_psnr([])


def test_ssim_of_constant_images_is_the_luminance_term():
    # No variance: SSIM = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1), C1 = (0.01 * 255)^2.
    a = np.full((32, 32), 100, np.uint8)
    b = np.full((32, 32), 110, np.uint8)
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 110 + c1) / (100**2 + 110**2 + c1)
    assert ssim(a, b) == pytest.approx(expected, abs=1e-9)
    assert ssim(np.dstack([a] * 3), np.dstack([b] * 3)) == pytest.approx(expected, abs=1e-9)


def test_ssim_of_negated_photo_is_negative_and_blur_lowers_it(photo):
    assert ssim(255 - photo, photo) < 0.0
    blurred = apply_kernel(photo, linear_motion_kernel(9, 0.0, 15))
    assert 0.3 < ssim(blurred, photo) < 0.95


def test_crop_border_removes_exactly_the_border(noise_image):
    damaged = noise_image.copy()
    damaged[:3] = 0
    damaged[:, -3:] = 255
    assert psnr(damaged, noise_image) < 20
    assert psnr(damaged, noise_image, crop_border=3) == math.inf
    assert ssim(damaged, noise_image, crop_border=3) == pytest.approx(1.0)
    # One pixel less and the damage is back in view.
    assert psnr(damaged, noise_image, crop_border=2) < 30
    with pytest.raises(ValueError):
        psnr(damaged, noise_image, crop_border=20)


def test_grey_and_replicated_colour_agree(noise_image):
    grey = noise_image[..., 1]
    other = np.random.default_rng(5).integers(0, 256, size=grey.shape, dtype=np.uint8)
    colour, other_colour = np.dstack([grey] * 3), np.dstack([other] * 3)
    assert psnr(colour, other_colour) == pytest.approx(psnr(grey, other), abs=1e-9)
    assert ssim(colour, other_colour) == pytest.approx(ssim(grey, other), abs=1e-9)


def test_y_channel_uses_bt601_studio_range(noise_image):
    # For grey BGR pixels the three weights sum to 219/255: an offset of 5 becomes 5*219/255.
    grey = np.dstack([noise_image[..., 0]] * 3)
    assert to_y(np.zeros((1, 1, 3), np.uint8))[0, 0] == pytest.approx(16.0)
    assert to_y(np.full((1, 1, 3), 255, np.uint8))[0, 0] == pytest.approx(235.0)
    # Weights follow BGR order: pure blue is the darkest primary.
    assert to_y(np.array([[[255, 0, 0]]], np.uint8))[0, 0] == pytest.approx(16 + 24.966)
    expected = 20 * math.log10(255 / (5 * 219 / 255))
    assert psnr(grey + np.uint8(5), grey, on="y") == pytest.approx(expected, abs=1e-9)


def test_metrics_reject_ambiguous_inputs(noise_image):
    with pytest.raises(TypeError):
        psnr(noise_image.astype(np.float32) / 255, noise_image)
    with pytest.raises(ValueError):
        ssim(noise_image[:-1], noise_image)
    with pytest.raises(ValueError):
        psnr(noise_image, noise_image, on="lab")


@pytest.fixture(scope="module")
def motion_blurred(photo) -> tuple[np.ndarray, np.ndarray]:
    kernel = linear_motion_kernel(15.0, 30.0, 31)
    return apply_kernel(photo, kernel), kernel


@pytest.mark.parametrize("name", ["wiener", "richardson_lucy"])
def test_baselines_beat_identity_given_the_true_kernel(photo, motion_blurred, name):
    blurred, kernel = motion_blurred
    restored = BASELINES[name](blurred, kernel)
    assert restored.shape == photo.shape and restored.dtype == np.uint8
    floor = psnr(identity(blurred, kernel), photo, crop_border=DEFAULT_CROP_BORDER)
    gain = psnr(restored, photo, crop_border=DEFAULT_CROP_BORDER) - floor
    assert gain > 3.0, f"{name} gained only {gain:.2f} dB over the blurred input"
    ssim_gain = ssim(restored, photo, crop_border=DEFAULT_CROP_BORDER) - ssim(
        blurred, photo, crop_border=DEFAULT_CROP_BORDER
    )
    assert ssim_gain > 0.1


def test_identity_returns_the_input_unchanged(motion_blurred):
    blurred, kernel = motion_blurred
    out = identity(blurred, kernel)
    assert out is not blurred and np.array_equal(out, blurred)
    assert set(BASELINES) == {"identity", "wiener", "richardson_lucy"}


def test_baselines_keep_grey_shape_and_dtype(photo):
    grey = np.ascontiguousarray(photo[..., 1])
    kernel = linear_motion_kernel(9.0, 100.0, 15)
    blurred = apply_kernel(grey, kernel)
    for fn in BASELINES.values():
        out = fn(blurred, kernel)
        assert out.shape == grey.shape and out.dtype == np.uint8
    assert psnr(wiener(blurred, kernel), grey, crop_border=7) > psnr(blurred, grey, crop_border=7) + 2


def test_kernel_convention_matches_the_blur_generator(photo):
    # A camera-shake PSF is not point-symmetric; handing Wiener/RL the 180-degree rotated
    # kernel must do clearly worse, which catches a correlation-vs-convolution mix-up.
    shake_only = BlurConfig(linear_fraction=0.0, min_trajectory_length=40.0)
    kernel = random_kernel(np.random.default_rng(3), shake_only)
    assert not np.allclose(kernel, kernel[::-1, ::-1], atol=1e-3)
    blurred = apply_kernel(photo, kernel)
    rotated = np.ascontiguousarray(kernel[::-1, ::-1])
    for fn in (wiener, lambda b, k: richardson_lucy(b, k, num_iter=30)):
        right = psnr(fn(blurred, kernel), photo, crop_border=DEFAULT_CROP_BORDER)
        wrong = psnr(fn(blurred, rotated), photo, crop_border=DEFAULT_CROP_BORDER)
        assert right > wrong + 1.0


def test_reflective_padding_beats_periodic_boundaries(photo, motion_blurred):
    blurred, kernel = motion_blurred
    # Score the whole frame: the boundary is exactly where the modes differ.
    scores = {b: psnr(wiener(blurred, kernel, boundary=b), photo) for b in ("none", "reflect", "taper")}
    assert scores["reflect"] > scores["none"] + 1.0
    # The taper removes the jump at the FFT's periodic wrap that reflection alone leaves.
    assert scores["taper"] > scores["reflect"] + 1.0
    # Richardson-Lucy's zero border darkens the frame edge unless the image is padded.
    rl = {
        b: psnr(richardson_lucy(blurred, kernel, num_iter=30, boundary=b), photo)
        for b in ("none", "reflect")
    }
    assert rl["reflect"] > rl["none"] + 3.0


def test_benchmark_modules_do_not_import_torch():
    code = (
        "import sys, deblur.benchmarks.metrics, deblur.benchmarks.baselines,"
        " deblur.benchmarks.tune_baselines;"
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_every_timed_call_follows_an_untimed_call_of_the_same_variant():
    # Otherwise the first call after another session pays for its spinning threads, and in a
    # fixed cyclic order always the same variant (the runtime's overhead read 1.5x, not 1.02x).
    from deblur.benchmarks.latency import time_interleaved

    calls: list[str] = []
    timed = time_interleaved({n: (lambda n=n: calls.append(n)) for n in "abc"}, warmup=1, runs=4)
    assert {n: len(t) for n, t in timed.items()} == {"a": 4, "b": 4, "c": 4}
    body = calls[3:]  # after one warm-up call each
    assert len(body) == 2 * 12 and all(body[i] == body[i + 1] for i in range(0, len(body), 2))

"""The model shipped with the runtime: loads with no arguments, is complete, and deblurs."""

import numpy as np
import pytest

from deblur.runtime import Deblurrer, default_model_path
from deblur.runtime.model_info import ModelInfo


@pytest.fixture(scope="module")
def deblur():
    return Deblurrer(provider="cpu")


def test_default_model_loads_with_no_arguments(deblur):
    assert deblur.model_path == default_model_path()
    assert deblur.model_path.stat().st_size < 5_000_000  # "a few MB" at most: FP16 weight storage


def test_default_model_metadata_is_complete(deblur):
    info = deblur.info
    assert info.has_metadata
    for name in ("arch", "receptive_field", "source_sha256", "train_step", "gflops_per_megapixel",
                 "toolkit_version"):
        assert getattr(info, name), name
    assert info.arch == "resnet_generator" and set(info.arch_args) == {"ngf", "n_blocks", "dropout"}
    assert info.input_range == (-1.0, 1.0) and info.channel_order == "RGB" and info.size_multiple == 4
    # FP32 compute (FP16 is no faster on CPUs), FP16 in the file (half the size).
    assert info.precision == "fp32" and info.weight_storage == "fp16"
    assert info.receptive_field > 50 and info.tile_context >= info.receptive_field // 2
    assert info.train_step >= 117000
    assert info != ModelInfo()


def test_default_model_restores_synthetic_camera_shake(deblur):
    import cv2

    from deblur.benchmarks.metrics import psnr
    from deblur.train.blur import BlurConfig, degrade

    # The bundled photo is not in the training split (CBSD68, Sun_Hays80, Urban100).
    photo = cv2.imread(str(default_model_path().parent.parent / "assets" / "astronaut.jpg"))
    gains, ensemble_gains = [], []
    ensemble = Deblurrer(provider="cpu", self_ensemble=4)
    for seed in range(4):
        blurred, _ = degrade(photo, np.random.default_rng(seed), BlurConfig())
        before = psnr(blurred, photo, crop_border=15)
        gains.append(psnr(deblur(blurred), photo, crop_border=15) - before)
        ensemble_gains.append(psnr(ensemble(blurred), photo, crop_border=15) - before)
    # Self-ensemble over 4 flips/rotations: measured +0.22 to +0.35 dB more on these four.
    assert min(np.subtract(ensemble_gains, gains)) > 0.1, (gains, ensemble_gains)
    # Measured +4.49 to +4.81 dB (mean 4.59) for the shipped model (ngf 32, grown from the
    # ngf-16 one and trained 18414 more GPU steps); the ngf-16 model it was grown from gained
    # +3.63 to +4.18 (mean 3.90), its step 75000 +2.73 to +3.04, step 9000 +1.1 to +1.3.
    # A margin below the shipped model's figures, above the one before it.
    assert min(gains) > 4.2 and np.mean(gains) > 4.3, gains


def test_the_shipped_weights_are_the_ones_exported(deblur):
    # train/recipes/default_model.pt is what runtime/models/default.onnx was exported from:
    # the PyTorch side of the benchmarks (--torch) and further training start from it.
    import hashlib
    from pathlib import Path

    weights = Path(__file__).resolve().parents[1] / "train" / "recipes" / "default_model.pt"
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == deblur.info.source_sha256


def test_providers_get_their_shipped_model():
    assert default_model_path().name == default_model_path("CPUExecutionProvider").name == "default.onnx"
    for gpu in ("CUDAExecutionProvider", "cuda", " CUDA "):
        assert default_model_path(gpu).name == "default_gpu.onnx"
    # The GPU model is timed on CUDA only; older TensorRTs leave its uint8 nodes to the CPU.
    for other in ("TensorrtExecutionProvider", "tensorrt", "CoreMLExecutionProvider", "openvino"):
        assert default_model_path(other).name == "default.onnx"


def test_a_build_without_the_gpu_file_runs_the_fp32_one_on_cuda(monkeypatch, tmp_path):
    from deblur.runtime import deblurrer as mod

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "default.onnx").symlink_to(default_model_path())
    monkeypatch.setattr(mod.resources, "files", lambda package: tmp_path)
    assert default_model_path("cuda") == tmp_path / "models" / "default.onnx"


@pytest.fixture
def cuda_on_cpu(monkeypatch):
    """``auto`` resolves to CUDA (as on a GPU machine) and the sessions are made on the CPU:
    enough to see which model the constructor picks and where each image goes."""
    from deblur.runtime import deblurrer as mod
    from deblur.runtime import providers
    from deblur.runtime.providers import ProviderChoice

    real = mod.create_session
    monkeypatch.setattr(providers, "available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(mod, "create_session",
                        lambda path, choice, **k: real(path, ProviderChoice("CPUExecutionProvider", {}), **k))


def test_on_cuda_the_gpu_export_runs_8_bit_images_and_the_fp32_one_deeper_ones(cuda_on_cpu, deblur, caplog,
                                                                               tmp_path):
    gpu = Deblurrer(tile=0)
    assert gpu.choice.name == "CUDAExecutionProvider"
    assert gpu.model_path == default_model_path("cuda") and gpu.io_dtype == np.uint8
    rng = np.random.default_rng(0)
    image8 = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    assert np.array_equal(gpu(image8), Deblurrer(default_model_path("cuda"), "cpu", tile=0)(image8))
    assert gpu._deep is None  # opened only for a deeper image
    from deblur.runtime import InputError

    with pytest.raises(InputError, match="int32 images are not supported"):
        gpu(np.zeros((8, 8, 3), np.int32))
    assert gpu._deep is None  # not for a dtype nothing takes
    for deep in (rng.integers(0, 65536, (40, 48, 3), dtype=np.uint16), rng.random((40, 48), dtype=np.float32)):
        with caplog.at_level("WARNING"):
            got = gpu(deep)
        assert np.array_equal(got, deblur(deep)) and got.dtype == deep.dtype  # the FP32 model: depth kept
        assert "8-bit precision" not in caplog.text
    assert gpu._deep.model_path == default_model_path() and gpu._deep.choice.name == "CUDAExecutionProvider"
    # An explicit model is the caller's choice: no twin, and the 8-bit warning instead.
    chosen = Deblurrer(default_model_path("cuda"), tile=0)
    with caplog.at_level("WARNING"):
        chosen(np.full((32, 32, 3), 30000, np.uint16))
    assert chosen._deep_args is None and "deblurred at 8-bit precision" in caplog.text
    assert Deblurrer(default_model_path(), tile=0).io_dtype == np.float32
    # A user's own float export on a GPU: told the way to the GPU speed.
    own = tmp_path / "mine.onnx"
    own.write_bytes(default_model_path().read_bytes())
    with caplog.at_level("INFO"):
        Deblurrer(own, tile=0)
    assert "mine.onnx takes float arrays" in caplog.text and "--uint8-io converts in the graph" in caplog.text


def test_the_gpu_export_is_the_same_model_in_fp16_with_uint8_io(deblur):
    import cv2

    from deblur.benchmarks.metrics import psnr

    path = default_model_path("CUDAExecutionProvider")
    assert path.stat().st_size < 5_000_000
    gpu = Deblurrer(path, "cpu", tile=0)
    info = gpu.info
    assert info.source_sha256 == deblur.info.source_sha256 and info.train_step == deblur.info.train_step
    assert info.precision == "fp16" and gpu.io_dtype == np.uint8
    assert (info.arch, info.arch_args, info.receptive_field) == (deblur.info.arch, deblur.info.arch_args,
                                                                 deblur.info.receptive_field)
    photo = cv2.imread(str(default_model_path().parent.parent / "assets" / "astronaut.jpg"))[:256, :320]
    # FP16 compute and in-graph rounding: 69 dB from the FP32 model's result, 1 grey level at most.
    got, want = gpu(photo), deblur(photo)
    assert psnr(got, want) > 60 and np.abs(got.astype(int) - want).max() <= 1


def test_on_cuda_a_big_endian_16_bit_image_goes_the_deep_route_too(cuda_on_cpu, deblur):
    # '>u2' is not np.uint16: it went through the 8-bit GPU model (442/65535 off, and a warning).
    gpu = Deblurrer(tile=0)
    image = np.random.default_rng(1).integers(0, 65536, (24, 32, 3)).astype(np.uint16)
    assert np.array_equal(gpu(image.astype(">u2")), deblur(image))
    assert gpu._deep is not None

"""``deblur-export --uint8-io``: the pixel conversions move into the graph, results stay put."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

pytest.importorskip("torch")

from conftest import run_cli  # noqa: E402
from deblur.export.exporter import export_checkpoint  # noqa: E402
from deblur.runtime import Deblurrer  # noqa: E402
from deblur.runtime.errors import ModelError  # noqa: E402
from deblur.runtime.model_info import ModelInfo  # noqa: E402


@pytest.fixture(scope="module")
def pixel_onnx(tiny_checkpoint, tmp_path_factory):
    path = tmp_path_factory.mktemp("u8") / "tiny_u8.onnx"
    report = export_checkpoint(tiny_checkpoint, path, uint8_io=True)
    assert report.pixel_io_levels is not None and report.pixel_io_levels <= 1
    assert "grey level" in report.summary()
    return path


def _photo(shape, seed=0):
    # Smooth structure plus noise: a model output with real range, not a flat field.
    rng = np.random.default_rng(seed)
    h, w = shape[:2]
    ramp = np.add.outer(np.linspace(0, 180, h), np.linspace(0, 60, w))[:, :, None]
    return np.clip(ramp + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)


def test_graph_takes_and_gives_uint8_nhwc_and_says_so(pixel_onnx):
    session = ort.InferenceSession(str(pixel_onnx), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert inp.type == out.type == "tensor(uint8)"
    assert inp.shape == out.shape == ["batch", "height", "width", 3]
    info = ModelInfo.from_metadata({p.key: p.value for p in onnx.load(pixel_onnx).metadata_props})
    assert (info.io_dtype, info.io_layout, info.channel_order, info.input_range) == ("uint8", "NHWC", "BGR", (0.0, 255.0))
    assert info.precision == "fp32" and info.arch == "resnet_generator"
    y = session.run(None, {inp.name: np.stack([_photo((36, 52)), _photo((36, 52), seed=1)])})[0]
    assert y.shape == (2, 36, 52, 3) and y.dtype == np.uint8


@pytest.mark.parametrize("tile", [0, 96])
@pytest.mark.parametrize("kind", ["bgr", "grey", "bgra"])
def test_runtime_matches_the_float_model_within_one_grey_level(tiny_onnx, pixel_onnx, tile, kind):
    image = _photo((150, 203, 3))  # not multiples of 4: padding and cropping run too
    if kind == "grey":
        image = image[:, :, 1]
    elif kind == "bgra":
        image = np.dstack([image, np.arange(150 * 203).reshape(150, 203).astype(np.uint8)])
    pixels = Deblurrer(pixel_onnx, "cpu", tile=tile, overlap=16, blend=8)
    floats = Deblurrer(tiny_onnx, "cpu", tile=tile, overlap=16, blend=8)
    assert pixels.io_dtype == np.uint8
    got, want = pixels(image), floats(image)
    assert got.shape == want.shape == image.shape and got.dtype == np.uint8
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert np.abs(got.astype(int) - image.astype(int)).max() > 5  # the model did something
    if kind == "bgra":
        assert np.array_equal(got[:, :, 3], image[:, :, 3])


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_16_bit_and_float_callers_get_their_dtype_back_at_8_bit_precision(tiny_onnx, pixel_onnx, dtype):
    image8 = _photo((64, 80, 3), seed=1)
    scale = 257 if dtype == np.uint16 else 1 / 255
    image = (image8.astype(np.float64) * scale).astype(dtype)
    got = Deblurrer(pixel_onnx, "cpu", tile=0)(image)
    want = Deblurrer(tiny_onnx, "cpu", tile=0)(image8)
    assert got.dtype == dtype and got.shape == image.shape
    assert np.abs(got.astype(np.float64) / scale - want).max() <= 1 + 1e-3


def test_without_metadata_a_uint8_model_is_refused_with_the_fix(pixel_onnx, tmp_path):
    proto = onnx.load(pixel_onnx)
    del proto.metadata_props[:]
    onnx.save(proto, tmp_path / "bare.onnx")
    with pytest.raises(ModelError, match="re-export with deblur-export"):
        Deblurrer(tmp_path / "bare.onnx", "cpu")


def test_layout_must_match_the_io_dtype():
    with pytest.raises(ValueError, match="uint8 is NHWC"):
        ModelInfo(io_dtype="uint8", io_layout="NCHW").validate()
    with pytest.raises(ValueError, match="io_dtype"):
        ModelInfo(io_dtype="int16").validate()


def test_cli_refuses_uint8_io_with_fp16_io(tiny_checkpoint, tmp_path):
    out = tmp_path / "x.onnx"
    result = run_cli("deblur-export", str(tiny_checkpoint), str(out), "--fp16", "--fp16-io", "--uint8-io")
    assert result.returncode == 2 and "choose one of --fp16-io and --uint8-io" in result.stderr
    assert not out.exists()


def test_fp16_model_with_uint8_io_exports_and_runs(tiny_checkpoint, tiny_onnx, tmp_path):
    report = export_checkpoint(tiny_checkpoint, tmp_path / "h.onnx", fp16=True, uint8_io=True)
    assert report.info.precision == "fp16" and report.info.io_dtype == "uint8" and report.pixel_io_levels <= 1
    image = _photo((48, 64, 3), seed=2)
    got = Deblurrer(tmp_path / "h.onnx", "cpu", tile=0)(image)
    assert np.abs(got.astype(int) - Deblurrer(tiny_onnx, "cpu", tile=0)(image).astype(int)).max() <= 3

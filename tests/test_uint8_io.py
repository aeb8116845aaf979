"""``deblur-export --uint8-io``: the pixel conversions move into the graph, results stay put."""

from pathlib import Path

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
    levels, differing = report.pixel_io
    assert levels <= 1 and differing < 1e-3
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


def _compare(got, want):
    """(max |difference|, fraction of values that differ, mean signed difference)."""
    diff = got.astype(np.float64) - want.astype(np.float64)
    return np.abs(diff).max(), np.count_nonzero(diff) / diff.size, diff.mean()


@pytest.mark.parametrize("tile,tile_batch", [(0, 1), (96, 1), (96, 3)])
@pytest.mark.parametrize("kind", ["bgr", "grey", "bgra"])
def test_runtime_matches_the_float_model(tiny_onnx, pixel_onnx, tile, tile_batch, kind):
    image = _photo((150, 203, 3))  # not multiples of 4: padding and cropping run too
    if kind == "grey":
        image = image[:, :, 1]
    elif kind == "bgra":
        image = np.dstack([image, np.arange(150 * 203).reshape(150, 203).astype(np.uint8)])
    settings = dict(tile=tile, overlap=16, blend=8, tile_batch=tile_batch)
    pixels = Deblurrer(pixel_onnx, "cpu", **settings)
    floats = Deblurrer(tiny_onnx, "cpu", **settings)
    assert pixels.io_dtype == np.uint8
    got, want = pixels(image), floats(image)
    assert got.shape == want.shape == image.shape and got.dtype == np.uint8
    worst, differing, bias = _compare(got, want)
    # Whole images: the same float32 arithmetic, rounded the same way (ties aside). Tiles are
    # rounded to pixels before they are blended, so blended values may land one level off,
    # but without a bias (a truncating graph would be ~-0.5 here and still within one level).
    assert worst <= 1 and abs(bias) < 0.02
    if tile == 0 and kind != "grey":  # grey: cvtColor rounds after the mix, here before it
        assert differing < 1e-3
    assert np.abs(got.astype(int) - image.astype(int)).max() > 5  # the model did something
    if kind == "bgra":
        assert np.array_equal(got[:, :, 3], image[:, :, 3])


@pytest.mark.parametrize("tile", [0, 48])
@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_16_bit_and_float_callers_get_their_dtype_back_at_8_bit_precision(tiny_onnx, pixel_onnx, dtype, tile,
                                                                           caplog):
    image8 = _photo((64, 80, 3), seed=1)
    scale = 257 if dtype == np.uint16 else 1 / 255
    image = (image8.astype(np.float64) * scale).astype(dtype)
    pixels = Deblurrer(pixel_onnx, "cpu", tile=tile, overlap=8, blend=4)
    with caplog.at_level("WARNING"):
        got = pixels(image)
        pixels(image)
    assert caplog.text.count("8-bit precision") == 1  # once per Deblurrer, not per image
    want = Deblurrer(tiny_onnx, "cpu", tile=tile, overlap=8, blend=4)(image8)
    assert got.dtype == dtype and got.shape == image.shape
    assert np.abs(got.astype(np.float64) / scale - want).max() <= 1 + 1e-3


def test_without_metadata_a_uint8_model_is_refused_with_the_fix(pixel_onnx, tmp_path):
    proto = onnx.load(pixel_onnx)
    del proto.metadata_props[:]
    onnx.save(proto, tmp_path / "bare.onnx")
    with pytest.raises(ModelError, match="re-export with deblur-export"):
        Deblurrer(tmp_path / "bare.onnx", "cpu")


def test_layout_and_range_must_match_the_io_dtype():
    with pytest.raises(ValueError, match="uint8 is NHWC"):
        ModelInfo(io_dtype="uint8", io_layout="NCHW").validate()
    with pytest.raises(ValueError, match="io_dtype"):
        ModelInfo(io_dtype="int16").validate()
    with pytest.raises(ValueError, match=r"input_range must be \[0, 255\]"):
        ModelInfo(io_dtype="uint8", io_layout="NHWC", input_range=(0.0, 1.0)).validate()
    ModelInfo(io_dtype="uint8", io_layout="NHWC", input_range=(0.0, 255.0), channel_order="BGR").validate()


def test_float_model_with_a_half_output_still_runs(tiny_onnx, tmp_path):
    # Refusing uint8/float mixes must not refuse float32-in, float16-out graphs (ran before).
    from onnx import TensorProto, helper

    proto = onnx.load(tiny_onnx)
    out = proto.graph.output[0]
    proto.graph.node.append(helper.make_node("Cast", [out.name], ["half_out"], to=TensorProto.FLOAT16))
    proto.graph.output.remove(out)
    proto.graph.output.append(helper.make_tensor_value_info("half_out", TensorProto.FLOAT16, None))
    onnx.save(proto, tmp_path / "half_out.onnx")
    image = _photo((40, 48, 3))
    got = Deblurrer(tmp_path / "half_out.onnx", "cpu", tile=0)(image)
    assert np.abs(got.astype(int) - Deblurrer(tiny_onnx, "cpu", tile=0)(image).astype(int)).max() <= 2


def test_cli_refuses_uint8_io_with_fp16_io(tiny_checkpoint, tmp_path):
    out = tmp_path / "x.onnx"
    result = run_cli("deblur-export", str(tiny_checkpoint), str(out), "--fp16", "--fp16-io", "--uint8-io")
    assert result.returncode == 2 and "choose one of --fp16-io and --uint8-io" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_fp16_and_int8_models_with_uint8_io_match_their_float_io_twins(tiny_checkpoint, tmp_path, precision):
    flags = {precision: True}
    report = export_checkpoint(tiny_checkpoint, tmp_path / "p.onnx", uint8_io=True, **flags)
    levels, differing = report.pixel_io
    assert report.info.precision == precision and report.info.io_dtype == "uint8"
    assert levels <= 1 and differing < 1e-3
    export_checkpoint(tiny_checkpoint, tmp_path / "f.onnx", **flags)
    image = _photo((48, 64, 3), seed=2)
    worst, differing, _ = _compare(Deblurrer(tmp_path / "p.onnx", "cpu", tile=0)(image),
                                   Deblurrer(tmp_path / "f.onnx", "cpu", tile=0)(image))
    assert worst <= 1 and differing < 1e-3


def test_a_truncating_graph_fails_the_export_check(tiny_checkpoint, tmp_path, monkeypatch):
    # The check must see a wrong rounding step, which stays within one grey level.
    from deblur.export import exporter, to_onnx

    def truncating(proto, **kwargs):
        wrapped = to_onnx.to_uint8_io(proto, **kwargs)
        rounding = next(n for n in wrapped.graph.node if n.op_type == "Round")
        rounding.op_type = "Floor"
        return wrapped

    monkeypatch.setattr(exporter, "to_uint8_io", truncating)
    with pytest.raises(exporter.ExportError, match="differs from the float one"):
        export_checkpoint(tiny_checkpoint, tmp_path / "t.onnx", uint8_io=True)
    assert not (tmp_path / "t.onnx").exists()


def test_latency_benchmark_leaves_uint8_models_out_of_the_torch_ratio(tiny_checkpoint, tiny_onnx, pixel_onnx,
                                                                       tmp_path):
    result = run_cli("deblur-bench", "latency", "-m", str(tiny_onnx), "-m", str(pixel_onnx), "--torch",
                     str(tiny_checkpoint), "-s", "64x48", "-n", "1", "--warmup", "0", "--json", str(tmp_path / "l.json"))
    assert result.returncode == 0, result.stderr
    import json

    ratios = {(Path(r["model"]).name, r["variant"]): r["speedup_vs_torch"]
              for r in json.loads((tmp_path / "l.json").read_text())["rows"]}
    assert ratios[("tiny.onnx", "session.run")] is not None
    assert ratios[("tiny_u8.onnx", "session.run")] is None and ("tiny_u8.onnx", "deblurrer") in ratios


def test_self_ensemble_of_a_uint8_model_matches_the_float_one(tiny_onnx, pixel_onnx):
    # The pixel model's 8-bit results are averaged in float and rounded once.
    image = _photo((60, 84, 3), seed=3)
    float_result = Deblurrer(tiny_onnx, "cpu", tile=0, self_ensemble=8)(image)
    pixel_result = Deblurrer(pixel_onnx, "cpu", tile=0, self_ensemble=8)(image)
    assert pixel_result.dtype == np.uint8
    assert np.abs(pixel_result.astype(int) - float_result).max() <= 1

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

from conftest import TINY_ARGS, run_cli  # noqa: E402
from deblur.export.exporter import export_checkpoint  # noqa: E402
from deblur.runtime.model_info import ModelInfo  # noqa: E402
from deblur.runtime.version import __version__  # noqa: E402
from deblur.train.checkpoint import file_sha256, load_generator  # noqa: E402


def _torch_out(checkpoint, x):
    with torch.no_grad():
        return load_generator(checkpoint).model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("shape", [(1, 3, 64, 64), (2, 3, 36, 100), (1, 3, 120, 20)])
def test_exported_model_has_dynamic_batch_and_spatial_axes(tiny_checkpoint, tiny_onnx, shape):
    proto = onnx.load(tiny_onnx)
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    convt = [n for n in proto.graph.node if n.op_type == "ConvTranspose"]
    assert convt and all("output_shape" not in {a.name for a in n.attribute} for n in convt)
    session = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    out = session.run(None, {"input": x})[0]
    assert out.shape == shape
    np.testing.assert_allclose(out, _torch_out(tiny_checkpoint, x), atol=1e-4)


def test_metadata_is_complete_and_correct(tiny_checkpoint, tiny_onnx):
    props = {p.key: p.value for p in onnx.load(tiny_onnx).metadata_props}
    info = ModelInfo.from_metadata(props)
    assert info.has_metadata
    assert info.arch == "resnet_generator" and info.arch_args == TINY_ARGS
    assert info.input_range == (-1.0, 1.0) and info.channel_order == "RGB"
    assert info.size_multiple == 4 and info.precision == "fp32" and info.io_dtype == "float32"
    assert info.source_sha256 == file_sha256(tiny_checkpoint)
    assert info.train_step == 7
    assert info.normalization == "instance"
    # ngf 8, one block: conv7 + 2 down + 2 convs at stride 4 + 2 up + conv7.
    assert 30 <= info.receptive_field <= 60
    assert info.tile_context % 4 == 0 and info.tile_context >= info.receptive_field // 2
    assert info.gflops_per_megapixel > 0
    assert props["deblur.toolkit_version"] == __version__


def test_fp16_export_keeps_parity_and_fp32_io(tiny_checkpoint, tmp_path):
    report = export_checkpoint(tiny_checkpoint, tmp_path / "m16.onnx", fp16=True)
    assert report.info.precision == "fp16"
    assert min(r.psnr_db for r in report.parity) >= 45
    session = ort.InferenceSession(str(tmp_path / "m16.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(float)"
    x = np.random.default_rng(1).uniform(-1, 1, (1, 3, 48, 80)).astype(np.float32)
    out = session.run(None, {"input": x})[0]
    mse = np.mean((out - _torch_out(tiny_checkpoint, x)) ** 2)
    assert 10 * np.log10(4 / mse) >= 45


def test_fp16_io_has_half_inputs(tiny_checkpoint, tmp_path):
    export_checkpoint(tiny_checkpoint, tmp_path / "m16io.onnx", fp16=True, fp16_io=True)
    session = ort.InferenceSession(str(tmp_path / "m16io.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(float16)"
    info = ModelInfo.from_metadata(session.get_modelmeta().custom_metadata_map)
    assert info.io_dtype == "float16"


def test_fp16_storage_halves_the_file_and_computes_in_fp32(tiny_checkpoint, tiny_onnx, tmp_path):
    path = tmp_path / "w16.onnx"
    report = export_checkpoint(tiny_checkpoint, path, fp16_storage=True)
    assert report.info.precision == "fp32" and report.info.weight_storage == "fp16"
    assert "weights stored as fp16" in report.summary()
    assert path.stat().st_size < 0.6 * tiny_onnx.stat().st_size
    graph = onnx.load(path).graph
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in graph.initializer)
    # ORT folds the casts when it loads the model: what runs is the FP32 graph.
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp_path / "loaded.onnx")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    loaded = onnx.load(tmp_path / "loaded.onnx").graph
    assert not [n for n in loaded.node if n.op_type == "Cast"]
    assert not [i for i in loaded.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert session.get_inputs()[0].type == "tensor(float)"
    x = np.random.default_rng(2).uniform(-1, 1, (1, 3, 40, 56)).astype(np.float32)
    out = session.run(None, {"input": x})[0]
    mse = np.mean((out - _torch_out(tiny_checkpoint, x)) ** 2)
    assert 10 * np.log10(4 / mse) >= 70
    info = ModelInfo.from_metadata(session.get_modelmeta().custom_metadata_map)
    assert info.weight_storage == "fp16" and info.precision == "fp32"


def test_fp16_storage_goes_with_uint8_io(tiny_checkpoint, tmp_path):
    report = export_checkpoint(tiny_checkpoint, tmp_path / "w16u8.onnx", fp16_storage=True, uint8_io=True)
    assert report.info.io_dtype == "uint8" and report.info.weight_storage == "fp16"
    session = ort.InferenceSession(str(tmp_path / "w16u8.onnx"), providers=["CPUExecutionProvider"])
    pixels = np.random.default_rng(3).integers(0, 256, (1, 36, 44, 3), dtype=np.uint8)
    assert session.run(None, {session.get_inputs()[0].name: pixels})[0].shape == (1, 36, 44, 3)


def test_cli_prints_summary(tiny_checkpoint, tmp_path):
    out = tmp_path / "cli.onnx"
    result = run_cli("deblur-export", str(tiny_checkpoint), str(out), check=True)
    assert out.exists()
    for needle in ("M parameters", "GFLOPs per megapixel", "MB", "max|diff|", "PSNR"):
        assert needle in result.stdout
    # An existing model is replaced only when asked, as deblur-run's outputs.
    before = out.read_bytes()
    again = run_cli("deblur-export", str(tiny_checkpoint), str(out), "--fp16-storage")
    assert again.returncode == 2 and "exists; pass --overwrite to replace it" in again.stderr
    assert out.read_bytes() == before
    run_cli("deblur-export", str(tiny_checkpoint), str(out), "--fp16-storage", "--overwrite", check=True)
    assert out.read_bytes() != before


def test_cli_help_and_version():
    assert "--fp16" in run_cli("deblur-export", "--help", check=True).stdout
    assert "deblur-export, version" in run_cli("deblur-export", "--version", check=True).stdout


@pytest.mark.parametrize("case", ["missing", "empty", "text", "directory", "evil", "fp16io_without_fp16",
                                  "fp16_storage_with_fp16", "bad_suffix", "folder_is_a_file", "block_op_without_fp16",
                                  "unknown_block_op"])
def test_cli_bad_inputs_exit_2_with_one_line_and_no_output(tiny_checkpoint, tmp_path, case):
    src = tmp_path / "in.pt"
    out = tmp_path / "out.onnx"
    extra = []
    if case == "missing":
        src = tmp_path / "nope dir é" / "x.pt"
    elif case == "empty":
        src.write_bytes(b"")
    elif case == "text":
        src.write_text("not a model")
    elif case == "directory":
        src = tmp_path
    elif case == "evil":
        src.write_bytes(b"cos\nsystem\n(S'touch pwned'\ntR.")
    elif case == "fp16io_without_fp16":
        src, extra = tiny_checkpoint, ["--fp16-io"]
    elif case == "fp16_storage_with_fp16":
        src, extra = tiny_checkpoint, ["--fp16", "--fp16-storage"]
    elif case == "bad_suffix":
        src, out = tiny_checkpoint, tmp_path / "out.txt"
    elif case == "folder_is_a_file":  # refused before the export, not after it
        src.write_text("a file where a folder should be")
        src, out = tiny_checkpoint, src / "sub" / "out.onnx"
    elif case == "block_op_without_fp16":
        src, extra = tiny_checkpoint, ["--int8", "--fp16-block-op", "InstanceNormalization"]
    elif case == "unknown_block_op":
        src, extra = tiny_checkpoint, ["--fp16", "--fp16-block-op", "NotAnOp"]
    result = run_cli("deblur-export", str(src), str(out), *extra, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))
    assert not (tmp_path / "pwned").exists()


def test_exported_model_runs_without_torch(tiny_onnx):
    code = f"""
import sys
sys.modules['torch'] = None  # any 'import torch' now fails
import numpy as np, onnxruntime as ort
s = ort.InferenceSession({str(tiny_onnx)!r}, providers=['CPUExecutionProvider'])
y = s.run(None, {{'input': np.zeros((1, 3, 44, 52), np.float32)}})[0]
assert y.shape == (1, 3, 44, 52), y.shape
print('ok')
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr


def test_parity_failure_exits_1_with_the_figures_and_writes_nothing(tiny_checkpoint, tmp_path, monkeypatch):
    from click.testing import CliRunner

    import deblur.export.exporter as exporter
    from deblur.export.cli import main

    monkeypatch.setattr(exporter, "FP32_MAX_ABS", 0.0)  # no real export can meet this
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(main, [str(tiny_checkpoint), str(out)])
    assert result.exit_code == 1
    assert "differs from torch" in result.output and "PSNR" in result.output
    assert not out.exists() and not list(tmp_path.iterdir())


def test_int8_export_is_quantised_and_close(tiny_checkpoint, tmp_path):
    report = export_checkpoint(tiny_checkpoint, tmp_path / "m8.onnx", int8=True)
    nodes = onnx.load(tmp_path / "m8.onnx").graph.node
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in nodes}
    # Upsampling stays in float (quantised it cost the default model 19 dB of parity).
    dequantized = {o for n in nodes if n.op_type == "DequantizeLinear" for o in n.output}
    transposed = [n for n in nodes if n.op_type == "ConvTranspose"]
    assert transposed and not any(i in dequantized for n in transposed for i in n.input)
    assert report.info.precision == "int8"
    assert min(r.psnr_db for r in report.parity) >= 30


def test_int8_calibrates_on_the_users_photos_when_given(tiny_checkpoint, tmp_path):
    import cv2

    from deblur.runtime.errors import InputError

    skimage = pytest.importorskip("skimage")
    (tmp_path / "night").mkdir()
    for name in ("coffee.png", "chelsea.png"):  # other photos, darker, than the bundled astronaut
        photo = cv2.imread(str(Path(skimage.__file__).parent / "data" / name))
        cv2.imwrite(str(tmp_path / "night" / name), (photo * 0.4).astype(np.uint8)[:160, :200])
    export_checkpoint(tiny_checkpoint, tmp_path / "day.onnx", int8=True)
    export_checkpoint(tiny_checkpoint, tmp_path / "night.onnx", int8=True, calibration=tmp_path / "night")

    def scales(path):
        model = onnx.load(path)
        return {i.name: onnx.numpy_helper.to_array(i).tolist() for i in model.graph.initializer if "scale" in i.name}

    day, night = scales(tmp_path / "day.onnx"), scales(tmp_path / "night.onnx")
    assert day.keys() == night.keys() and day != night  # the activation ranges came from the photos given
    for kwargs, message in (({"calibration": tmp_path / "night"}, "calibrate an --int8 export"),
                            ({"int8": True, "calibration": tmp_path / "none"}, "needs a folder of photos"),
                            ({"int8": True, "calibration": tmp_path / "empty"}, "no photos for --calibration")):
        (tmp_path / "empty").mkdir(exist_ok=True)
        with pytest.raises(InputError, match=message):
            export_checkpoint(tiny_checkpoint, tmp_path / "x.onnx", **kwargs)


def test_unet_checkpoint_exports_with_parity_at_its_size_multiple(tmp_path):
    from deblur.train.checkpoint import save_checkpoint
    from deblur.train.models import create_generator

    args = {"num_downs": 5, "ngf": 8}
    model = create_generator("unet_generator", **args)
    ckpt = save_checkpoint(tmp_path / "u.pt", model, arch="unet_generator", arch_args=args)
    report = export_checkpoint(ckpt, tmp_path / "u.onnx")
    assert report.info.size_multiple == 32
    assert all(r.size[0] % 32 == 0 and r.size[1] % 32 == 0 for r in report.parity)
    assert max(r.max_abs for r in report.parity) <= 1e-4
    # Traced at a multiple (128 for 7 levels, not 64): no eager-mode padding baked into the graph,
    # as with 5 levels; the runtime pads every size the same way.
    args = {"num_downs": 7, "ngf": 4}
    ckpt = save_checkpoint(tmp_path / "u7.pt", create_generator("unet_generator", **args), arch="unet_generator",
                           arch_args=args)
    export_checkpoint(ckpt, tmp_path / "u7.onnx")
    ops = {n.op_type for name in ("u.onnx", "u7.onnx") for n in onnx.load(tmp_path / name).graph.node}
    assert "Pad" not in ops


def test_runtime_feeds_fp16_io_models_half_and_warns_on_cpu(tiny_checkpoint, tiny_onnx, tmp_path, caplog):
    from deblur.runtime import Deblurrer

    export_checkpoint(tiny_checkpoint, tmp_path / "h.onnx", fp16=True, fp16_io=True)
    image = np.random.default_rng(0).integers(0, 256, (60, 44, 3), dtype=np.uint8)
    with caplog.at_level("WARNING"):
        half = Deblurrer(tmp_path / "h.onnx", "cpu", tile=0)
    assert half.io_dtype == np.float16 and "no faster than FP32" in caplog.text
    full = Deblurrer(tiny_onnx, "cpu", tile=0)
    assert np.abs(half(image).astype(int) - full(image).astype(int)).max() <= 3


def test_receptive_field_does_not_depend_on_saturated_weights():
    from deblur.export.analysis import measure_receptive_field
    from deblur.train.models.resnet_generator import ResnetGenerator

    model = ResnetGenerator(ngf=8, n_blocks=2)
    fresh = measure_receptive_field(model)
    with torch.no_grad():
        model.model[-2].bias.fill_(50.0)  # tanh saturates: zero gradient through the network
    assert measure_receptive_field(model) == fresh
    assert 40 <= fresh <= 90  # conv7 + 2 strided + 4 convs at stride 4 + 2 up + conv7


def test_parity_checks_fail_a_nan_result_and_a_failing_quantiser_is_one_error(tiny_checkpoint, tmp_path, monkeypatch):
    import types

    import deblur.export.exporter as exporter
    from deblur.runtime.errors import ExportError

    nan = types.SimpleNamespace(psnr_db=float("nan"), max_abs=float("nan"))
    fine = types.SimpleNamespace(psnr_db=90.0, max_abs=1e-6)
    assert exporter._below([fine, nan], 30) and exporter._below([nan, fine], 30) and not exporter._below([fine], 30)

    def broken_quantiser(*args, **kwargs):
        raise AssertionError("scale issue")

    monkeypatch.setattr(exporter, "to_int8", broken_quantiser)
    with pytest.raises(ExportError, match=r"INT8 quantisation failed \(scale issue\); export FP32"):
        export_checkpoint(tiny_checkpoint, tmp_path / "m8.onnx", int8=True)
    assert not (tmp_path / "m8.onnx").exists()

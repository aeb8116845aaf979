import re
import subprocess
import sys
import types
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from deblur.runtime import Deblurrer, InputError, ModelError, ProviderError
from deblur.runtime.model_info import ModelInfo
from local_models import LOCAL_METADATA, local_conv_model, local_graph_model


@pytest.fixture(scope="module")
def local_model(tmp_path_factory):
    return local_conv_model(tmp_path_factory.mktemp("m") / "local.onnx", metadata=LOCAL_METADATA)


@pytest.fixture(scope="module")
def deblurrer(local_model):
    return Deblurrer(local_model, "cpu", tile=64, overlap=4, blend=8)


@pytest.mark.parametrize("shape, dtype", [((40, 50, 3), np.uint8), ((40, 50), np.uint8), ((40, 50, 1), np.uint8),
                                          ((40, 50, 4), np.uint8), ((40, 50, 3), np.uint16), ((33, 17), np.uint16),
                                          ((40, 50, 3), np.float32), ((130, 90, 4), np.uint16),
                                          ((1, 1, 3), np.uint8), ((1, 2), np.uint8), ((2, 1, 4), np.uint8)])
def test_output_has_the_inputs_shape_and_dtype(deblurrer, shape, dtype):
    rng = np.random.default_rng(0)
    image = (rng.random(shape) * (np.iinfo(dtype).max if dtype != np.float32 else 1)).astype(dtype)
    out = deblurrer(image)
    assert out.shape == image.shape and out.dtype == image.dtype
    if len(shape) == 3 and shape[2] == 4:
        np.testing.assert_array_equal(out[:, :, 3], image[:, :, 3])  # alpha untouched


def test_uint16_keeps_full_precision(tmp_path):
    # A model that returns its input: 16-bit values must survive the round trip exactly,
    # which fails if anything quantises to 8 bits on the way.
    identity = local_conv_model(tmp_path / "id.onnx", metadata=LOCAL_METADATA)
    import onnx
    model = onnx.load(identity)
    for init in model.graph.initializer:
        if init.name == "w2":
            init.CopyFrom(onnx.numpy_helper.from_array(np.zeros((3, 8, 3, 3), np.float32), "w2"))
    onnx.save(model, identity)
    image = np.random.default_rng(2).integers(0, 65536, (30, 41, 3), dtype=np.uint16)
    out = Deblurrer(identity, "cpu", tile=0)(image)
    assert np.abs(out.astype(int) - image.astype(int)).max() <= 1
    assert len(np.unique(out & 0xFF)) > 200  # low byte carries information


def test_grey_input_and_grey_content_give_grey_output(deblurrer):
    import cv2

    grey = np.random.default_rng(3).integers(0, 256, (48, 48), dtype=np.uint8)
    out = deblurrer(grey)
    assert out.shape == grey.shape and out.dtype == np.uint8
    # A grey picture stored as colour (or grey+alpha, which OpenCV decodes to BGRA) comes back
    # grey, not with the faint false colour of the model's unequal channels.
    colour = deblurrer(cv2.merge([grey, grey, grey]))
    assert np.array_equal(colour, cv2.merge([out, out, out]))
    alpha = np.maximum(grey[::-1], 1)  # nothing fully transparent: no hidden colour is filled
    with_alpha = deblurrer(cv2.merge([grey, grey, grey, alpha]))
    assert np.array_equal(with_alpha, cv2.merge([out, out, out, alpha]))
    tinted = cv2.merge([grey, grey, np.clip(grey.astype(int) + 1, 0, 255).astype(np.uint8)])
    result = deblurrer(tinted)
    assert not np.array_equal(result[:, :, 0], result[:, :, 1])  # the rest stays colour


def test_batch_call_matches_single_calls(deblurrer):
    images = [np.random.default_rng(i).integers(0, 256, (20 + i, 30, 3), dtype=np.uint8) for i in range(4)]
    for single, batched in zip([deblurrer(im) for im in images], deblurrer.deblur_many(images)):
        np.testing.assert_array_equal(single, batched)


def test_threads_sharing_one_deblurrer_match_sequential(deblurrer):
    images = [np.random.default_rng(i).integers(0, 256, (70 + 7 * i, 90, 3), dtype=np.uint8) for i in range(12)]
    sequential = [deblurrer(im) for im in images]
    with ThreadPoolExecutor(6) as pool:
        concurrent = list(pool.map(deblurrer, images * 3))
    for i, out in enumerate(concurrent):
        np.testing.assert_array_equal(out, sequential[i % len(images)])


@pytest.mark.parametrize("bad, pattern", [
    (np.zeros((0, 5, 3), np.uint8), "no pixels"),
    (np.zeros((3, 0), np.uint8), "no pixels"),
    (np.zeros((5, 5, 2), np.uint8), "not HxW"),
    (np.zeros((5, 5, 3), np.int32), "not supported"),
    (np.full((5, 5, 3), np.nan, np.float32), "NaN"),
    (np.full((5, 5, 3), np.inf, np.float32), "75 NaN or infinite values; replace them"),
    # Another scale would come back saturated: 0..255 or -1..1 floats are refused, not clipped.
    (np.linspace(0, 255, 75, dtype=np.float32).reshape(5, 5, 3), r"span \[0, 255\].*8-bit data / 255"),
    (np.linspace(-1, 1, 75, dtype=np.float64).reshape(5, 5, 3), r"span \[-1, 1\].*\(x \+ 1\) / 2"),
    ("not an array", "numpy"),
])
def test_bad_images_raise_input_error(deblurrer, bad, pattern):
    with pytest.raises(InputError, match=pattern):
        deblurrer(bad)


def test_plain_onnx_model_without_metadata_uses_documented_defaults(tmp_path):
    path = local_conv_model(tmp_path / "plain.onnx")
    d = Deblurrer(path, "cpu", tile=0)
    assert not d.info.has_metadata
    assert d.info == ModelInfo()
    assert d.info.input_range == (0.0, 1.0) and d.info.size_multiple == 8
    assert d(np.zeros((10, 13, 3), np.uint8)).shape == (10, 13, 3)


def test_metadata_drives_preprocessing(tmp_path):
    # The same weights read as RGB in [-1, 1] vs BGR in [0, 1] give different results.
    a = Deblurrer(local_conv_model(tmp_path / "a.onnx", metadata=LOCAL_METADATA), "cpu", tile=0)
    b = Deblurrer(local_conv_model(tmp_path / "b.onnx", metadata={"deblur.channel_order": "BGR"}), "cpu", tile=0)
    assert a.info.channel_order == "RGB" and b.info.channel_order == "BGR" and b.info.input_range == (0.0, 1.0)
    image = np.random.default_rng(5).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert not np.array_equal(a(image), b(image))


def test_missing_provider_is_an_error_listing_what_exists(local_model):
    with pytest.raises(ProviderError, match="available: .*CPUExecutionProvider"):
        Deblurrer(local_model, "cuda")
    with pytest.raises(ProviderError, match="not available"):
        Deblurrer(local_model, "tensorrt")


def test_provider_that_falls_back_to_cpu_is_an_error_naming_what_is_missing(local_model):
    # The real ORT with a provider this (CPU) build lacks: it falls back silently; we do not.
    from deblur.runtime.providers import ProviderChoice, create_session

    with pytest.raises(ProviderError, match=r"CUDAExecutionProvider failed to initialise: .*"
                                            r"libonnxruntime_providers_cuda\.so is missing.*--provider cpu"):
        create_session(str(local_model), ProviderChoice("CUDAExecutionProvider", {}))


def _library_needing(tmp_path, missing: bytes):
    """A real shared library whose dependency list names ``missing`` (patched in place of libm)."""
    import _decimal
    import math

    for module in (math, _decimal):
        path = getattr(module, "__file__", None)
        data = open(path, "rb").read() if path and path.endswith(".so") else b""
        if data.count(b"libm.so.6\0") == 1 and len(missing) == len(b"libm.so.6"):
            capi = tmp_path / "capi"
            capi.mkdir()
            (capi / "libonnxruntime_providers_cuda.so").write_bytes(data.replace(b"libm.so.6\0", missing + b"\0"))
            return capi
    pytest.skip("no extension module linked against libm.so.6 to build a broken library from")


@pytest.mark.skipif(sys.platform != "linux", reason="ELF shared libraries")
def test_provider_library_error_names_the_missing_cuda_library(tmp_path):
    from deblur.runtime.providers import provider_library_error

    capi = _library_needing(tmp_path, b"libq.so.9")  # as libcudnn.so.9 would be missing
    message = provider_library_error("CUDAExecutionProvider", str(capi))
    assert "libonnxruntime_providers_cuda.so" in message and "libq.so.9: cannot open shared object file" in message
    assert provider_library_error("CPUExecutionProvider", str(capi)) is None



def test_cuda_libraries_from_pip_are_preloaded_once_and_quietly(monkeypatch, capsys):
    # A CUDA provider library that cannot find libcublas: ORT's preload_dlls() (which prints
    # its failures) is called once, its output kept off stdout; CPU sessions never call it.
    from deblur.runtime import providers

    calls = []
    fake_ort = types.SimpleNamespace(preload_dlls=lambda: (calls.append(1), print("Failed to load libcudnn.so.9")))
    monkeypatch.setattr(providers, "_ort", lambda: fake_ort)
    monkeypatch.setattr(providers, "_preload_tried", False)
    monkeypatch.setattr(providers, "provider_library_error", lambda name: "libcublasLt.so.13: cannot open")
    providers.preload_cuda_libraries("CPUExecutionProvider")
    assert calls == []
    providers.preload_cuda_libraries("CUDAExecutionProvider")
    providers.preload_cuda_libraries("CUDAExecutionProvider")
    assert calls == [1] and capsys.readouterr().out == ""
    # Libraries that load already: nothing to preload.
    monkeypatch.setattr(providers, "_preload_tried", False)
    monkeypatch.setattr(providers, "provider_library_error", lambda name: None)
    providers.preload_cuda_libraries("CUDAExecutionProvider")
    assert calls == [1]


def test_cuda_options_name_the_device_only_when_not_the_default():
    # ORT >= 1.26 warns on every CUDA session whose options carry device_id (seen on an H200).
    from deblur.runtime.providers import _provider_options

    assert "device_id" not in _provider_options("CUDAExecutionProvider", 0, True)
    assert _provider_options("CUDAExecutionProvider", 1, False)["device_id"] == 1
    assert _provider_options("CUDAExecutionProvider", 0, True)["cudnn_conv_algo_search"] == "EXHAUSTIVE"

def test_auto_provider_picks_cpu_here(local_model):
    assert Deblurrer(local_model, "auto").provider == "CPUExecutionProvider"


@pytest.mark.parametrize("case, pattern", [("missing", "no such model"), ("empty", "empty"), ("text", "not a loadable ONNX"),
                                           ("rank3", "rank 3"), ("channels", "1 channels"), ("dir", "is a directory"),
                                           ("fixed_size", "fixed size")])
def test_bad_models_raise_model_error(tmp_path, case, pattern):
    path = tmp_path / "m.onnx"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("definitely not protobuf")
    elif case == "rank3":
        local_conv_model(path, rank4=False)
    elif case == "channels":
        local_conv_model(path, in_channels=1)
    elif case == "dir":
        path.mkdir()
    elif case == "fixed_size":
        import onnx
        local_conv_model(path)
        model = onnx.load(path)
        for dim, value in zip(model.graph.input[0].type.tensor_type.shape.dim[2:], (64, 64)):
            dim.dim_value = value
        onnx.save(model, path)
    with pytest.raises(ModelError, match=pattern):
        Deblurrer(path, "cpu")


def test_no_default_model_is_a_clear_error(monkeypatch):
    import deblur.runtime.deblurrer as mod
    monkeypatch.setattr(mod, "default_model_path", lambda provider="CPUExecutionProvider": None)
    with pytest.raises(ModelError, match="deblur-export"):
        Deblurrer()


def test_tile_too_small_for_overlap_is_an_error(local_model):
    # overlap 8 x 2 + blend 8 = 24 px of margins: 28 is the least that works, 48 the least
    # where a tile keeps half of itself (each output pixel computed under 4 times).
    with pytest.raises(InputError, match=r"too small.*tile \(--tile\) >= 48 \(28 at the very least\)"):
        Deblurrer(local_model, "cpu", tile=16, overlap=8, blend=8)
    # --tile auto's tiles grow to what the context needs (a pix2pix U-Net's is 512 px a side).
    wide = Deblurrer(local_model, "cpu", overlap=600, max_whole_pixels=100)
    assert wide.tile_for((2000, 3000)) >= 2 * (2 * 600 + 32) and wide.tile_for((8, 8)) == 0
    assert wide(np.zeros((10, 30, 3), np.uint8)).shape == (10, 30, 3)


@pytest.mark.parametrize("kwargs, message", [
    ({"tile": 64.5}, "tile must be an integer, got 64.5"),
    ({"tile": "256"}, "tile must be an integer, got '256'"),
    ({"threads": 1.5}, "threads must be an integer, got 1.5"),
    ({"overlap": True}, "overlap must be an integer, got True"),
    ({"self_ensemble": "2"}, "self_ensemble must be one of 1, 2, 4, 8, got '2'"),
    ({"self_ensemble": 2.0}, "self_ensemble must be one of 1, 2, 4, 8, got 2.0"),
    ({"device_id": -1}, "device_id -1: tile, overlap, blend and device_id must be >= 0"),
])
def test_wrong_argument_types_are_input_errors_naming_the_argument(local_model, kwargs, message):
    with pytest.raises(InputError, match=f"^{re.escape(message)}"):
        Deblurrer(local_model, "cpu", **kwargs)


def test_a_tile_that_keeps_little_of_itself_is_warned_about(local_model, caplog):
    with caplog.at_level("WARNING"):
        Deblurrer(local_model, "cpu", tile=28, overlap=8, blend=8)
    assert "computed ~49 times; tile (--tile) >= 48" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        Deblurrer(local_model, "cpu", tile=48, overlap=8, blend=8)
    assert "computed" not in caplog.text


@pytest.mark.parametrize("setting", [dict(tile_batch=0), dict(threads=0), dict(blend=-1), dict(overlap=-2)])
def test_bad_settings_name_the_setting_and_value(local_model, setting):
    (name, value), = setting.items()
    with pytest.raises(InputError, match=f"^{name} {value}: "):
        Deblurrer(local_model, "cpu", **setting)


def test_runtime_works_where_torch_cannot_be_imported(local_model, tmp_path):
    code = f"""
import sys
sys.modules['torch'] = None  # 'import torch' raises ImportError from here on
import numpy as np
from deblur.runtime import Deblurrer
from deblur.runtime.cli import main
import deblur.runtime.video, deblur.runtime.jobs
out = Deblurrer({str(local_model)!r}, 'cpu', tile=48, blend=8)(np.zeros((50, 70, 3), np.uint8))
assert out.shape == (50, 70, 3)
assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]
print('ok')
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.stdout.strip() == "ok", result.stderr


def test_gpu_out_of_memory_retries_with_smaller_tiles(local_model, caplog):
    d = Deblurrer(local_model, "cpu", tile=0, overlap=4, blend=8)
    image = np.random.default_rng(7).integers(0, 256, (200, 120, 3), dtype=np.uint8)
    expected = d(image)
    seen = []

    def fake_gpu_run(nchw):  # pretend the GPU holds at most a 64x64 tile
        seen.append(nchw.shape[2:])
        if max(nchw.shape[2:]) > 64:
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : CUDA failure 2: out of memory")
        return d.session.run([d.output_name], {d.input_name: nchw})[0]

    d.provider, d._session_run = "CUDAExecutionProvider", fake_gpu_run
    with caplog.at_level("WARNING"):
        out = d(image)
    assert max(seen[-1]) <= 64 and "retrying this image with tile" in caplog.text
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1  # local model: tiling is exact


@pytest.mark.parametrize("where", ["model call", "post-processing"])
def test_other_errors_are_not_retried(local_model, monkeypatch, where):
    d = Deblurrer(local_model, "cpu", tile=0)
    d.provider = "CUDAExecutionProvider"
    if where == "model call":
        d._session_run = lambda nchw: (_ for _ in ()).throw(RuntimeError("some other failure"))
    else:  # a host allocation failure worded like a GPU one is not the GPU's
        d._session_run = lambda nchw: d.session.run([d.output_name], {d.input_name: nchw})[0]
        monkeypatch.setattr(d, "post_process", lambda *a, **k: (_ for _ in ()).throw(
            MemoryError("some other failure: failed to allocate 1 GB")))
    with pytest.raises((RuntimeError, MemoryError), match="some other failure"):
        d(np.zeros((20, 20, 3), np.uint8))


def test_auto_tiling_runs_small_images_whole_and_tiles_big_ones(local_model):
    from deblur.runtime.deblurrer import AUTO_TILE

    d = Deblurrer(local_model, "cpu", max_whole_pixels=100 * 100)
    assert d.tile is None
    assert d.tile_for((100, 100, 3)) == 0 and d.tile_for((101, 100, 3)) == AUTO_TILE
    assert Deblurrer(local_model, "cpu", tile=0).tile_for((5000, 5000, 3)) == 0
    image = np.random.default_rng(3).integers(0, 256, (1100, 90, 3), dtype=np.uint8)
    whole = Deblurrer(local_model, "cpu", tile=0)(image)
    assert np.abs(d(image).astype(int) - whole.astype(int)).max() <= 1


@pytest.mark.parametrize("case", ["taller", "one_channel", "classifier"])
@pytest.mark.parametrize("tile", [0, 16])
def test_a_model_whose_output_is_not_the_inputs_shape_is_a_model_error(tmp_path, case, tile):
    # An upscaler's output was cropped to its top-left quarter, a mask's raised IndexError.
    from onnx import helper

    node, dims = {
        "taller": (helper.make_node("Concat", ["input", "input"], ["output"], axis=2), ["batch", 3, "h2", "width"]),
        "one_channel": (helper.make_node("ReduceMean", ["input"], ["output"], axes=[1]), ["batch", 1, "height", "width"]),
        "classifier": (helper.make_node("ReduceMean", ["input"], ["output"], axes=[2, 3], keepdims=0), ["batch", 3]),
    }[case]
    deblur = Deblurrer(local_graph_model(tmp_path / "m.onnx", [node], dims), "cpu", tile=tile, overlap=2, blend=2)
    with pytest.raises(ModelError, match=r"m\.onnx: the model's output \[.*\] does not match its input"):
        deblur(np.zeros((24, 40, 3), np.uint8))


def test_a_model_producing_nan_is_a_model_error(tmp_path):
    # 0 / 0: uint8 callers got black or white pixels, float callers NaN, silently.
    from onnx import helper

    node = helper.make_node("Div", ["input", "zero"], ["output"])
    path = local_graph_model(tmp_path / "nan.onnx", [node], ["batch", 3, "height", "width"],
                             {"zero": np.zeros((1,), np.float32)})
    with pytest.raises(ModelError, match=r"nan\.onnx: the model produced \d+ NaN or infinite values"):
        Deblurrer(path, "cpu")(np.full((8, 8, 3), 128, np.uint8))


@pytest.mark.parametrize("key, raw", [("size_multiple", "4.5"), ("input_range", "[0, 1e400]"), ("tile_context", "true"),
                                      ("arch_args", "[1]"), ("input_range", "5"), ("train_step", '"x"')])
def test_metadata_of_the_wrong_type_is_refused_at_load(tmp_path, key, raw):
    path = local_conv_model(tmp_path / "m.onnx", metadata={**LOCAL_METADATA, f"deblur.{key}": raw})
    with pytest.raises(ModelError, match=rf"m\.onnx: invalid deblur metadata \({key} .*\); re-export"):
        Deblurrer(path, "cpu")


def test_a_fixed_batch_model_runs_one_tile_at_a_time_or_is_refused(tmp_path):
    from onnx import helper

    node = helper.make_node("Identity", ["input"], ["output"])
    one = local_graph_model(tmp_path / "one.onnx", [node], [1, 3, "height", "width"], batch=1)
    assert Deblurrer(one, "cpu", tile=16, overlap=2, blend=2)(np.ones((40, 40, 3), np.uint8)).shape == (40, 40, 3)
    with pytest.raises(InputError, match=r"fixed batch of 1\): use tile_batch \(--tile-batch\) 1, not 3"):
        Deblurrer(one, "cpu", tile_batch=3)
    two = local_graph_model(tmp_path / "two.onnx", [node], [2, 3, "height", "width"], batch=2)
    with pytest.raises(ModelError, match="fixed batch of 2.*dynamic batch"):
        Deblurrer(two, "cpu")


def test_big_endian_arrays_give_the_native_result(deblurrer):
    image = np.random.default_rng(2).integers(0, 65536, (12, 10, 3)).astype(np.uint16)
    for dtype in (">u2", ">f4"):
        native = image if dtype == ">u2" else (image / 65535).astype(np.float32)
        assert np.array_equal(deblurrer(native.astype(dtype)), deblurrer(native))


def test_provider_must_be_a_name(local_model):
    from deblur.runtime import default_model_path

    with pytest.raises(ProviderError, match="provider must be a name .* got None"):
        Deblurrer(local_model, None)
    with pytest.raises(ProviderError, match="got 0"):
        default_model_path(0)


def test_auto_falls_back_to_the_cpu_when_a_listed_gpu_cannot_start(local_model, monkeypatch, caplog):
    # onnxruntime-gpu lists CUDA on machines without a GPU (CI runners, containers without --gpus):
    # "auto" promises the CPU then; asking for "cuda" by name stays an error.
    import deblur.runtime.providers as providers

    listed = providers.available_providers()
    monkeypatch.setattr(providers, "available_providers", lambda: ["CUDAExecutionProvider", *listed])
    with caplog.at_level("WARNING"):
        assert Deblurrer(local_model, "auto").provider == "CPUExecutionProvider"
        shipped = Deblurrer(provider="auto")
    assert "provider auto runs on the CPU: CUDAExecutionProvider failed to initialise" in caplog.text
    assert shipped.model_path.name == "default.onnx" and shipped._deep_args is None
    with pytest.raises(ProviderError, match="failed to initialise"):
        Deblurrer(local_model, "cuda")


def test_write_image_honours_the_umask_in_force_when_it_writes(tmp_path):
    # The umask was read once at import: an application that tightened it later still got 0644 files.
    import os

    from deblur.runtime import write_image

    old = os.umask(0o077)
    try:
        write_image(tmp_path / "x.png", np.zeros((4, 4, 3), np.uint8))
    finally:
        os.umask(old)
    assert (tmp_path / "x.png").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("image, kwargs, pattern", [
    (np.zeros((4, 4, 2), np.uint8), {}, r"shape \(4, 4, 2\)"),
    (np.zeros((0, 4, 3), np.uint8), {}, r"shape \(0, 4, 3\)"),
    ([[0, 1], [2, 3]], {}, "numpy image array, got list"),
    (np.zeros((4, 4, 3), np.uint8), {"icc": "sRGB"}, "icc must be bytes"),
    (np.zeros((4, 20000, 3), np.uint8), {}, r"\.webp holds at most 16383 px a side, and this picture is 20000x4"),
])
def test_write_image_errors_are_input_errors(tmp_path, image, kwargs, pattern):
    from deblur.runtime import write_image

    with pytest.raises(InputError, match=pattern):
        write_image(tmp_path / ("x.webp" if "16383" in pattern else "x.png"), image, **kwargs)
    assert not list(tmp_path.iterdir())


def test_an_unwritable_place_is_refused_before_the_work_even_for_root():
    # os.access says yes to root everywhere (containers, CI): the export or benchmark ran for
    # minutes, then failed at the write.
    from deblur.runtime.atomic import check_can_write

    with pytest.raises(InputError, match=r"/proc/deblur/model\.onnx: cannot be written"):
        check_can_write("/proc/deblur/model.onnx")


def test_none_from_a_failed_imread_is_named(deblurrer):
    with pytest.raises(InputError, match="got None: cv2.imread returns None for a missing or unreadable file"):
        deblurrer(None)


def test_the_azure_provider_every_wheel_lists_is_refused_not_reported_while_the_cpu_runs(local_model):
    with pytest.raises(ProviderError, match="AzureExecutionProvider calls models served on Azure"):
        Deblurrer(local_model, "AzureExecutionProvider")


def test_what_a_cut_out_hides_does_not_change_what_it_shows(deblurrer):
    # The colour under fully transparent pixels is invisible, but the model saw it across the
    # edge: the same cut-out over black and over white gave visible pixels up to 53 levels apart.
    rng = np.random.default_rng(9)
    cut = rng.integers(0, 256, (32, 40, 4), dtype=np.uint8)
    cut[:, :, 3] = 255
    cut[:, 20:, 3] = 0
    over_black, over_white = cut.copy(), cut.copy()
    over_black[:, 20:, :3], over_white[:, 20:, :3] = 0, 255
    a, b = deblurrer(over_black), deblurrer(over_white)
    assert np.array_equal(a[:, :20], b[:, :20])
    assert np.array_equal(over_black[:, 20:, :3], np.zeros((32, 20, 3)))  # the caller's array untouched


def test_a_deblurrer_goes_to_worker_processes(local_model):
    # It held a lock and a session: `cannot pickle '_thread.lock'` for any multiprocessing pool.
    import pickle
    from concurrent.futures import ProcessPoolExecutor

    deblur = Deblurrer(local_model, "cpu", tile=0, threads=1)
    image = np.random.default_rng(8).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    copy = pickle.loads(pickle.dumps(deblur))
    assert copy.model_path == deblur.model_path and copy.tile == 0
    with ProcessPoolExecutor(1) as pool:
        assert np.array_equal(pool.submit(deblur, image).result(), deblur(image))

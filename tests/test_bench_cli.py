"""deblur-bench end to end on tiny inputs: well-formed JSON, the expected rows, errors as exit 2.

Nothing here asserts a speed: timings on a shared machine are noise at this size.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from local_models import LOCAL_METADATA, local_conv_model

SET5 = Path("/work/shared/data/sharp/Set5")


@pytest.fixture(scope="module")
def local_model(tmp_path_factory) -> Path:
    return local_conv_model(tmp_path_factory.mktemp("bench") / "local.onnx", metadata=LOCAL_METADATA)


@pytest.fixture(scope="module")
def sharp_folder(tmp_path_factory) -> Path:
    from deblur.benchmarks.latency import photo
    from deblur.runtime import write_image

    folder = tmp_path_factory.mktemp("sharp")
    image = photo(240, 80)
    for i in range(3):  # three different 80x80 crops of a real photo
        write_image(folder / f"img{i}.png", np.ascontiguousarray(image[:, i * 80:(i + 1) * 80]))
    return folder


def _bench(*args: str) -> None:
    run_cli("deblur-bench", *args, "-q", check=True)


def _load(path: Path) -> dict:
    # strict JSON: no NaN/Infinity tokens (inf is written as the string "inf")
    return json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


def _check_system(payload: dict) -> None:
    system = payload["system"]
    for key in ("cpu_model", "physical_cores", "threads", "onnxruntime", "provider", "cuda_runtime_loaded", "cudnn_loaded"):
        assert key in system, key
    assert "CPUExecutionProvider" in system["provider"]
    assert system["cuda_runtime_loaded"] == "n/a"
    assert isinstance(payload["settings"], dict)


def test_latency_rows_per_variant_and_tile(local_model, tmp_path):
    _bench("latency", "-m", str(local_model), "-s", "96x64,256", "--tile", "0,48", "--overlap", "4",
           "-n", "2", "--warmup", "1", "--out", str(tmp_path))
    payload = _load(tmp_path / "latency.json")
    _check_system(payload)
    rows = payload["rows"]
    assert {(r["size"], r["tile"], r["variant"]) for r in rows} == {
        (s, t, v) for s in ("96x64", "256") for t in (0, 48) for v in ("deblurrer", "session.run")}
    for r in rows:
        assert r["runs"] == 2 and r["p50_ms"] > 0 and r["p95_ms"] >= r["p50_ms"] and r["fps"] > 0
        assert r["peak_rss_mb"] > 0 and r["gpu_mem_mb"] is None
        assert (r["overhead_vs_session"] is not None) == (r["variant"] == "deblurrer")
        assert r["io"] == "float32"  # a --uint8-io / --fp16-io export says so in its rows
    tiled = [r for r in rows if r["tile"] == 48 and r["size"] == "256"]
    assert all(r["session_calls"] > 1 for r in tiled)
    assert (tmp_path / "latency.md").read_text().startswith("# deblur-bench latency")
    assert (tmp_path / "latency.png").stat().st_size > 0


def test_latency_torch_baseline(tiny_checkpoint, tiny_onnx, tmp_path):
    out = tmp_path / "lat.json"
    _bench("latency", "-m", str(tiny_onnx), "--torch", str(tiny_checkpoint), "-s", "64x64", "-n", "1",
           "--warmup", "0", "--no-plot", "--json", str(out))
    rows = _load(out)["rows"]
    assert [r["variant"] for r in rows] == ["deblurrer", "session.run", "torch"]
    assert rows[0]["same_weights_as_torch"] is True and rows[1]["same_weights_as_torch"] is True
    assert rows[0]["speedup_vs_torch"] > 0 and rows[1]["speedup_vs_torch"] > 0
    assert rows[0]["gflop_per_s"] > 0  # the exported model carries its FLOP count
    assert not out.with_suffix(".png").exists()



def test_latency_torch_cuda_refused_without_a_gpu(tiny_checkpoint, tiny_onnx, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    result = run_cli("deblur-bench", "latency", "-m", str(tiny_onnx), "--torch", str(tiny_checkpoint),
                     "--torch-device", "cuda", "-s", "64x64", "-n", "1", "--no-plot", "-q")
    assert result.returncode == 2 and "sees no CUDA GPU" in result.stderr and "--torch-device cpu" in result.stderr


def test_torch_baseline_compared_with_the_provider_of_its_device():
    from types import SimpleNamespace

    from deblur.benchmarks.latency import TORCH_DEVICE_PROVIDER, _torch_comparable

    info = SimpleNamespace(source_sha256="abc")
    for device, provider in TORCH_DEVICE_PROVIDER.items():
        base = SimpleNamespace(provider=provider, sha256="abc")
        for other in TORCH_DEVICE_PROVIDER.values():
            deb = SimpleNamespace(provider=other, info=info, io_dtype=np.float32)
            assert _torch_comparable(deb, base) == (other == provider), (device, other)
        assert not _torch_comparable(SimpleNamespace(provider=provider, info=SimpleNamespace(source_sha256="x"),
                                                     io_dtype=np.float32), base)

def test_video_ratio(local_model, tmp_path):
    _bench("video", "-m", str(local_model), "-s", "64x48", "--frames", "6", "--repeats", "1", "--out", str(tmp_path))
    payload = _load(tmp_path / "video.json")
    _check_system(payload)
    (row,) = payload["rows"]
    assert row["frames"] == 6 and row["end_to_end_fps"] > 0 and row["model_only_fps"] > 0
    assert row["ratio"] == pytest.approx(row["end_to_end_fps"] / row["model_only_fps"])


def test_tiling_against_whole_image(local_model, tmp_path):
    _bench("tiling", "-m", str(local_model), "-s", "96x64", "--tile", "48,128", "--overlap", "4,6", "-n", "1",
           "--warmup", "0", "--out", str(tmp_path))
    payload = _load(tmp_path / "tiling.json")
    _check_system(payload)
    whole, tiled, tiled6, covering = payload["rows"]
    assert tiled6["tile"] == 48 and tiled6["overlap"] == 6
    # A tile larger than the image runs it whole, and its row says so: once, not once per overlap.
    assert covering["tile"] == 128 and covering["tiles"] == 1 and covering["overlap"] is None
    assert whole["tile"] == 0 and whole["time_vs_whole"] == 1.0
    assert tiled["tile"] == 48 and tiled["tiles"] > 1 and tiled["overlap"] == 4
    # context 4 covers the local model's 5x5 receptive field: tiling is exact up to rounding
    assert tiled["max_abs_diff"] <= 1
    assert tiled["peak_rss_mb"] > 0 and tiled["rss_before_mb"] > 0


def test_quality_methods_and_outputs(local_model, sharp_folder, tmp_path):
    _bench("quality", "-d", str(sharp_folder), "-m", str(local_model), "--condition", "both", "--out", str(tmp_path))
    payload = _load(tmp_path / "quality.json")
    _check_system(payload)
    methods = ["identity", "wiener", "richardson_lucy", "local"]
    assert [(r["condition"], r["method"]) for r in payload["summary"]] == [
        (c, m) for c in ("noise_jpeg", "clean") for m in methods]
    assert len(payload["per_image"]) == 2 * 3 * len(methods)
    assert all(r["images"] == 3 and 0 < r["ssim"] <= 1 for r in payload["summary"])
    assert payload["metric"]["crop_border"] == 15
    md = (tmp_path / "quality.md").read_text()
    assert "richardson_lucy" in md and "## Per image" in md
    import cv2

    sheet = cv2.imread(str(tmp_path / "quality.png"))
    assert sheet is not None and sheet.shape[1] >= 5 * 256  # blurred | wiener | RL | local | sharp

    # deterministic: a second run scores every image identically
    _bench("quality", "-d", str(sharp_folder), "-m", str(local_model), "--condition", "both",
           "--json", str(tmp_path / "again.json"))
    again = _load(tmp_path / "again.json")
    assert [r["psnr"] for r in again["per_image"]] == [r["psnr"] for r in payload["per_image"]]


def test_quality_gopro_pairs_skip_kernel_baselines(local_model, sharp_folder, tmp_path):
    import shutil

    for sub in ("blur", "sharp"):
        (tmp_path / "GOPRO" / "scene" / sub).mkdir(parents=True)
    for name in ("img0.png", "img1.png"):
        shutil.copy(sharp_folder / name, tmp_path / "GOPRO" / "scene" / "sharp" / name)
        shutil.copy(sharp_folder / "img2.png", tmp_path / "GOPRO" / "scene" / "blur" / name)
    _bench("quality", "-d", str(tmp_path / "GOPRO"), "-d", str(sharp_folder), "--limit", "1", "-m", str(local_model),
           "--condition", "both", "--out", str(tmp_path / "out"))
    summary = _load(tmp_path / "out" / "quality.json")["summary"]
    # Real pairs are their own condition, scored once; the kernel baselines run on synthetic blur only.
    real = [r for r in summary if r["condition"] == "real"]
    assert [r["method"] for r in real] == ["identity", "local"] and all(r["images"] == 1 for r in real)
    assert {r["condition"] for r in summary} == {"real", "noise_jpeg", "clean"}
    assert {r["method"] for r in summary if r["condition"] == "clean"} == {"identity", "wiener", "richardson_lucy",
                                                                          "local"}
    nothing = run_cli("deblur-bench", "quality", "-d", str(tmp_path / "GOPRO"), "--baseline", "wiener",
                      "--out", str(tmp_path / "out3"), "-q")
    assert nothing.returncode == 2 and "nothing to measure: real blur/sharp pairs have no true kernel" in nothing.stderr
    # A pair of two sizes is one line naming both files, not a shape-mismatch traceback.
    cv2 = pytest.importorskip("cv2")
    sharp = cv2.imread(str(tmp_path / "GOPRO" / "scene" / "sharp" / "img1.png"))
    cv2.imwrite(str(tmp_path / "GOPRO" / "scene" / "sharp" / "img1.png"), sharp[:, 2:])
    result = run_cli("deblur-bench", "quality", "-d", str(tmp_path / "GOPRO"), "-m", str(local_model),
                     "--out", str(tmp_path / "out2"), "-q")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "blur/img1.png" in result.stderr and "pairs must match" in result.stderr


def test_quality_keeps_models_pairs_and_folders_apart(local_model, sharp_folder, tmp_path):
    # A model file called identity.onnx was reported (and drawn) as the blurred input; pairs of
    # two -d folders had the same names; a half pair vanished without a word.
    import shutil

    for folder in ("day1", "day2"):
        for sub in ("blur", "sharp"):
            (tmp_path / folder / "scene" / sub).mkdir(parents=True)
        shutil.copy(sharp_folder / "img0.png", tmp_path / folder / "scene" / "sharp" / "a.png")
        shutil.copy(sharp_folder / "img2.png", tmp_path / folder / "scene" / "blur" / "a.png")
    shutil.copy(sharp_folder / "img1.png", tmp_path / "day1" / "scene" / "blur" / "lonely.png")
    shutil.copy(local_model, tmp_path / "identity.onnx")
    result = run_cli("deblur-bench", "quality", "-d", str(tmp_path / "day1"), "-d", str(tmp_path / "day2"),
                     "-m", str(tmp_path / "identity.onnx"), "--out", str(tmp_path / "out"), check=True)
    assert "1 image without a partner in blur/ or sharp/ left out: lonely.png" in result.stderr
    payload = _load(tmp_path / "out" / "quality.json")
    assert sorted({r["image"] for r in payload["per_image"]}) == ["day1/scene/blur/a.png", "day2/scene/blur/a.png"]
    model = str(tmp_path / "identity.onnx")
    assert [r["method"] for r in payload["summary"]] == ["identity", model]
    scores = {r["method"]: r["psnr"] for r in payload["summary"]}
    assert scores[model] != scores["identity"]  # the model's own output, not the blurred input


@pytest.mark.skipif(not SET5.is_dir(), reason=f"{SET5} not present (shared sharp-photo data)")
def test_quality_on_set5_baselines_beat_identity(tmp_path):
    _bench("quality", "-d", str(SET5), "--limit", "1", "--max-side", "96", "--condition", "clean",
           "--out", str(tmp_path))
    summary = {r["method"]: r for r in _load(tmp_path / "quality.json")["summary"]}
    assert set(summary) == {"identity", "wiener", "richardson_lucy"}
    assert summary["wiener"]["psnr"] > summary["identity"]["psnr"]
    assert summary["richardson_lucy"]["psnr"] > summary["identity"]["psnr"]


@pytest.mark.parametrize("args, message", [
    (["latency", "-m", "{missing}"], "no such model file"),
    (["tiling", "-m", "{missing}", "-s", "64x64"], "no such model file"),
    (["video", "-m", "{missing}"], "no such model file"),
    (["quality", "-d", "{sharp}", "-m", "{missing}"], "no such model file"),
    (["quality", "-d", "{missing}"], "not a folder"),
    (["latency", "-m", "{model}", "-s", "huge"], "size 'huge'"),
    (["tiling", "-m", "{model}", "--tile", "abc"], "integers"),
    (["latency", "-m", "{model}", "-p", "nosuch"], "not available"),
    (["train-speed", "--variant", "eager,jit"], "choose from eager"),
    (["train-speed", "--crop", "30"], "--crop 30: this generator needs sides that are multiples of 4, at least 8"),
    (["quality", "-d", "{sharp}", "--json", "{out}/q.md"], "name a .json file"),
    (["quality", "-d", "{sharp}", "--baseline", ""], "nothing to measure"),
    (["quality", "-d", "{sharp}", "-d", "{sharp}/../{sharp_name}"], "two folders named"),
    (["quality", "-d", "{sharp}", "--json", "{out}/q.json", "--out", "{out}"], "pass one"),
    (["quality", "-d", "{sharp}", "--json", "{model}/sub/q.json"], "is a file, not a folder"),
])
def test_bad_inputs_exit_2_with_one_line(args, message, local_model, sharp_folder, tmp_path):
    # Before any measuring: a results place that cannot take the results is refused up front.
    fill = {"missing": str(tmp_path / "missing.onnx"), "model": str(local_model), "sharp": str(sharp_folder),
            "out": str(tmp_path / "out"), "sharp_name": sharp_folder.name}
    where = [] if "--json" in args else ["--out", str(tmp_path / "out")]
    result = run_cli("deblur-bench", *[a.format(**fill) for a in args], *where, "-q")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, option", [
    (["latency", "-m", "x.onnx", "-n", "0"], "--runs"),
    (["quality", "-d", ".", "--limit", "0"], "--limit"),
    (["quality", "-d", ".", "--crop-border", "-3"], "--crop-border"),
    (["train-speed", "--ngf", "0"], "--ngf"),
    (["video", "-m", "x.onnx", "--threads", "0"], "--threads"),
])
def test_numbers_out_of_range_are_usage_errors(args, option, tmp_path):
    result = run_cli("deblur-bench", *args, "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and option in result.stderr and "not in the range" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_train_speed_asks_the_generator_for_its_size_multiple(tmp_path):
    # A checkpoint with a coarse branch (1/8 resolution) takes multiples of 8: --crop 36 is
    # refused with the fix, not with a shape error at the first step.
    pytest.importorskip("torch")
    from deblur.train.checkpoint import save_checkpoint
    from deblur.train.models import ResnetGenerator

    args = {"ngf": 4, "n_blocks": 1, "dropout": False, "coarse_blocks": 1}
    ckpt = save_checkpoint(tmp_path / "coarse.pt", ResnetGenerator(**args), arch="resnet_generator", arch_args=args)
    result = run_cli("deblur-bench", "train-speed", "--checkpoint", str(ckpt), "--crop", "36", "--no-amp",
                     "--device", "cpu", "--out", str(tmp_path / "out"), "-q")
    assert result.returncode == 2 and "--crop 36: this generator needs sides that are multiples of 8, at least 16" \
        in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_train_speed_rows_per_variant(tmp_path):
    pytest.importorskip("torch")
    _bench("train-speed", "--ngf", "4", "--n-blocks", "1", "--batch-size", "2", "--crop", "32", "--no-amp",
           "--device", "cpu", "--variant", "eager,channels_last", "-n", "2", "--warmup", "1", "--threads", "1",
           "--out", str(tmp_path))
    payload = _load(tmp_path / "train_speed.json")
    rows = {r["variant"]: r for r in payload["rows"]}
    assert set(rows) == {"eager", "channels_last"}
    assert rows["eager"]["speedup_vs_eager"] == 1.0 and rows["channels_last"]["speedup_vs_eager"] > 0
    for row in rows.values():
        assert row["runs"] == 2 and row["p50_ms"] > 0 and row["dtype"] == "fp32" and row["peak_gpu_mem_mb"] is None
        assert row["mp_per_s"] == pytest.approx(2 * 32 * 32 / 1e6 / (row["p50_ms"] / 1e3))
    assert payload["settings"]["arch_args"] == {"ngf": 4, "n_blocks": 1, "dropout": False}
    assert payload["system"]["torch"] and payload["system"]["gpu"] == "n/a"
    assert payload["benchmark"] == "train_speed" and payload["system"]["threads"] == 1  # torch's, as used
    assert "- threads: 1" in (tmp_path / "train_speed.md").read_text()


def test_parse_size():
    from deblur.benchmarks.latency import parse_size

    assert parse_size("4K") == ("4k", 3840, 2160)
    assert parse_size("640x480") == ("640x480", 640, 480)
    assert parse_size("256²") == ("256", 256, 256)
    assert parse_size("64") == ("64", 64, 64)  # any side, not only the named 256

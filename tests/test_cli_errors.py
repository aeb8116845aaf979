"""The bad-input matrix: the same kinds of bad input through every CLI.

Each case must give exactly one 'error:' line naming the input, exit status 2, no traceback
and no output file. Finer-grained cases per tool live beside the tool's own tests
(test_run_cli, test_export, test_train_cli, test_bench_cli, test_checkpoint, test_video);
the API's side of the matrix is test_runtime_api::test_bad_images_raise_input_error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import run_cli
from local_models import LOCAL_METADATA, local_conv_model
from train_fixtures import ONE_THREAD_ENV, write_photos

# Root reads any file whatever its mode: run permission cases without the capabilities that
# let it (the CI machine runs tests as root).
if os.geteuid() == 0:
    DENY = [shutil.which("setpriv"), "--bounding-set", "-dac_override,-dac_read_search"] if shutil.which("setpriv") \
        else None
else:
    DENY = []


def _photo(path: Path, shape=(48, 64, 3)) -> Path:
    rng = np.random.default_rng(0)
    cv2.imwrite(str(path), (rng.random(shape) * 255).astype(np.uint8))
    return path


def _clip(path: Path, frames: int) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height = 64, 48
        container.start_encoding()
        for i in range(frames):
            image = np.full((48, 64, 3), i * 5 % 256, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode())
    return path


def _audio_only(path: Path) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100)
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 44100, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def _unreadable(path: Path) -> Path:
    path.chmod(0)
    return path


def _cases(tmp: Path, tiny_checkpoint: Path):
    text = tmp / "notes é.txt"
    text.write_text("not an image, model or checkpoint")
    empty = tmp / "empty file.onnx"
    empty.write_bytes(b"")
    fake_jpg = tmp / "fake.jpg"
    fake_jpg.write_text("hello")
    empty_dir = tmp / "empty dir"
    empty_dir.mkdir()
    missing = tmp / "no such ü" / "file.png"
    photo = _photo(tmp / "photo.png")
    model = local_conv_model(tmp / "model.onnx", metadata=LOCAL_METADATA)
    jpeg = _photo(tmp / "full.jpg").read_bytes()
    truncated_jpg = tmp / "truncated.jpg"
    truncated_jpg.write_bytes(jpeg[: len(jpeg) // 2])
    nan_tiff = tmp / "nan.tiff"
    cv2.imwrite(str(nan_tiff), np.full((8, 8, 3), np.nan, np.float32))
    rank3 = local_conv_model(tmp / "rank3.onnx", rank4=False)
    grey_model = local_conv_model(tmp / "one channel.onnx", in_channels=1, metadata=LOCAL_METADATA)
    zero_frames = _clip(tmp / "hollow.mkv", 0)
    full_clip = _clip(tmp / "clip.mkv", 50).read_bytes()
    truncated_clip = tmp / "cut.mkv"
    truncated_clip.write_bytes(full_clip[: len(full_clip) // 2])
    audio = _audio_only(tmp / "song.m4a")
    other_arch = tmp / "critic.pt"
    evil = tmp / "evil.pt"
    evil.write_bytes(b"cos\nsystem\n(S'touch pwned'\ntR.")
    truncated_ckpt = tmp / "cut.pt"
    ckpt = tiny_checkpoint.read_bytes()
    truncated_ckpt.write_bytes(ckpt[: len(ckpt) // 2])
    locked_ckpt = tmp / "locked.pt"
    locked_ckpt.write_bytes(ckpt)
    locked_photo = tmp / "locked.png"
    locked_photo.write_bytes(photo.read_bytes())
    locked_model = tmp / "locked.onnx"
    locked_model.write_bytes(model.read_bytes())
    resumable = tmp / "run with text checkpoint"
    (resumable / "checkpoints").mkdir(parents=True)
    (resumable / "checkpoints" / "latest.pt").write_text("not a checkpoint")
    photos = tmp / "photos"
    write_photos(photos, 2)
    fakes = tmp / "fakes"
    fakes.mkdir()
    (fakes / "a.png").write_text("no")
    (fakes / "b.jpg").write_bytes(b"")

    import torch  # the checkpoint cases need it anyway (deblur-export, deblur-train)

    torch.save({"model.0.weight": torch.zeros(8, 3, 4, 4), "model.2.weight": torch.zeros(16, 8, 4, 4)}, other_arch)

    run = ["deblur-run"]
    export = ["deblur-export"]
    bench = ["deblur-bench"]
    train = ["deblur-train", "--ngf", "8", "--n-blocks", "1", "--crop", "32", "--steps", "1", "--workers", "0",
             "--content", "l1", "--device", "cpu"]
    o = str(tmp / "o.onnx")
    return {
        "run: missing image": (["deblur-run", str(missing)], missing.name),
        "run: text as .jpg": (["deblur-run", str(fake_jpg)], fake_jpg.name),
        "run: truncated jpeg": ([*run, str(truncated_jpg), "-m", str(model)], truncated_jpg.name),
        "run: unreadable image": ([*run, str(_unreadable(locked_photo)), "-m", str(model)], locked_photo.name),
        "run: NaN float image": ([*run, str(nan_tiff), "-m", str(model)], nan_tiff.name),
        "run: zero-frame video": ([*run, str(zero_frames), "-m", str(model)], zero_frames.name),
        "run: truncated video": ([*run, str(truncated_clip), "-m", str(model)], truncated_clip.name),
        "run: no video stream": ([*run, str(audio), "-m", str(model)], audio.name),
        "run: empty model": (["deblur-run", str(fake_jpg), "-m", str(empty)], empty.name),
        "run: directory as model": (["deblur-run", str(fake_jpg), "-m", str(empty_dir)], empty_dir.name),
        "run: text as model": ([*run, str(photo), "-m", str(text)], text.name),
        "run: unreadable model": ([*run, str(photo), "-m", str(_unreadable(locked_model))], locked_model.name),
        "run: rank-3 model": ([*run, str(photo), "-m", str(rank3)], rank3.name),
        "run: 1-channel model": ([*run, str(photo), "-m", str(grey_model)], grey_model.name),
        "export: text as checkpoint": ([*export, str(text), o], text.name),
        "export: missing checkpoint": ([*export, str(missing), o], missing.name),
        "export: truncated checkpoint": ([*export, str(truncated_ckpt), o], truncated_ckpt.name),
        "export: unreadable checkpoint": ([*export, str(_unreadable(locked_ckpt)), o], locked_ckpt.name),
        "export: other architecture": ([*export, str(other_arch), o], other_arch.name),
        "export: code-executing pickle": ([*export, str(evil), o], evil.name),
        "train: missing data folder": ([*train, "--data", str(missing.parent), "--out", str(tmp / "r1")],
                                       missing.parent.name),
        "train: empty data folder": ([*train, "--data", str(empty_dir), "--out", str(tmp / "r2")], empty_dir.name),
        "train: only unreadable images": ([*train, "--data", str(fakes), "--out", str(tmp / "r3")], "2 training images"),
        "train: text as VGG weights": ([*train, "--data", str(photos), "--out", str(tmp / "r4"), "--content",
                                        "perceptual", "--vgg-weights", str(text)], text.name),
        "train: resume from a text checkpoint": (["deblur-train", "--out", str(resumable), "--resume"], "latest.pt"),
        "bench latency: text as model": ([*bench, "latency", "-m", str(text), "-s", "256", "-n", "1",
                                          "--warmup", "0", "--out", str(tmp / "b1")], text.name),
        "bench latency: rank-3 model": ([*bench, "latency", "-m", str(rank3), "-s", "64x64", "-n", "1",
                                         "--warmup", "0", "--out", str(tmp / "b1")], rank3.name),
        "bench latency: other-arch torch checkpoint": ([*bench, "latency", "-m", str(model), "--torch", str(other_arch),
                                                        "-s", "64x64", "-n", "1", "--warmup", "0",
                                                        "--out", str(tmp / "b1")], other_arch.name),
        "bench quality: missing folder": ([*bench, "quality", "-d", str(missing.parent), "--out", str(tmp / "b2")],
                                          missing.parent.name),
        "bench quality: no readable photos": ([*bench, "quality", "-d", str(fakes), "-m", str(model),
                                               "--out", str(tmp / "b2")], fakes.name),
        "bench tiling: empty model": ([*bench, "tiling", "-m", str(empty), "--out", str(tmp / "b3")], empty.name),
        "bench tiling: truncated photo": ([*bench, "tiling", "-m", str(model), "--photo", str(truncated_jpg),
                                           "-s", "64x64", "--out", str(tmp / "b3")], truncated_jpg.name),
    }


CASES = [
    "run: missing image", "run: text as .jpg", "run: truncated jpeg", "run: unreadable image",
    "run: NaN float image", "run: zero-frame video", "run: truncated video", "run: no video stream",
    "run: empty model", "run: directory as model", "run: text as model", "run: unreadable model",
    "run: rank-3 model", "run: 1-channel model",
    "export: text as checkpoint", "export: missing checkpoint", "export: truncated checkpoint",
    "export: unreadable checkpoint", "export: other architecture", "export: code-executing pickle",
    "train: missing data folder", "train: empty data folder", "train: only unreadable images",
    "train: text as VGG weights", "train: resume from a text checkpoint",
    "bench latency: text as model", "bench latency: rank-3 model", "bench latency: other-arch torch checkpoint",
    "bench quality: missing folder", "bench quality: no readable photos", "bench tiling: empty model",
    "bench tiling: truncated photo",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gives_one_line_and_exit_2(tmp_path, tiny_checkpoint, case):
    permissions = "unreadable" in case and "images" not in case
    if permissions and DENY is None:
        pytest.skip("running as root without setpriv: file permissions cannot be enforced")
    args, name = _cases(tmp_path, tiny_checkpoint)[case]
    before = {p.name for p in tmp_path.rglob("*")}
    env = {**ONE_THREAD_ENV, "TORCH_HOME": str(tmp_path / "torch_home")}
    if permissions:
        exe = str(Path(sys.executable).parent / args[0])
        result = subprocess.run([*DENY, exe, *args[1:]], capture_output=True, text=True, cwd=tmp_path, env=env)
    else:
        result = run_cli(*args, cwd=tmp_path, env=env)
    assert result.returncode == 2, (case, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and name in errors[0], result.stderr
    new = {p.name for p in tmp_path.rglob("*")} - before
    assert not [n for n in new if n.endswith((".onnx", ".png", ".jpg", ".pt", ".mkv", ".m4a", ".tmp"))], new
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 2, 3), (2, 1), (5, 1, 3)])
def test_one_and_two_pixel_images_come_back_the_same_size(tmp_path, shape):
    model = local_conv_model(tmp_path / "model.onnx", metadata=LOCAL_METADATA)
    src = _photo(tmp_path / "tiny.png", shape)
    result = run_cli("deblur-run", str(src), "-m", str(model), "-q", env=ONE_THREAD_ENV)
    assert result.returncode == 0, result.stderr
    out = cv2.imread(str(tmp_path / "tiny_deblurred.png"), cv2.IMREAD_UNCHANGED)
    assert out.shape == shape


@pytest.mark.parametrize("tool, module, extras", [
    ("deblur-export", "onnx", ["export"]),
    ("deblur-export", "torch", ["export"]),  # [train] brings torch but not onnx
    ("deblur-train", "torch", ["train"]),
])
def test_a_missing_optional_module_names_the_extra_that_brings_it(tmp_path, tiny_checkpoint, tool, module, extras):
    # What a runtime-only install ([cpu]) sees when it runs the other tools: the hint must name
    # the tool's own extra, not the one already installed nor one that lacks the rest.
    package = "deblur.export.cli" if tool == "deblur-export" else "deblur.train.cli"
    args = [str(tiny_checkpoint), str(tmp_path / "m.onnx")] if tool == "deblur-export" else \
        ["--data", str(tmp_path), "--out", str(tmp_path / "run")]
    code = (f"import sys; sys.modules[{module!r}] = None; from {package} import main; "
            f"main({args!r}, prog_name={tool!r})")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ONE_THREAD_ENV)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and module in lines[0], result.stderr
    hint = ("pip install torch==2.13.0, then " if module == "torch" else "") + " or ".join(
        f"pip install '.[{extra}]'" for extra in extras) + " in the deblur-edge checkout"
    assert lines[0].endswith(f"({hint})"), lines[0]

"""The same bad inputs through every CLI: one 'error:' line naming the input, exit 2, no traceback."""

import pytest

from conftest import run_cli


def _cases(tmp):
    text = tmp / "notes é.txt"
    text.write_text("not an image, model or checkpoint")
    empty = tmp / "empty file.onnx"
    empty.write_bytes(b"")
    fake_jpg = tmp / "fake.jpg"
    fake_jpg.write_text("hello")
    empty_dir = tmp / "empty dir"
    empty_dir.mkdir()
    missing = tmp / "no such ü" / "file.png"
    return {
        "run: missing image": (["deblur-run", str(missing)], missing.name),
        "run: text as .jpg": (["deblur-run", str(fake_jpg)], fake_jpg.name),
        "run: empty model": (["deblur-run", str(fake_jpg), "-m", str(empty)], empty.name),
        "run: directory as model": (["deblur-run", str(fake_jpg), "-m", str(empty_dir)], empty_dir.name),
        "export: text as checkpoint": (["deblur-export", str(text), str(tmp / "o.onnx")], text.name),
        "export: missing checkpoint": (["deblur-export", str(missing), str(tmp / "o.onnx")], missing.name),
        "train: missing data folder": (["deblur-train", "--data", str(missing.parent), "--out", str(tmp / "r1"),
                                        "--content", "l1"], missing.parent.name),
        "train: empty data folder": (["deblur-train", "--data", str(empty_dir), "--out", str(tmp / "r2"),
                                      "--content", "l1"], empty_dir.name),
        "bench latency: text as model": (["deblur-bench", "latency", "-m", str(text), "-s", "256", "-n", "1",
                                          "--warmup", "0", "--out", str(tmp / "b1")], text.name),
        "bench quality: missing folder": (["deblur-bench", "quality", "-d", str(missing.parent),
                                           "--out", str(tmp / "b2")], missing.parent.name),
        "bench tiling: empty model": (["deblur-bench", "tiling", "-m", str(empty), "--out", str(tmp / "b3")],
                                      empty.name),
    }


@pytest.mark.parametrize("case", [
    "run: missing image", "run: text as .jpg", "run: empty model", "run: directory as model",
    "export: text as checkpoint", "export: missing checkpoint", "train: missing data folder",
    "train: empty data folder", "bench latency: text as model", "bench quality: missing folder",
    "bench tiling: empty model",
])
def test_bad_input_gives_one_line_and_exit_2(tmp_path, case):
    args, name = _cases(tmp_path)[case]
    before = {p.name for p in tmp_path.rglob("*")}
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2, (case, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and name in errors[0], result.stderr
    new = {p.name for p in tmp_path.rglob("*")} - before
    assert not [n for n in new if n.endswith((".onnx", ".png", ".jpg", ".pt", ".tmp"))], new  # nothing written

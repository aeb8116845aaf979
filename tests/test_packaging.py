"""The dependency tiers: running models never installs torch; torch is always capped."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _names(reqs):
    return {re.split(r"[<>=!\[ ;]", r, maxsplit=1)[0].lower() for r in reqs}


def test_runtime_installs_have_no_torch():
    extras = PROJECT["optional-dependencies"]
    for reqs in (PROJECT["dependencies"], extras["cpu"], extras["gpu"]):
        assert "torch" not in _names(reqs)
    assert "onnxruntime" in _names(extras["cpu"]) and "onnxruntime-gpu" in _names(extras["gpu"])


def test_every_torch_requirement_is_capped_at_the_cpu_wheel_on_disk():
    for extra, reqs in PROJECT["optional-dependencies"].items():
        for req in reqs:
            if _names([req]) == {"torch"}:
                assert "<=2.13.0" in req or "==2.13.0" in req, (extra, req)


def test_entry_points_exist():
    assert set(PROJECT["scripts"]) == {"deblur-export", "deblur-run", "deblur-train", "deblur-bench"}


def test_runtime_sources_never_import_torch():
    for path in (ROOT / "runtime").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(import torch|from torch)", text, re.M), path


def test_the_wheel_ships_both_default_models_and_the_examples(tmp_path):
    # What `pip install deblur-edge` gets: Deblurrer() must find its models there, not in a checkout.
    import subprocess
    import sys
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("deblur_edge-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for model in ("default.onnx", "default_gpu.onnx"):
            assert zf.read(f"deblur/runtime/models/{model}") == (ROOT / "runtime" / "models" / model).read_bytes()
    assert {"deblur/runtime/assets/astronaut.jpg", "deblur/runtime/assets/clock_motion.png"} <= names
    assert not any(name.endswith(".pt") for name in names)  # training weights stay in the repository

"""Shared fixtures: tiny generators, checkpoints and exported models made in the test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TINY_ARGS = {"ngf": 8, "n_blocks": 1, "dropout": True}


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch")
    from deblur.train.checkpoint import save_checkpoint
    from deblur.train.models import create_generator

    torch.manual_seed(0)
    model = create_generator("resnet_generator", **TINY_ARGS)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model, arch="resnet_generator", arch_args=TINY_ARGS, step=7, meta={"data": ["synthetic"]})
    return path


@pytest.fixture(scope="session")
def tiny_onnx(tiny_checkpoint, tmp_path_factory) -> Path:
    from deblur.export.exporter import export_checkpoint

    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_checkpoint(tiny_checkpoint, path)
    return path


def run_cli(*args: str, check: bool = False, **kwargs) -> subprocess.CompletedProcess:
    """Run a console script of this package through its entry point, as a user would."""
    exe = Path(sys.executable).parent / args[0]
    result = subprocess.run([str(exe), *args[1:]], capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result

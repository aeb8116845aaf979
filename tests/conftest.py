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


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Four short clips: even/odd sizes, 25 fps/NTSC, with and without AAC audio."""
    from fractions import Fraction

    from video_fixtures import make_clip

    d = tmp_path_factory.mktemp("clips")
    return {
        "even25_aac": make_clip(d / "even25_aac.mp4"),
        "odd_ntsc_aac": make_clip(
            d / "odd_ntsc_aac.mp4", w=65, h=49, n=24, fps=Fraction(30000, 1001)
        ),
        "even_ntsc_mute": make_clip(
            d / "even_ntsc_mute.mp4", n=40, fps=Fraction(30000, 1001), audio=None
        ),
        "odd25_mute": make_clip(d / "odd25_mute.mp4", w=65, h=49, n=24, audio=None),
    }

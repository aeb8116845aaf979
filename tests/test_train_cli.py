import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from conftest import run_cli  # noqa: E402
from train_fixtures import ONE_THREAD_ENV, write_photos  # noqa: E402

TINY = ["--ngf", "8", "--n-blocks", "1", "--crop", "64", "--val-crop", "64", "--val-count", "2", "--batch-size", "2",
        "--ndf", "8", "--critic-steps", "1", "--content", "l1", "--workers", "0", "--device", "cpu"]


@pytest.fixture
def env(tmp_path):
    # An empty torch hub cache: no VGG weights, whatever this machine has.
    return {**ONE_THREAD_ENV, "TORCH_HOME": str(tmp_path / "torch_home")}


def _error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert lines[-1].startswith("error: ") and "Traceback" not in result.stderr
    return lines[-1]


def test_help_documents_the_content_loss_default_and_version():
    result = run_cli("deblur-train", "--help", check=True)
    # --no-amp / --no-compile: a resumed run keeps the stored setting unless told otherwise.
    for needle in ("--content", "perceptual", "l1+fft", "--vgg-weights", "--resume", "--amp / --no-amp",
                   "--compile / --no-compile", "--fft-weight", "torchrun"):
        assert needle in result.stdout
    assert run_cli("deblur-train", "--version", check=True).stdout.strip().endswith("0.1.0")


def test_cli_trains_stops_and_resumes(tmp_path, env):
    write_photos(tmp_path / "photos", 4)
    args = ["deblur-train", "--data", str(tmp_path / "photos"), "--out", str(tmp_path / "run"), *TINY,
            "--steps", "6", "--val-every", "3"]
    run_cli(*args, "--stop-at", "3", check=True, env=env)
    result = run_cli("deblur-train", "--out", str(tmp_path / "run"), "--resume", "--workers", "1", "-q", check=True,
                     env=env)
    assert "step 6: validation PSNR" in result.stdout and "latest.pt" in result.stdout
    assert "val step" not in result.stderr and "resumed" not in result.stderr  # -q: no progress lines
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["steps"] == 6 and config["workers"] == 1 and config["arch_args"]["ngf"] == 8
    refused = run_cli("deblur-train", "--out", str(tmp_path / "run"), "--resume", "--seed", "3", env=env)
    assert "these differ: seed" in _error_line(refused)


def _trained_source(tmp_path, env, steps: int):
    """Content-only training options for tiny runs, and the checkpoint of one such run (tmp/a)."""
    write_photos(tmp_path / "photos", 4)
    common = ["--data", str(tmp_path / "photos"), "--crop", "64", "--val-crop", "64", "--val-count", "2",
              "--batch-size", "2", "--content", "l1", "--adv-weight", "0", "--workers", "0", "--device", "cpu"]
    run_cli("deblur-train", *common, "--out", str(tmp_path / "a"), "--ngf", "8", "--n-blocks", "1",
            "--steps", str(steps), "--val-every", str(steps), check=True, env=env)
    return common, tmp_path / "a" / "checkpoints" / "latest.pt"


def test_init_from_starts_a_new_run_from_trained_weights(tmp_path, env):
    common, source = _trained_source(tmp_path, env, steps=4)
    # No --ngf/--n-blocks: the checkpoint's architecture; --no-dropout changes only that.
    run_cli("deblur-train", *common, "--out", str(tmp_path / "b"), "--init-from", str(source), "--no-dropout",
            "--steps", "2", "--val-every", "2", check=True, env=env)
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["arch_args"] == {"ngf": 8, "n_blocks": 1, "dropout": False}
    assert config["init_from"] == str(source)

    def val(run):
        rows = (tmp_path / run / "val.csv").read_text().splitlines()[1:]
        return {int(r.split(",")[0]): float(r.split(",")[1]) for r in rows}

    # Step 0 of the new run scores what the old run ended with, not a random network.
    assert val("b")[0] == pytest.approx(val("a")[4], abs=1e-6)
    # The lineage survives a resume, and the export counts all the training (4 + 2 + 1).
    run_cli("deblur-train", "--out", str(tmp_path / "b"), "--resume", "--steps", "3", check=True, env=env)
    from deblur.train.checkpoint import load_checkpoint

    meta = load_checkpoint(tmp_path / "b" / "checkpoints" / "latest.pt")["meta"]
    assert meta["init"]["steps"] == 4 and meta["init"]["path"] == str(source.resolve()) and meta["total_steps"] == 7
    run_cli("deblur-export", str(tmp_path / "b" / "checkpoints" / "latest.pt"), str(tmp_path / "b.onnx"),
            "--no-simplify", check=True, env=env)
    from deblur.runtime.deblurrer import Deblurrer

    assert Deblurrer(tmp_path / "b.onnx", "cpu").info.train_step == 7
    # A wider, deeper generator grown from it also starts where the old run ended.
    grown = run_cli("deblur-train", *common, "--out", str(tmp_path / "c"), "--init-from", str(source),
                    "--ngf", "16", "--n-blocks", "2", "--steps", "1", "--val-every", "1", check=True, env=env)
    assert "grown from ngf 8 -> 16, n_blocks 1 -> 2" in grown.stderr and "pass --warmup" in grown.stderr
    assert val("c")[0] == pytest.approx(val("a")[4], abs=1e-3)
    assert load_checkpoint(tmp_path / "c" / "checkpoints" / "latest.pt")["arch_args"]["ngf"] == 16
    refused = run_cli("deblur-train", *common, "--out", str(tmp_path / "e"), "--init-from", str(source),
                      "--ngf", "4", "--steps", "2", env=env)
    assert "can only grow: ngf 8 -> 4" in _error_line(refused)
    # Weights trained elsewhere (DeblurGAN's own file, no step count): the total is unknown,
    # and the export says so rather than counting only this run's steps.
    import torch

    from deblur.train.checkpoint import load_checkpoint as load

    foreign = tmp_path / "latest_net_G.pth"
    torch.save(load(source)["generator"], foreign)
    run_cli("deblur-train", *common, "--out", str(tmp_path / "d"), "--init-from", str(foreign),
            "--steps", "1", "--val-every", "1", check=True, env=env)
    meta = load(tmp_path / "d" / "checkpoints" / "latest.pt")["meta"]
    assert meta["init"]["steps"] is None and meta["total_steps"] is None


def test_a_coarse_branch_grown_on_frozen_weights_trains_alone_and_runs(tmp_path, env):
    common, source = _trained_source(tmp_path, env, steps=2)
    grown = run_cli("deblur-train", *common, "--out", str(tmp_path / "b"), "--init-from", str(source),
                    "--coarse-blocks", "1", "--train-only", "coarse.", "--lr", "1e-2", "--steps", "3",
                    "--val-every", "3", check=True, env=env)
    assert "grown from coarse_blocks 0 -> 1" in grown.stderr
    from deblur.train.checkpoint import load_checkpoint

    before, after = load_checkpoint(source)["generator"], load_checkpoint(tmp_path / "b" / "checkpoints" / "latest.pt")
    assert after["arch_args"]["coarse_blocks"] == 1
    for key, value in before.items():  # frozen: the trained weights did not move
        assert torch.equal(after["generator"][key], value), key
    assert after["generator"]["coarse.body.7.weight"].abs().sum() > 0  # the silent branch learned
    run_cli("deblur-export", str(tmp_path / "b" / "checkpoints" / "latest.pt"), str(tmp_path / "b.onnx"),
            "--no-simplify", check=True, env=env)
    import numpy as np

    from deblur.runtime.deblurrer import Deblurrer

    model = Deblurrer(tmp_path / "b.onnx", "cpu")
    assert model.info.size_multiple == 8
    image = np.random.default_rng(0).integers(0, 256, (37, 50, 3), dtype=np.uint8)
    assert model(image).shape == image.shape  # padded to multiples of 8 and cropped back
    refused = run_cli("deblur-train", *common, "--out", str(tmp_path / "c"), "--init-from", str(source),
                      "--train-only", "coarse.", "--steps", "1", env=env)
    assert "--train-only coarse.: no generator parameter is named so" in _error_line(refused)
    refused = run_cli("deblur-train", *common, "--out", str(tmp_path / "d"), "--init-from", str(source),
                      "--coarse-blocks", "1", "--val-crop", "60", "--steps", "1", env=env)
    assert "--val-crop 60: this generator needs sides that are multiples of 8" in _error_line(refused)


@pytest.mark.parametrize("case", ["empty", "unreadable", "crop", "vgg"])
def test_cli_errors_are_one_line_with_exit_2(tmp_path, env, case):
    data = tmp_path / "data"
    extra: list[str] = []
    if case == "empty":
        data.mkdir()
        expected = "no images found"
    elif case == "unreadable":
        data.mkdir()
        (data / "a.png").write_bytes(b"garbage")
        (data / "b.jpg").write_bytes(b"")
        expected = "none of the 2 training images could be read"
    elif case == "crop":
        write_photos(data, 2, size=(40, 60))
        expected = "crop 64 px is larger than every image"
    else:
        write_photos(data, 2)
        extra = ["--content", "perceptual"]
        expected = "VGG19 weights"
    result = run_cli("deblur-train", "--data", str(data), "--out", str(tmp_path / "run"), *TINY, *extra,
                     "--steps", "2", env=env)
    line = _error_line(result)
    assert expected in line, line
    if case == "unreadable":
        assert "a.png: unreadable image; skipped" in result.stderr
    if case == "vgg":
        assert str(tmp_path / "torch_home" / "hub" / "checkpoints") in line and "--content l1+fft" in line
        assert not (tmp_path / "run").exists()


def test_unreadable_images_are_skipped_with_a_warning_and_training_goes_on(tmp_path, env):
    write_photos(tmp_path / "data", 3)
    (tmp_path / "data" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = run_cli("deblur-train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), *TINY,
                     "--steps", "2", check=True, env=env)
    assert "broken.png: unreadable image; skipped" in result.stderr
    assert (tmp_path / "run" / "checkpoints" / "latest.pt").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_with_gloo(tmp_path, env):
    write_photos(tmp_path / "photos", 8)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), "-m", "deblur.train.cli",
               "--data", str(tmp_path / "photos"), "--out", str(tmp_path / "run"), *TINY,
               "--steps", "4", "--log-every", "1"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    import torch

    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "latest.pt", weights_only=True)
    assert ckpt["step"] == 4 and len(ckpt["rng"]) == 2  # both ranks' RNG states, for resuming
    assert not torch.equal(ckpt["rng"][0]["torch"], ckpt["rng"][1]["torch"])  # per-rank seeds
    rows = (tmp_path / "run" / "train.csv").read_text().splitlines()
    assert len(rows) == 5  # header + 4 steps, written once (rank 0 only)
    assert result.stdout.count("validation PSNR") == 1


@pytest.mark.parametrize("variable", ["INIT", "DROPOUT", "SEED"])
def test_recipe_refuses_new_run_settings_on_an_existing_run(tmp_path, variable):
    # Otherwise INIT=... on the default RUN_DIR would quietly resume the old run instead.
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "latest.pt").write_bytes(b"")
    recipe = Path(__file__).resolve().parents[1] / "train" / "recipes" / "default_model.sh"
    result = subprocess.run(["bash", str(recipe), str(tmp_path / "data"), str(run)], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", variable: "0"})
    assert result.returncode == 2 and f"{run} already holds a run; INIT, DROPOUT and SEED" in result.stderr


def test_gpu_recipe_refuses_compile_auto_with_fixed_steps(tmp_path):
    # auto is decided by a calibration that FIXED_STEPS skips: say so before unpacking anything.
    recipe = Path(__file__).resolve().parents[1] / "train" / "recipes" / "gpu_session.sh"
    result = subprocess.run(["bash", str(recipe), str(tmp_path / "data.tar"), "1", str(tmp_path / "out")],
                            capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "FIXED_STEPS": "10", "COMPILE": "auto"})
    assert result.returncode == 2 and "COMPILE=auto decides by calibrating" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_stops_after_the_step_with_a_checkpoint_to_resume(tmp_path, env, sig):
    # As Ctrl-C or `timeout` do it: the signal goes to the whole process group, data worker
    # included; the run saves the step it finished (not the last --checkpoint-every) and exits
    # 128 + signal, and --resume carries on from there.
    import os
    import signal
    import time

    from deblur.train.checkpoint import load_checkpoint

    write_photos(tmp_path / "photos", 4)
    run = tmp_path / "run"
    args = [str(Path(sys.executable).with_name("deblur-train")), "--data", str(tmp_path / "photos"),
            "--out", str(run), *TINY, "--workers", "1", "--adv-weight", "0", "--steps", "100000",
            "--val-every", "100000", "--checkpoint-every", "100000", "--log-every", "1"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while not (run / "train.csv").is_file() or len((run / "train.csv").read_text().splitlines()) < 4:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    os.killpg(proc.pid, getattr(signal, sig))
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + getattr(signal, sig), stderr
    assert f"{sig}: stopping after this step" in stderr and "continue with --resume" in stderr
    assert "Traceback" not in stderr
    step = load_checkpoint(run / "checkpoints" / "latest.pt")["step"]
    assert step >= 3 and f"stopped at step {step} " in stderr
    assert f"stopped at step {step}, checkpoint" in stdout and "last validation (step 0): PSNR" in stdout
    resumed = run_cli("deblur-train", "--out", str(run), "--resume", "--steps", str(step + 2), check=True, env=env)
    assert f"step {step + 2}: validation PSNR" in resumed.stdout


def test_running_out_of_gpu_memory_is_one_line_naming_the_fix(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from deblur.train import trainer
    from deblur.train.cli import main

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trainer, "train", out_of_memory)
    write_photos(tmp_path / "data", 2)
    result = CliRunner().invoke(main, ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"),
                                       "--batch-size", "64", "--crop", "256"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "out of GPU memory at --batch-size 64, --crop 256, --val-crop 256: start a run with smaller ones" \
        in result.output

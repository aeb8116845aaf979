import json
import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from train_fixtures import tiny_overrides, write_photos  # noqa: E402

from deblur.train.checkpoint import load_checkpoint, load_generator  # noqa: E402
from deblur.train.config import TrainError, make_config  # noqa: E402
from deblur.train.trainer import resume_config, train  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    # 2 shared cores: two intra-op threads spin against other jobs and run 100x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    write_photos(folder, 6)
    return folder


def _rows(run_dir, kind):
    return [row for row in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if row["kind"] == kind]


def test_tiny_model_learns_and_the_run_folder_has_everything(photos, tmp_path):
    config = make_config(**tiny_overrides(photos, steps=60, critic_steps=2, val_every=30, lr=1e-3, workers=1))
    result = train(config, tmp_path / "run")
    val = _rows(tmp_path / "run", "val")
    assert [r["step"] for r in val] == [0, 30, 60]
    assert val[-1]["psnr"] > val[0]["psnr"] + 2.0, val
    assert val[-1]["ssim"] > val[0]["ssim"]
    assert val[0]["psnr_identity"] == val[-1]["psnr_identity"] > 10  # the do-nothing baseline, fixed pairs
    train_rows = _rows(tmp_path / "run", "train")
    assert [r["step"] for r in train_rows] == list(range(5, 61, 5))
    assert all(np.isfinite([r["loss_g"], r["critic_gap"], r["gradient_penalty"], r["step_time"]]).all()
               for r in train_rows)
    assert train_rows[-1]["lr"] < train_rows[0]["lr"] == 1e-3  # decays over the second half
    run = tmp_path / "run"
    assert (run / "train.csv").read_text().splitlines()[0].startswith("step,lr,loss_critic")
    assert len((run / "val.csv").read_text().splitlines()) == 4
    assert sorted(p.name for p in (run / "samples").iterdir()) == \
        ["step_0000000.png", "step_0000030.png", "step_0000060.png"]
    assert json.loads((run / "config.json").read_text())["critic_steps"] == 2
    # The checkpoint is in the export format and carries what resuming needs.
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt["format"] == "deblur-edge-checkpoint" and ckpt["step"] == 60
    assert ckpt["arch"] == "resnet_generator" and ckpt["arch_args"] == {"ngf": 8, "n_blocks": 1, "dropout": True}
    assert {"critic", "optimizers", "scalers", "rng", "config"} <= set(ckpt)
    assert ckpt["meta"]["val"]["psnr"] == result.val["psnr"]
    assert load_generator(result.checkpoint).step == 60


def test_resume_after_an_interruption_reproduces_the_uninterrupted_run(photos, tmp_path):
    config = make_config(**tiny_overrides(photos, steps=12, critic_steps=2, checkpoint_every=4))
    train(config, tmp_path / "straight")
    train(config, tmp_path / "interrupted", stop_at=7)  # a checkpoint at 4 and at 7
    assert load_checkpoint(tmp_path / "interrupted" / "checkpoints" / "latest.pt")["step"] == 7
    torch.manual_seed(999)  # the resumed run must not depend on the process's RNG state
    np.random.seed(999)
    resumed = resume_config(tmp_path / "interrupted", {})
    assert resumed == config
    # A crash after step 7's checkpoint but after step 9 was logged: the resumed run logs 9 again.
    run = tmp_path / "interrupted"
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"kind": "train", "step": 9, "loss_g": 1.0}) + "\n")
        f.write('{"kind": "train", "step": 10, "lr": 0.0')  # torn by the crash (full disk, power loss)
    with open(run / "train.csv", "a") as f:
        f.write("9,0.1,0,1,0,1,0,0,0.1\n")
        f.write("1")  # the start of "12,..." torn off: a whole step field, a ragged row
    train(resumed, tmp_path / "interrupted", resume=True)
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "latest.pt")
    b = load_checkpoint(tmp_path / "interrupted" / "checkpoints" / "latest.pt")
    assert a["step"] == b["step"] == 12
    for part in ("generator", "critic"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key}"
    assert a["optimizers"]["generator"]["state"][0]["step"] == b["optimizers"]["generator"]["state"][0]["step"]
    train_rows = _rows(tmp_path / "interrupted", "train")
    assert [r["step"] for r in train_rows] == [5, 7, 10, 12]  # the stop wrote its row; no step twice
    csv_steps = [int(line.split(",")[0]) for line in (run / "train.csv").read_text().splitlines()[1:]]
    assert csv_steps == [5, 7, 10, 12]


def test_a_new_run_does_not_append_to_the_logs_of_one_that_died_before_its_checkpoint(photos, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"kind": "val", "step": 0, "psnr": 1.0}) + "\n")
    (run / "val.csv").write_text("step,psnr,ssim,psnr_identity,ssim_identity\n0,1,0,1,0\n")
    (run / "train.csv").write_text("step,lr\n1,0.1\n")
    train(make_config(**tiny_overrides(photos, steps=2, critic_steps=1, val_every=2)), run)
    assert [r["step"] for r in _rows(run, "val")] == [0, 2] and _rows(run, "val")[0]["psnr"] != 1.0
    assert [line.split(",")[0] for line in (run / "val.csv").read_text().splitlines()] == ["step", "0", "2"]
    assert (run / "train.csv").read_text().startswith("step,lr,loss_critic")


def test_resume_refuses_changes_that_alter_the_run(photos, tmp_path, caplog):
    config = make_config(**tiny_overrides(photos, steps=3, critic_steps=1))
    train(config, tmp_path / "run")
    with pytest.raises(TrainError, match="already holds a run"):
        train(config, tmp_path / "run")
    with pytest.raises(TrainError, match=r"these differ: seed \(0 -> 1\)"):
        resume_config(tmp_path / "run", {"seed": 1})
    # Refused changes leave no notice of accepted ones behind (a --steps notice, then the refusal).
    caplog.clear()
    with caplog.at_level(logging.WARNING), pytest.raises(TrainError, match="these differ: seed"):
        resume_config(tmp_path / "run", {"steps": 9, "seed": 1})
    assert "--steps" not in caplog.text
    # What a non-finite loss asks for: a lower LR, or no AMP, from the last good checkpoint.
    with caplog.at_level(logging.WARNING):
        assert resume_config(tmp_path / "run", {"lr": 1e-5}).lr == 1e-5
    assert "--lr 0.0001 -> 1e-05: the learning rate differs from here on" in caplog.text
    with caplog.at_level(logging.WARNING):
        resume_config(tmp_path / "run", {"val": [str(photos)]})
    assert "--val changed" in caplog.text and "not comparable" in caplog.text
    caplog.clear()  # both at once: told of the settings the resume ends up with, not "no --val"
    with caplog.at_level(logging.WARNING):
        resume_config(tmp_path / "run", {"data": [str(photos), str(photos)], "val": [str(photos)]})
    assert "--data changed" in caplog.text and "--val changed" in caplog.text and "no --val" not in caplog.text
    with caplog.at_level(logging.WARNING):  # rounds differently: said like --channels-last
        resume_config(tmp_path / "run", {"compile": True})
    assert "--compile changed: the same computation compiled otherwise" in caplog.text
    with pytest.raises(TrainError, match="arch_args"):
        resume_config(tmp_path / "run", {"arch_args": {"ngf": 16}})
    assert resume_config(tmp_path / "run", {"workers": 2, "val_every": 7, "arch_args": {"ngf": 8}}).workers == 2
    assert resume_config(tmp_path / "run", {"amp": True}).amp  # e.g. continuing on a GPU or a bf16 CPU
    with pytest.raises(TrainError, match="finished at step 3; pass a larger --steps"):
        train(resume_config(tmp_path / "run", {}), tmp_path / "run", resume=True)
    with pytest.raises(TrainError, match="is at step 3, past --steps 2; pass a larger --steps"):
        train(resume_config(tmp_path / "run", {"steps": 2}), tmp_path / "run", resume=True)
    with pytest.raises(TrainError, match="nothing to resume"):
        resume_config(tmp_path / "other", {})


def test_non_finite_loss_stops_with_the_last_good_checkpoint_intact(photos, tmp_path, monkeypatch):
    from deblur.train import losses

    calls = {"n": 0}
    original = losses.L1Loss.forward

    def poisoned(self, restored, sharp):
        calls["n"] += 1
        value = original(self, restored, sharp)
        return value * float("nan") if calls["n"] >= 7 else value

    monkeypatch.setattr(losses.L1Loss, "forward", poisoned)
    config = make_config(**tiny_overrides(photos, steps=20, critic_steps=1, checkpoint_every=5))
    latest = tmp_path / "run" / "checkpoints" / "latest.pt"
    with pytest.raises(TrainError, match=r"non-finite loss at step 7 \(loss_g=nan.*Last good checkpoint: .*latest.pt "
                                         r"\(step 5\); continue from it with --resume --lr 1e-05"):
        train(config, tmp_path / "run")
    ckpt = load_checkpoint(latest)
    assert ckpt["step"] == 5
    assert all(torch.isfinite(v).all() for v in ckpt["generator"].values())
    calls["n"] = 0  # before the first checkpoint: nothing to resume, so not told to
    with pytest.raises(TrainError, match=r"No checkpoint was written yet: start again with a lower --lr \(e.g. 1e-05\)$"):
        train(make_config(**tiny_overrides(photos, steps=20, critic_steps=1)), tmp_path / "run2")


def test_pix2pix_recipe_trains_a_few_steps(photos, tmp_path):
    config = make_config("pix2pix", **tiny_overrides(photos, steps=4, arch_args={"ngf": 8, "num_downs": 5}))
    assert config.critic_steps == 1 and config.gan_loss == "bce" and config.conditional_critic
    result = train(config, tmp_path / "run")
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt["arch"] == "unet_generator" and ckpt["critic"]["model.0.weight"].shape[1] == 6
    assert all(r["gradient_penalty"] == 0 for r in _rows(tmp_path / "run", "train"))
    model = load_generator(result.checkpoint).model
    assert model.size_multiple == 32 and model(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_mixed_precision_path_stays_finite(photos, tmp_path, monkeypatch, dtype):
    # --amp is for CUDA; CPU autocast runs the same code (autocast, loss scaling, fp32 penalty).
    from deblur.train import trainer

    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    monkeypatch.setattr(trainer, "_amp_dtype", lambda config, device: amp_dtype)
    result = train(make_config(**tiny_overrides(photos, steps=6, critic_steps=2)), tmp_path / "run")
    ckpt = load_checkpoint(result.checkpoint)
    assert all(np.isfinite(v) for v in ckpt["meta"]["losses"].values())
    if dtype == "fp16":  # a scaler that keeps skipping steps would have backed off to ~0
        assert ckpt["scalers"]["critic"]["scale"] > 1 and ckpt["scalers"]["generator"]["scale"] > 1


def test_cpu_amp_is_bf16_where_the_cpu_has_it_and_an_error_elsewhere(photos, tmp_path, monkeypatch):
    from deblur.train import trainer

    with pytest.raises(TrainError, match="bf16 only"):
        train(make_config(**tiny_overrides(photos, steps=1, amp=True, amp_dtype="fp16")), tmp_path / "fp16")
    monkeypatch.setattr(trainer, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(TrainError, match="no native bf16"):
        train(make_config(**tiny_overrides(photos, steps=1, amp=True)), tmp_path / "old_cpu")
    monkeypatch.undo()
    if not trainer.cpu_has_native_bf16():
        pytest.skip("this CPU has no native bf16")
    result = train(make_config(**tiny_overrides(photos, steps=4, amp=True, critic_steps=1)), tmp_path / "bf16")
    assert all(np.isfinite(v) for v in load_checkpoint(result.checkpoint)["meta"]["losses"].values())


def test_perceptual_without_weights_is_an_error_before_any_work(photos, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    config = make_config(**tiny_overrides(photos, steps=2, content="perceptual"))
    with pytest.raises(TrainError, match="VGG19 weights"):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_trained_checkpoint_exports_and_runs_in_onnxruntime(photos, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from deblur.export.exporter import export_checkpoint

    config = make_config(**tiny_overrides(photos, steps=3, critic_steps=1))
    result = train(config, tmp_path / "run")
    report = export_checkpoint(result.checkpoint, tmp_path / "model.onnx")
    assert report.info.train_step == 3 and report.info.arch == "resnet_generator"
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 64, 96)).astype(np.float32)
    out = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        expected = load_generator(result.checkpoint).model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_content_only_training_skips_the_critic_and_still_learns(photos, tmp_path):
    config = make_config(**tiny_overrides(photos, steps=40, adv_weight=0.0, val_every=40, lr=1e-3))
    torch.manual_seed(0)
    result = train(config, tmp_path / "run")
    val = _rows(tmp_path / "run", "val")
    assert val[-1]["psnr"] > val[0]["psnr"] + 2.0, val
    train_rows = _rows(tmp_path / "run", "train")
    assert all(r["loss_adv"] == 0 and r["loss_critic"] == 0 for r in train_rows)
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt["optimizers"]["critic"]["state"] == {}  # the critic never took a step


def test_resume_overrides_are_validated_too(photos, tmp_path):
    train(make_config(**tiny_overrides(photos, steps=2, critic_steps=1)), tmp_path / "run")
    with pytest.raises(TrainError, match="log-every must be >= 1"):
        resume_config(tmp_path / "run", {"log_every": 0})


def test_resume_can_switch_on_fp16_loss_scaling(photos, tmp_path, monkeypatch):
    # A float32 run stores empty scaler states; --amp on a GPU without bf16 means fp16 + scaling.
    from deblur.train import trainer

    train(make_config(**tiny_overrides(photos, steps=2, critic_steps=1)), tmp_path / "run")
    monkeypatch.setattr(trainer, "_amp_dtype", lambda config, device: torch.float16)
    result = train(resume_config(tmp_path / "run", {"steps": 4, "amp": True}), tmp_path / "run", resume=True)
    assert result.step == 4


def test_channels_last_trains_the_same_model_and_its_checkpoint_loads_as_usual(photos, tmp_path):
    # A layout changes how tensors sit in memory, not what is computed: same seed, same data,
    # the same restorations after a few steps, and a checkpoint anyone can load. (Weights are
    # compared through the output: the biases in front of InstanceNorm get zero gradient up
    # to rounding, which Adam normalises into full-size steps of either sign, harmlessly.)
    x = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (1, 3, 64, 64)).astype(np.float32))
    outputs = {}
    for channels_last in (False, True):
        config = make_config(**tiny_overrides(photos, steps=3, adv_weight=0.0, lr=1e-3, channels_last=channels_last))
        run = tmp_path / f"run_{channels_last}"
        train(config, run)
        weight = load_checkpoint(run / "checkpoints" / "latest.pt")["generator"]["model.1.weight"]
        assert weight.is_contiguous(memory_format=torch.channels_last) == channels_last  # it trained NHWC
        loaded = load_generator(run / "checkpoints" / "latest.pt")
        assert all(p.is_contiguous() for p in loaded.model.parameters())  # what the exporter traces
        with torch.no_grad():
            outputs[channels_last] = loaded.model(x)
    assert (outputs[True] - outputs[False]).abs().max() < 1e-3
    # Resumed in the other layout, Adam's moments follow their weights (saved NCHW again).
    config = resume_config(tmp_path / "run_True", {"channels_last": False, "steps": 5})
    assert config.channels_last is False
    assert train(config, tmp_path / "run_True", resume=True).step == 5
    state = load_checkpoint(tmp_path / "run_True" / "checkpoints" / "latest.pt")["optimizers"]["generator"]["state"]
    moments = [v["exp_avg"] for v in state.values() if v["exp_avg"].dim() == 4]
    assert moments and all(m.is_contiguous() for m in moments)


def test_channels_last_with_the_critic_and_its_gradient_penalty(photos, tmp_path):
    config = make_config(**tiny_overrides(photos, steps=2, critic_steps=1, channels_last=True))
    result = train(config, tmp_path / "run")
    losses = load_checkpoint(result.checkpoint)["meta"]["losses"]
    assert all(np.isfinite(v) for v in losses.values()) and losses["gradient_penalty"] > 0


@pytest.mark.parametrize("crop, val_crop, bad, fit", [(4, 32, "--crop 4", "--crop 8"), (32, 4, "--val-crop 4", "--val-crop 8"),
                                                   (30, 32, "--crop 30", "--crop 32")])
def test_crops_the_generator_cannot_take_are_refused_with_the_smallest(photos, tmp_path, crop, val_crop, bad, fit):
    # 4 px reach InstanceNorm as 1 x 1 (a RuntimeError deep in torch); validation's SSIM needs 7 px.
    config = make_config(**tiny_overrides(photos, steps=1, crop=crop, val_crop=val_crop))
    with pytest.raises(TrainError, match=f"^{bad}: this generator needs sides that are multiples of 4, at least 8; "
                                         f"pass {fit}$"):
        train(config, tmp_path / "run")


def test_a_crop_too_small_for_the_unet_names_num_downs():
    from deblur.train.models import UnetGenerator, check_crop

    with pytest.raises(ValueError, match=r"--crop 128: .*multiples of 256, at least 256; pass --crop 256, "
                                         r"or --num-downs 7 for 128 px$"):
        check_crop(UnetGenerator(num_downs=8, ngf=4), 128)


def test_a_signal_in_the_last_step_ends_the_run_as_finished(photos, tmp_path, monkeypatch):
    # Ctrl-C during the last step used to leave a "stopped" run at its final step, which
    # --resume then refused as finished: nothing could validate it any more.
    import contextlib
    from signal import SIGINT

    from deblur.train import trainer

    class Signalled(contextlib.nullcontext):
        signal = SIGINT  # as if Ctrl-C came during the step

    monkeypatch.setattr(trainer, "StopOnSignal", lambda message: Signalled(Signalled()))
    last = train(make_config(**tiny_overrides(photos, steps=1, critic_steps=1, val_every=100)), tmp_path / "last")
    assert last.step == 1 and last.stopped_by is None and last.val["step"] == 1  # validated as finished
    early = train(make_config(**tiny_overrides(photos, steps=3, critic_steps=1, val_every=100)), tmp_path / "early")
    assert early.step == 1 and early.stopped_by == SIGINT


def test_an_output_that_cannot_hold_the_run_is_refused_before_the_work(photos, tmp_path, monkeypatch):
    from deblur.train import trainer

    monkeypatch.setattr(trainer, "scan", lambda *a, **k: pytest.fail("scanned before checking --out"))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoints").write_text("a file where the folder goes")
    config = make_config(**tiny_overrides(photos, steps=1))
    with pytest.raises(TrainError, match=r"--out .*run: cannot write the run there \(.*checkpoints.*choose another"):
        train(config, tmp_path / "run")
    (tmp_path / "afile").write_text("")
    with pytest.raises(TrainError, match=r"afile is a file, not a folder\); choose another --out"):
        train(config, tmp_path / "afile" / "run")


def test_resume_says_when_the_training_folders_changed(tmp_path, caplog):
    # Same flags, other files: the step -> batch mapping (and the validation crops without --val)
    # silently stopped being the saved run's.
    write_photos(tmp_path / "photos", 4)
    train(make_config(**tiny_overrides(tmp_path / "photos", steps=2, critic_steps=1)), tmp_path / "run")
    with caplog.at_level(logging.WARNING):
        train(resume_config(tmp_path / "run", {"steps": 3}), tmp_path / "run", resume=True)
    assert "training folders changed" not in caplog.text
    write_photos(tmp_path / "photos" / "more", 1, seed=9)
    with caplog.at_level(logging.WARNING):
        train(resume_config(tmp_path / "run", {"steps": 4}), tmp_path / "run", resume=True)
    assert "the training folders changed since this checkpoint (4 images then, 5 now)" in caplog.text
    assert "val.csv rows from here on are not comparable" in caplog.text

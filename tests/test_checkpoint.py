import logging
import os
import pickle

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from deblur.runtime.errors import CheckpointError  # noqa: E402
from deblur.train.checkpoint import (  # noqa: E402
    init_generator_from,
    load_checkpoint,
    load_generator,
    save_checkpoint,
    strip_prefixes,
)
from deblur.train.models.resnet_generator import ResnetGenerator  # noqa: E402


def _legacy_state_dict(model):
    """What PyTorch < 0.4 saved for DeblurGAN: InstanceNorm running stats, DataParallel prefix."""
    sd = {}
    for key, value in model.state_dict().items():
        sd["module." + key] = value
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.InstanceNorm2d):
            sd[f"module.{name}.running_mean"] = torch.zeros(module.num_features)
            sd[f"module.{name}.running_var"] = torch.ones(module.num_features)
    return sd


def _same_outputs(a, b):
    x = torch.rand(1, 3, 32, 24) * 2 - 1
    with torch.no_grad():
        # Not torch.equal: two copies of one network may pick different oneDNN kernels (seen: > 1e-6 under load).
        return torch.allclose(a.eval()(x), b.eval()(x), rtol=0, atol=1e-5)


def test_legacy_deblurgan_state_dict_loads_and_says_so_once(tmp_path, caplog):
    source = ResnetGenerator(ngf=8, n_blocks=3)
    path = tmp_path / "latest_net_G.pth"
    torch.save(_legacy_state_dict(source), path)
    with caplog.at_level(logging.INFO, logger="deblur.train.checkpoint"):
        loaded = load_generator(path)
    assert loaded.arch == "resnet_generator"
    assert loaded.arch_args == {"ngf": 8, "n_blocks": 3, "dropout": True}
    assert _same_outputs(source, loaded.model)
    notes = [r.message for r in caplog.records if "running-statistics" in r.message]
    assert len(notes) == 1 and "PyTorch < 0.4" in notes[0]


@pytest.mark.parametrize("wrapper", ["model", "state_dict", "generator", "netG"])
def test_wrapped_state_dicts_load(tmp_path, wrapper):
    source = ResnetGenerator(ngf=8, n_blocks=1, dropout=False)
    path = tmp_path / "w.pth"
    torch.save({wrapper: {"_orig_mod." + k: v for k, v in source.state_dict().items()}, "epoch": 3}, path)
    loaded = load_generator(path)
    assert loaded.arch_args == {"ngf": 8, "n_blocks": 1, "dropout": False}
    assert _same_outputs(source, loaded.model)


def test_own_format_roundtrip_keeps_metadata(tmp_path):
    source = ResnetGenerator(ngf=8, n_blocks=2)
    path = save_checkpoint(tmp_path / "c.pt", source, arch="resnet_generator", arch_args=source.arch_args,
                           step=123, meta={"losses": {"g": 1.5}})
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "deblur-edge-checkpoint" and raw["version"] == 1
    loaded = load_generator(path)
    assert loaded.step == 123 and loaded.meta == {"losses": {"g": 1.5}}
    assert len(loaded.sha256) == 64
    assert _same_outputs(source, loaded.model)
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write left no temporary file


def test_strip_prefixes_handles_nested_wrappers():
    assert list(strip_prefixes({"module._orig_mod.a.b": 1, "c": 2})) == ["a.b", "c"]


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned_marker",))


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case, pattern", [
    ("missing", "no such checkpoint"),
    ("empty", "empty"),
    ("directory", "is a directory"),
    ("text", "not a readable PyTorch checkpoint"),
    ("png", "not a readable PyTorch checkpoint: it is a PNG image"),
    ("truncated", r"not a readable PyTorch checkpoint, truncated or damaged \(.+\); copy it again, or use another"),
    # torch's advice to load it with weights_only=False (running its code) is not quoted
    ("evil_pickle", r"refused to load: it is not a plain weights file \((?:(?!weights_only).)*\)\. Only"),
    ("other_arch", "do not match any known generator"),
    ("wrong_shapes", "does not fit"),
    ("missing_keys", "missing keys: model.4"),
    ("newer_version", "newer than this"),
    ("not_a_dict", "expected a dict"),
])
def test_bad_checkpoints_give_clear_errors(tmp_path, monkeypatch, case, pattern):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / f"{case}.pt"
    good = ResnetGenerator(ngf=8, n_blocks=1)
    if case == "empty":
        _write(path, b"")
    elif case == "directory":
        path.mkdir()
    elif case == "text":
        _write(path, b"hello, I am not a checkpoint\n")
    elif case == "png":
        _write(path, cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes())
    elif case == "truncated":
        save_checkpoint(path, good, arch="resnet_generator", arch_args=good.arch_args)
        _write(path, path.read_bytes()[: path.stat().st_size // 2])
    elif case == "evil_pickle":
        _write(path, pickle.dumps({"generator": _Evil()}))
    elif case == "other_arch":
        torch.save({"features.0.weight": torch.zeros(8, 3, 3, 3)}, path)
    elif case == "wrong_shapes":
        save_checkpoint(path, good, arch="resnet_generator", arch_args={"ngf": 16, "n_blocks": 1, "dropout": True})
    elif case == "missing_keys":
        sd = {k: v for k, v in good.state_dict().items() if not k.startswith("model.4.")}
        torch.save(sd, path)
    elif case == "newer_version":
        save_checkpoint(path, good, arch="resnet_generator", arch_args=good.arch_args)
        raw = torch.load(path, weights_only=True)
        raw["version"] = 99
        torch.save(raw, path)
    elif case == "not_a_dict":
        torch.save([torch.zeros(1)], path)
    with pytest.raises(CheckpointError, match=pattern) as info:
        load_generator(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "pwned_marker").exists()


def test_generator_only_copy_drops_training_state_and_loads_the_same(tmp_path):
    from deblur.train.checkpoint import save_generator_only

    model = ResnetGenerator(ngf=8, n_blocks=1)
    full = save_checkpoint(tmp_path / "latest.pt", model, arch="resnet_generator", arch_args=model.arch_args,
                           step=5, critic={"w": torch.zeros(1000, 100)}, optimizers={"g": {"m": torch.ones(1000, 100)}})
    small = save_generator_only(full, tmp_path / "generator.pt")
    assert small.stat().st_size < full.stat().st_size / 3
    state = load_checkpoint(small)
    assert "critic" not in state and "optimizers" not in state and state["step"] == 5
    for a, b in zip(load_generator(small).model.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)


def test_init_from_copies_weights_across_the_dropout_slot(tmp_path):
    # Trained with dropout (second conv at conv_block.6), fine-tuned without (conv_block.5).
    source = ResnetGenerator(ngf=8, n_blocks=2, dropout=True)
    path = tmp_path / "latest_net_G.pth"
    torch.save(_legacy_state_dict(source), path)
    target = ResnetGenerator(ngf=8, n_blocks=2, dropout=False)
    assert "model.10.conv_block.5.weight" in target.state_dict()
    loaded = init_generator_from(target, "resnet_generator", path)
    assert loaded.arch_args["dropout"] is True
    assert _same_outputs(source, target)  # eval mode: dropout is the identity


@pytest.mark.parametrize("arch, target, pattern", [
    ("resnet_generator", dict(ngf=4, n_blocks=2), r"can only grow: ngf 8 -> 4"),
    ("resnet_generator", dict(ngf=16, n_blocks=1), r"can only grow: ngf 8 -> 16, n_blocks 2 -> 1"),
    ("unet_generator", None, r"holds a resnet_generator generator, this run trains unet_generator"),
])
def test_init_from_refuses_another_architecture(tmp_path, arch, target, pattern):
    path = tmp_path / "g.pth"
    torch.save(ResnetGenerator(ngf=8, n_blocks=2).state_dict(), path)
    model = ResnetGenerator(**target) if target else torch.nn.Conv2d(3, 3, 1)
    with pytest.raises(CheckpointError, match=pattern):
        init_generator_from(model, arch, path)


@pytest.mark.parametrize("ngf, n_blocks", [(16, 2), (12, 4), (20, 2), (8, 3)])
def test_init_from_grows_a_generator_that_computes_the_same(tmp_path, ngf, n_blocks):
    source = ResnetGenerator(ngf=8, n_blocks=2, dropout=True)
    for p in source.parameters():  # not the zero biases of a fresh init: every weight must land right
        torch.nn.init.normal_(p, 0.0, 0.1)
    path = tmp_path / "g.pth"
    torch.save(source.state_dict(), path)
    target = ResnetGenerator(ngf=ngf, n_blocks=n_blocks, dropout=False)
    init_generator_from(target, "resnet_generator", path, seed=3)
    x = torch.rand(2, 3, 40, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(target.eval()(x), source.eval()(x), rtol=0, atol=1e-5)
    # The copies of a channel must be able to drift apart: unequal gradients for a copy and its
    # original, because the layer that reads them weighs the two differently.
    target.train()
    target(x).square().mean().backward()
    weight, grad = target.model[1].weight, target.model[1].weight.grad
    for copy in range(8, ngf):
        original = next(c for c in range(8) if torch.equal(weight[c], weight[copy]))
        assert not torch.allclose(grad[original], grad[copy], rtol=0, atol=1e-7)
    for i in range(2, n_blocks):  # a new block starts as the identity, yet learns
        assert target.model[10 + i].conv_block[5].weight.grad.abs().sum() > 0
    again = ResnetGenerator(ngf=ngf, n_blocks=n_blocks, dropout=False)
    torch.manual_seed(0)
    init_generator_from(again, "resnet_generator", path, seed=3)
    for name, tensor in again.state_dict().items():  # reproducible from the seed (new blocks' first convs aside)
        if not any(name.startswith(f"model.{10 + i}.conv_block.1.") for i in range(2, n_blocks)):
            assert torch.equal(tensor, target.state_dict()[name]), name


def test_init_from_grows_a_silent_coarse_branch_that_learns(tmp_path):
    source = ResnetGenerator(ngf=8, n_blocks=2, dropout=False)
    for p in source.parameters():
        torch.nn.init.normal_(p, 0.0, 0.1)
    path = tmp_path / "g.pth"
    torch.save(source.state_dict(), path)
    target = ResnetGenerator(ngf=8, n_blocks=2, dropout=False, coarse_blocks=2)
    init_generator_from(target, "resnet_generator", path)
    x = torch.rand(2, 3, 48, 40) * 2 - 1
    with torch.no_grad():
        assert torch.equal(target(x), source(x))  # same width: plain copies
    target(x).square().mean().backward()
    assert target.coarse.out.weight.grad.abs().sum() > 0  # silent, not stuck
    # A trained branch comes along whole; it cannot be dropped or widened.
    trained = tmp_path / "c.pth"
    torch.save(target.state_dict(), trained)
    again = ResnetGenerator(ngf=8, n_blocks=3, dropout=False, coarse_blocks=2)
    init_generator_from(again, "resnet_generator", trained)
    assert torch.equal(again.coarse.out.weight, target.coarse.out.weight)
    for other in (dict(ngf=8, n_blocks=2), dict(ngf=16, n_blocks=2, coarse_blocks=2)):
        with pytest.raises(CheckpointError, match="a coarse branch cannot grow or go"):
            init_generator_from(ResnetGenerator(dropout=False, **other), "resnet_generator", trained)


def test_a_diverged_checkpoint_is_refused_not_exported_black(tmp_path):
    # NaN compares false with everything: every parity check downstream would have passed it
    # (exit 0, "PSNR nan dB"), and the model would turn every image black.
    model = ResnetGenerator(ngf=4, n_blocks=1, dropout=False)
    state = model.state_dict()
    state["model.1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "latest_net_G.pth")
    with pytest.raises(CheckpointError, match=r"latest_net_G.pth: 1 weight tensors hold NaN or Inf \(model.1.weight\): "
                                              r"the run diverged"):
        load_generator(tmp_path / "latest_net_G.pth")

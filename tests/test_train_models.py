import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from deblur.train.config import TrainError  # noqa: E402
from deblur.train.models import create_generator, infer_arch, list_generators  # noqa: E402
from deblur.train.models.discriminator import NLayerDiscriminator  # noqa: E402
from deblur.train.models.unet_generator import UnetGenerator  # noqa: E402
from deblur.train.vgg import VGG19, PerceptualLoss, find_vgg_weights, load_vgg19  # noqa: E402

# torchvision.models.vgg19().features: convolutions at these indices, pools at 4, 9, 18, 27, 36.
TORCHVISION_CONVS = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]


def test_patchgan_critic_matches_deblurgan_layout():
    critic = NLayerDiscriminator()
    convs = [m for m in critic.modules() if isinstance(m, nn.Conv2d)]
    assert [c.stride[0] for c in convs] == [2, 2, 2, 1, 1]  # three strided layers
    assert all(c.kernel_size == (4, 4) and c.padding == (2, 2) for c in convs)
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in critic.modules()) == 3
    assert all(m.negative_slope == 0.2 for m in critic.modules() if isinstance(m, nn.LeakyReLU))
    assert not any(isinstance(m, nn.Sigmoid) for m in critic.modules())
    scores = critic(torch.randn(2, 3, 64, 64))
    assert scores.shape == (2, 1, 11, 11)
    conditional = NLayerDiscriminator(in_channels=6, ndf=8)
    assert conditional(torch.randn(1, 6, 32, 48)).shape[:2] == (1, 1)


def test_unet_is_registered_with_pix2pix_layout_and_contract():
    assert "unet_generator" in list_generators()
    model = create_generator("unet_generator")  # unet_256
    assert sum(p.numel() for p in model.parameters()) == 54_413_955  # pix2pix's unet_256
    assert model.input_range == (-1.0, 1.0) and model.channel_order == "RGB" and model.size_multiple == 256
    keys = set(model.state_dict())
    assert "model.model.0.weight" in keys and "model.model.1.model.1.weight" in keys
    assert any(k.endswith("running_mean") for k in keys)


@pytest.mark.parametrize("args", [{"num_downs": 5, "ngf": 8, "dropout": True, "norm": "batch"},
                                  {"num_downs": 6, "ngf": 4, "dropout": True, "norm": "instance"}])
def test_unet_forward_backward_and_args_from_state_dict(args):
    model = create_generator("unet_generator", **args)
    assert model.arch_args == args and model.size_multiple == 2 ** args["num_downs"]
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    y = model(x)
    assert y.shape == x.shape and y.abs().max() <= 1
    y.mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert infer_arch(model.state_dict()) == ("unet_generator", args)
    # Sizes that are not multiples are padded internally and cropped back in eager mode.
    assert model.eval()(torch.zeros(1, 3, 40, 72)).shape == (1, 3, 40, 72)


def test_an_old_instance_norm_unet_with_saved_running_stats_loads_as_instance_norm(tmp_path):
    # PyTorch < 0.4 saved running statistics for InstanceNorm: they made the U-Net look like a
    # BatchNorm one ("does not fit ... norm=batch"). The convolutions' biases tell the truth.
    from deblur.train.checkpoint import load_generator

    args = {"num_downs": 5, "ngf": 4, "dropout": True, "norm": "instance"}
    source = create_generator("unet_generator", **args).eval()
    state = dict(source.state_dict())
    state["model.model.1.model.2.running_mean"] = torch.zeros(8)  # what an old save adds per norm
    state["model.model.1.model.2.running_var"] = torch.ones(8)
    torch.save(state, tmp_path / "latest_net_G.pth")
    loaded = load_generator(tmp_path / "latest_net_G.pth")
    assert loaded.arch_args == args
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.equal(loaded.model(x), source(x))


def test_unet_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_downs >= 5"):
        UnetGenerator(num_downs=3)
    with pytest.raises(ValueError):
        UnetGenerator(norm="group")


def test_vgg19_features_have_torchvision_indices_and_state_dict_round_trips(tmp_path):
    vgg = VGG19()
    convs = [i for i, m in enumerate(vgg.features) if isinstance(m, nn.Conv2d)]
    assert convs == TORCHVISION_CONVS
    assert [i for i, m in enumerate(vgg.features) if isinstance(m, nn.MaxPool2d)] == [4, 9, 18, 27, 36]
    assert len(vgg.features) == 37 and vgg.features[14].out_channels == 256  # conv3_3
    assert sum(p.numel() for p in vgg.parameters()) == 20_024_384  # torchvision's vgg19 features
    # A torchvision-style file (features + classifier) loads; the classifier is ignored.
    state = {f"features.{k}": v for k, v in vgg.features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save(state, path)
    loaded = load_vgg19(path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in vgg.state_dict().items())
    assert not any(p.requires_grad for p in loaded.parameters())
    loss = PerceptualLoss(loaded)
    assert len(loss.features) == 15  # layers 0..14: up to conv3_3, before its ReLU
    a = torch.rand(1, 3, 32, 32) * 2 - 1
    assert loss(a, a).item() == 0.0 and loss(a, -a).item() > 0


def test_vgg_weights_are_found_in_the_hub_cache_or_the_error_says_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(TrainError) as info:
        find_vgg_weights()
    message = str(info.value)
    assert str(tmp_path / "hub" / "checkpoints") in message and "--vgg-weights" in message
    assert "vgg19-dcbb9e9d.pth" in message and "l1+fft" in message
    with pytest.raises(TrainError, match="not found"):
        find_vgg_weights(tmp_path / "nope.pth")
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "vgg19-dcbb9e9d.pth").write_bytes(b"not a state dict")
    assert find_vgg_weights() == cache / "vgg19-dcbb9e9d.pth"
    with pytest.raises(TrainError, match="not a readable VGG19"):
        load_vgg19()
    torch.save({"features.0.weight": torch.zeros(1)}, cache / "vgg19-dcbb9e9d.pth")
    with pytest.raises(TrainError, match="does not fit VGG19"):
        load_vgg19()

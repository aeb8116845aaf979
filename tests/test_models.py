import pytest

torch = pytest.importorskip("torch")

from deblur.train.models import create_generator, infer_arch, list_generators  # noqa: E402
from deblur.train.models.resnet_generator import ResnetGenerator  # noqa: E402

SMALL_ARGS = {"resnet_generator": {"ngf": 8, "n_blocks": 2}, "unet_generator": {"num_downs": 5, "ngf": 8}}


@pytest.mark.parametrize("arch", list_generators())
def test_every_registered_generator_runs_forward_and_backward(arch):
    model = create_generator(arch, **SMALL_ARGS.get(arch, {}))
    x = torch.rand(2, 3, 64, 96) * 2 - 1
    y = model(x)
    assert y.shape == x.shape
    assert y.min() >= -1 and y.max() <= 1
    y.mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_resnet_generator_matches_original_layout():
    model = ResnetGenerator()  # the paper's defaults
    keys = set(model.state_dict())
    assert sum(p.numel() for p in model.parameters()) == 11_378_179  # the paper's 11.4 M
    # Indices the original latest_net_G.pth uses.
    for key in ("model.1.weight", "model.4.weight", "model.7.weight", "model.10.conv_block.1.weight",
                "model.10.conv_block.6.weight", "model.18.conv_block.6.bias", "model.19.weight",
                "model.22.weight", "model.26.weight"):
        assert key in keys, key
    assert not any("running_mean" in k for k in keys)  # InstanceNorm without running stats
    assert isinstance(model.model[27], torch.nn.Tanh)


def test_global_skip_and_clamp():
    model = ResnetGenerator(ngf=4, n_blocks=1).eval()
    for p in model.parameters():
        torch.nn.init.zeros_(p)  # the residual branch outputs tanh(0) = 0
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    assert torch.equal(model(x), x)


@pytest.mark.parametrize("args", [{"ngf": 8, "n_blocks": 3, "dropout": True},
                                  {"ngf": 16, "n_blocks": 1, "dropout": False},
                                  {"ngf": 64, "n_blocks": 9, "dropout": True},
                                  {"ngf": 8, "n_blocks": 2, "dropout": False, "coarse_blocks": 1},
                                  {"ngf": 8, "n_blocks": 0, "dropout": True, "coarse_blocks": 3}])
def test_arch_args_inferred_from_state_dict(args):
    sd = ResnetGenerator(**args).state_dict()
    assert infer_arch(sd) == ("resnet_generator", args)


def test_unknown_arch_and_bad_args_are_errors():
    with pytest.raises(ValueError, match="unknown generator"):
        create_generator("nope")
    with pytest.raises(ValueError, match="resnet_generator takes ngf, n_blocks, dropout, coarse_blocks; not ngff"):
        create_generator("resnet_generator", ngff=3)
    # The deblurgan recipe's flags given to pix2pix (--recipe pix2pix --n-blocks 3): named, not a raw TypeError.
    with pytest.raises(ValueError, match="unet_generator takes num_downs, ngf, dropout, norm; not n_blocks"):
        create_generator("unet_generator", n_blocks=3)


def test_a_registered_factory_taking_keyword_arguments_gets_them_all():
    from deblur.train.models import _GENERATORS, register_generator

    @register_generator("test_kwargs_generator")
    def build(**kwargs):
        return torch.nn.Identity() if kwargs == {"width": 3} else None

    try:
        assert isinstance(create_generator("test_kwargs_generator", width=3), torch.nn.Identity)
    finally:
        del _GENERATORS["test_kwargs_generator"]


def test_coarse_branch_keeps_the_deblurgan_keys_and_needs_multiples_of_8():
    plain, coarse = ResnetGenerator(ngf=8, n_blocks=2), ResnetGenerator(ngf=8, n_blocks=2, coarse_blocks=2)
    assert plain.arch_args == {"ngf": 8, "n_blocks": 2, "dropout": True}  # old checkpoints' args unchanged
    assert plain.size_multiple == 4 and coarse.size_multiple == 8
    extra = set(coarse.state_dict()) - set(plain.state_dict())
    assert set(plain.state_dict()) <= set(coarse.state_dict()) and all(k.startswith("coarse.") for k in extra)
    # Its blocks run at 1/8 of the input, with twice the 1/4 stage's channels.
    seen = []
    coarse.coarse.body[3].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    coarse(torch.rand(1, 3, 64, 48) * 2 - 1)
    assert seen == [(1, 64, 8, 6)]
    with pytest.raises(ValueError, match="coarse_blocks"):
        ResnetGenerator(coarse_blocks=-1)

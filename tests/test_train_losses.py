import math

import pytest

torch = pytest.importorskip("torch")

from deblur.train.config import TrainError, lr_at, make_config  # noqa: E402
from deblur.train.losses import (L1FFTLoss, build_content_loss, critic_loss,  # noqa: E402
                                 generator_adversarial_loss, gradient_penalty)


class QuadraticCritic(torch.nn.Module):
    """D(x) = 0.5 * sum(x^2) per image, as a 1x1 'patch map': grad_x D = x exactly."""

    def forward(self, x):
        return 0.5 * (x ** 2).flatten(1).sum(1).view(-1, 1, 1, 1)


def test_gradient_penalty_uses_a_coefficient_and_a_norm_per_sample():
    real = torch.tensor([[1.0, 2.0], [0.0, -1.0]]).view(2, 2, 1, 1)
    fake = torch.tensor([[3.0, 0.0], [2.0, 2.0]]).view(2, 2, 1, 1)
    alpha = torch.tensor([0.25, 0.5]).view(2, 1, 1, 1)
    # By hand: x0 = 0.25*(1,2) + 0.75*(3,0) = (2.5, 0.5), |x0| = sqrt(6.5);
    #          x1 = 0.5*(0,-1) + 0.5*(2,2) = (1, 0.5),  |x1| = sqrt(1.25).
    expected = ((math.sqrt(6.5) - 1) ** 2 + (math.sqrt(1.25) - 1) ** 2) / 2
    got = gradient_penalty(QuadraticCritic(), real, fake, alpha=alpha)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # A per-batch alpha or a per-pixel norm would give other numbers.
    assert gradient_penalty(QuadraticCritic(), real, fake, alpha=torch.full((2, 1, 1, 1), 0.25)).item() != pytest.approx(expected)


def test_gradient_penalty_of_a_linear_critic_is_its_weight_norm_minus_one():
    critic = torch.nn.Conv2d(3, 1, kernel_size=4)  # 4x4 input -> one score: D(x) = <w, x> + b
    real, fake = torch.randn(3, 3, 4, 4), torch.randn(3, 3, 4, 4)
    expected = (critic.weight.norm() - 1) ** 2
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(expected.item(), rel=1e-5)
    # The penalty is differentiable in the critic's weights (create_graph=True).
    gradient_penalty(critic, real, fake).backward()
    assert critic.weight.grad is not None and critic.weight.grad.abs().sum() > 0


def test_gradient_penalty_differentiates_the_image_not_the_condition():
    class Conditional(torch.nn.Module):
        def forward(self, x):  # the condition (first 2 channels) is weighted 10x
            return (10 * x[:, :2].sum((1, 2, 3)) + x[:, 2:].sum((1, 2, 3))).view(-1, 1, 1, 1)

    real, fake, condition = torch.zeros(2, 2, 1, 1), torch.ones(2, 2, 1, 1), torch.ones(2, 2, 1, 1)
    # grad wrt the image part is all ones over 2 values: norm sqrt(2).
    got = gradient_penalty(Conditional(), real, fake, condition=condition)
    assert got.item() == pytest.approx((math.sqrt(2) - 1) ** 2, rel=1e-6)


def test_wgan_and_bce_objectives():
    real, fake = torch.full((2, 1, 3, 3), 2.0), torch.full((2, 1, 3, 3), -1.0)
    terms = critic_loss("wgan-gp", real, fake, torch.tensor(0.5), gp_weight=10.0)
    assert terms.loss.item() == pytest.approx(-1 - 2 + 10 * 0.5)
    assert terms.gap.item() == pytest.approx(3.0) and terms.penalty.item() == 0.5
    assert generator_adversarial_loss("wgan-gp", fake).item() == pytest.approx(1.0)
    bce = critic_loss("bce", real, fake, torch.tensor(0.0), gp_weight=10.0)
    softplus = torch.nn.functional.softplus
    assert bce.loss.item() == pytest.approx(0.5 * (softplus(torch.tensor(-2.0)) + softplus(torch.tensor(-1.0))).item())
    assert generator_adversarial_loss("bce", fake).item() == pytest.approx(softplus(torch.tensor(1.0)).item())


def test_content_losses():
    a, b = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    l1 = build_content_loss("l1")
    assert l1(a, b).item() == pytest.approx((a - b).abs().mean().item())
    fft = build_content_loss("l1+fft")
    assert isinstance(fft, L1FFTLoss)
    assert fft(a, a).item() == 0.0
    assert fft(a, b).item() > l1(a, b).item()
    # The spectral term's weight is the run's: 0 leaves plain L1, and MIMO-UNet-like weights
    # (tens, on the orthonormal spectrum) make it dominate.
    assert build_content_loss("l1+fft", fft_weight=0.0)(a, b).item() == pytest.approx(l1(a, b).item())
    strong = build_content_loss("l1+fft", fft_weight=25.6)(a, b).item()
    assert strong - l1(a, b).item() == pytest.approx(256 * (fft(a, b).item() - l1(a, b).item()), rel=1e-5)
    assert make_config(data=["x"], content="l1+fft", fft_weight=2.0).fft_weight == 2.0
    with pytest.raises(TrainError, match="--fft-weight weighs the spectral term of --content l1\+fft"):
        make_config(data=["x"], content="l1", fft_weight=2.0)
    with pytest.raises(TrainError, match="fft-weight must be >= 0"):
        make_config(data=["x"], content="l1+fft", fft_weight=-1.0)
    mse = build_content_loss("mse")  # the metric: PSNR of [-1, 1] images is 10 log10(4 / mse)
    assert mse(a, b).item() == pytest.approx(((a - b) ** 2).mean().item())
    with pytest.raises(TrainError, match="unknown content loss"):
        build_content_loss("ssim")


def test_learning_rate_is_constant_then_decays_linearly_to_zero():
    config = make_config(data=["x"], steps=100, lr=1e-4)
    assert [lr_at(s, config) for s in (0, 49)] == [1e-4, 1e-4]
    assert lr_at(50, config) == pytest.approx(1e-4)
    assert lr_at(75, config) == pytest.approx(0.5e-4)
    assert lr_at(99, config) == pytest.approx(0.02e-4)
    assert lr_at(100, config) == 0.0
    ramped = make_config(data=["x"], steps=100, lr=1e-4, warmup=9)
    assert [lr_at(s, ramped) for s in (0, 4, 8)] == pytest.approx([1e-5, 5e-5, 9e-5])
    assert [lr_at(s, ramped) for s in (9, 49, 75)] == pytest.approx([1e-4, 1e-4, 0.5e-4])
    # A ramp that runs into the decay (a run shortened on --resume): the lower LR of the two.
    long_ramp = make_config(data=["x"], steps=100, lr=1e-4, warmup=79)
    assert [lr_at(s, long_ramp) for s in (39, 59, 89)] == pytest.approx([0.5e-4, 0.75e-4, 0.22e-4])
    with pytest.raises(TrainError, match="warmup must be >= 0 steps, got -1"):
        make_config(data=["x"], steps=100, warmup=-1)


def test_recipes_and_overrides():
    dgan = make_config(data=["x"])
    assert (dgan.gan_loss, dgan.critic_steps, dgan.lr, dgan.betas, dgan.content_weight, dgan.gp_weight) == \
        ("wgan-gp", 5, 1e-4, (0.5, 0.999), 100.0, 10.0)
    assert dgan.arch == "resnet_generator" and dgan.content == "perceptual"
    p2p = make_config("pix2pix", data=["x"], arch_args={"ngf": 8})
    assert (p2p.arch, p2p.gan_loss, p2p.lr, p2p.conditional_critic, p2p.content) == \
        ("unet_generator", "bce", 2e-4, True, "l1")
    assert p2p.arch_args["ngf"] == 8 and p2p.arch_args["num_downs"] == 8
    with pytest.raises(TrainError, match="unknown config key"):
        make_config(data=["x"], learning_rate=1.0)
    with pytest.raises(TrainError, match="unknown recipe"):
        make_config("cyclegan", data=["x"])
    with pytest.raises(TrainError, match="no training data"):
        make_config()


def test_gradient_penalty_is_float32_under_autocast():
    from deblur.train.models.discriminator import NLayerDiscriminator, init_weights

    torch.manual_seed(0)
    critic = NLayerDiscriminator(3, ndf=8)
    init_weights(critic)
    real, fake = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    alpha = torch.rand(2, 1, 1, 1)
    expected = gradient_penalty(critic, real, fake, alpha=alpha)
    with torch.autocast("cpu", dtype=torch.float16):
        got = gradient_penalty(critic, real.half(), fake.half(), alpha=alpha)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected.item(), rel=1e-3)  # inputs rounded to fp16, nothing more
    got.backward()
    # Biases do not change the critic's input gradient, so only the weights get one.
    weights = [p for name, p in critic.named_parameters() if name.endswith("weight")]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in weights)

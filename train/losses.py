"""GAN losses (WGAN-GP, BCE with logits) and content losses (perceptual, L1, L1 + FFT, MSE).

A PatchGAN critic returns a map of patch scores, (N, 1, h, w); the score of an image is the
mean of its map, and every loss below is written in those per-image scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import TrainError


def image_scores(score_map: Tensor) -> Tensor:
    """(N, 1, h, w) patch scores -> (N,) one score per image."""
    return score_map.flatten(1).mean(1)


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor, *, condition: Tensor | None = None,
                     alpha: Tensor | None = None) -> Tensor:
    """WGAN-GP (Gulrajani et al. 2017): E[(||grad_x D(x)||_2 - 1)^2] on random interpolates.

    Each sample gets its own interpolation coefficient ``alpha`` ~ U(0, 1) and its gradient
    norm is taken over the whole image (C, H, W). DeblurGAN's code drew one alpha per batch
    and took the norm per pixel over channels only; both bend the constraint, so not here.
    ``condition`` (pix2pix) is concatenated on the channel axis but not differentiated.
    Always float32, also under ``--amp``: the double backward through instance norm gives
    NaNs in fp16, and the penalty is a small part of a critic step's cost.
    """
    real, fake = real.detach().float(), fake.detach().float()
    if alpha is None:
        alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    interpolates = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    critic_input = interpolates if condition is None else torch.cat([condition.float(), interpolates], 1)
    with torch.autocast(real.device.type, enabled=False):
        scores = image_scores(critic(critic_input))  # (N,)
        (grad,) = torch.autograd.grad(scores.sum(), interpolates, create_graph=True)
        grad_norm = grad.flatten(1).norm(2, dim=1)  # (N,): one norm per image, over C, H and W
        return ((grad_norm - 1) ** 2).mean()


@dataclass
class CriticTerms:
    loss: Tensor  # what the critic minimises
    gap: Tensor  # E[D(real)] - E[D(fake)]: the Wasserstein estimate for WGAN, a logit margin for BCE
    penalty: Tensor  # gradient penalty (0 for BCE)


def critic_loss(kind: str, real_map: Tensor, fake_map: Tensor, penalty: Tensor, gp_weight: float) -> CriticTerms:
    """Critic objective from patch score maps (N, 1, h, w).

    WGAN's score is linear in the patches, so averaging the map is the per-image score; the
    BCE loss (pix2pix) classifies every patch on its own, as the original does.
    """
    gap = (real_map.mean() - fake_map.mean()).detach()
    if kind == "wgan-gp":
        return CriticTerms(fake_map.mean() - real_map.mean() + gp_weight * penalty, gap, penalty.detach())
    # pix2pix halves the critic loss so it learns slower than the generator.
    loss = 0.5 * (F.binary_cross_entropy_with_logits(real_map, torch.ones_like(real_map)) +
                  F.binary_cross_entropy_with_logits(fake_map, torch.zeros_like(fake_map)))
    return CriticTerms(loss, gap, torch.zeros((), device=loss.device))


def generator_adversarial_loss(kind: str, fake_map: Tensor) -> Tensor:
    if kind == "wgan-gp":
        return -fake_map.mean()
    return F.binary_cross_entropy_with_logits(fake_map, torch.ones_like(fake_map))


class L1Loss(nn.Module):
    def forward(self, restored: Tensor, sharp: Tensor) -> Tensor:
        return F.l1_loss(restored, sharp)


class MSELoss(nn.Module):
    """The metric itself (PSNR is -10 log10 MSE): for a last PSNR-oriented leg after L1 training,
    whose optimum is the per-pixel median rather than the mean."""

    def forward(self, restored: Tensor, sharp: Tensor) -> Tensor:
        return F.mse_loss(restored, sharp)


class L1FFTLoss(nn.Module):
    """L1 on pixels plus ``fft_weight`` x L1 on the 2-D spectrum (Cho et al. 2021, MIMO-UNet).

    The spectral term weighs the high frequencies that blur removes as much as the flat
    areas that dominate a pixel loss; it is the VGG-free stand-in for the perceptual loss.
    The spectrum is orthonormal (``norm="ortho"``), so the weight does not depend on the crop
    size; MIMO-UNet's unnormalised FFT is sqrt(H*W) times larger (256x at 256 px), so its 0.1
    corresponds to ``fft_weight`` 25.6 here at 256 px, where the spectral term dominates. At
    0.1 (the shipped model's recipe) it is ~8 % of the pixel term: mostly an L1 loss.
    """

    def __init__(self, fft_weight: float = 0.1) -> None:
        super().__init__()
        self.fft_weight = fft_weight

    def forward(self, restored: Tensor, sharp: Tensor) -> Tensor:
        # FFTs are float32-only for most sizes under autocast; do them in float32.
        spectrum_restored = torch.view_as_real(torch.fft.rfft2(restored.float(), norm="ortho"))
        spectrum_sharp = torch.view_as_real(torch.fft.rfft2(sharp.float(), norm="ortho"))
        return F.l1_loss(restored, sharp) + self.fft_weight * F.l1_loss(spectrum_restored, spectrum_sharp)


def build_content_loss(name: str, vgg_weights: str | None = None, fft_weight: float = 0.1) -> nn.Module:
    """``perceptual`` needs torchvision's VGG19 weights; it fails clearly without them."""
    if name == "perceptual":
        from .vgg import PerceptualLoss, load_vgg19

        return PerceptualLoss(load_vgg19(vgg_weights))
    if name == "l1":
        return L1Loss()
    if name == "l1+fft":
        return L1FFTLoss(fft_weight)
    if name == "mse":
        return MSELoss()
    raise TrainError(f"unknown content loss {name!r}; choose perceptual, l1, l1+fft or mse")

"""VGG19 ``features`` without torchvision, and DeblurGAN's perceptual loss on conv3_3.

The module indices are torchvision's, so its ImageNet state dict (``vgg19-dcbb9e9d.pth``,
keys ``features.N.weight``) loads unchanged. Weights are never downloaded here and never
made up: a perceptual loss on a random VGG would train towards nonsense without any error.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deblur.runtime.errors import first_line

from .config import TrainError

log = logging.getLogger(__name__)

# torchvision's cfgs["E"]: conv widths, "M" for a 2x2 max-pool.
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
CONV3_3 = 14  # index of conv3_3 in `features`; DeblurGAN compares its output (before the ReLU)
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG19(nn.Module):
    """``features`` only (Conv3-ReLU blocks and max-pools, indices 0..36); no classifier."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for width in VGG19_LAYOUT:
            if width == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, width, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = width
        self.features = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


def default_weights_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_vgg_weights(path: str | Path | None = None) -> Path:
    """The VGG19 weights file: ``path`` if given, else ``vgg19-*.pth`` in the torch hub cache."""
    hint = (f"download {VGG19_URL} into {default_weights_dir()}/ (or pass --vgg-weights PATH), "
            "or train without it: --content l1+fft")
    if path is not None:
        if not Path(path).is_file():
            raise TrainError(f"{path}: VGG19 weights file not found; {hint}")
        return Path(path)
    found = sorted(default_weights_dir().glob("vgg19-*.pth"))
    if not found:
        raise TrainError(f"the perceptual loss needs torchvision's ImageNet VGG19 weights and none were found; {hint}")
    return found[-1]


def load_vgg19(path: str | Path | None = None) -> VGG19:
    """VGG19 with torchvision's ImageNet weights, frozen and in eval mode."""
    weights = find_vgg_weights(path)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means "not the weights file"
        raise TrainError(f"{weights}: not a readable VGG19 state dict ({first_line(exc, 200)}); "
                         f"re-download {VGG19_URL}") from None
    features = {k: v for k, v in state.items() if k.startswith("features.")}
    model = VGG19()
    try:
        model.load_state_dict(features)
    except RuntimeError as exc:
        raise TrainError(f"{weights}: does not fit VGG19's features ({first_line(exc, 200)}); "
                         f"is it torchvision's vgg19 (not vgg16 or vgg19_bn)?") from None
    log.info("perceptual loss: VGG19 weights from %s", weights)
    return model.eval().requires_grad_(False)


class PerceptualLoss(nn.Module):
    """MSE between VGG19 conv3_3 features (before its ReLU) of two images given in [-1, 1].

    The images are normalised with ImageNet's statistics first, as torchvision's VGG19 weights
    expect (and DeblurGAN-v2 does). DeblurGAN v1 fed [-1, 1] as is: its features differ about
    2.2x less, so its 100 x perceptual weighs ~5x less against the critic than here.
    """

    def __init__(self, vgg: VGG19, layer: int = CONV3_3) -> None:
        super().__init__()
        self.features = vgg.features[: layer + 1]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "PerceptualLoss":
        return super().train(False)  # a fixed feature extractor, whatever the trainer asks

    def _embed(self, x: Tensor) -> Tensor:
        return self.features(((x + 1) / 2 - self.mean) / self.std)

    def forward(self, restored: Tensor, sharp: Tensor) -> Tensor:
        with torch.no_grad():
            target = self._embed(sharp)
        return F.mse_loss(self._embed(restored), target)

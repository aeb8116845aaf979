"""PatchGAN critic (Isola et al. 2017), laid out as DeblurGAN's ``NLayerDiscriminator``.

Each output value scores one overlapping patch of the input (70x70 px with 3 layers), so the
critic judges local texture - the part of an image that blur destroys - and works at any size.
"""

from __future__ import annotations

import math

from torch import Tensor, nn


class NLayerDiscriminator(nn.Module):
    """Conv4/2-LReLU, ``n_layers - 1`` x (Conv4/2-IN-LReLU), Conv4/1-IN-LReLU, Conv4/1 -> 1.

    Input: (N, in_channels, H, W) in [-1, 1]; 6 channels for a conditional critic that sees
    (blurred, image) concatenated. Output: (N, 1, H', W') raw scores, no sigmoid: WGAN needs
    an unbounded critic and the BCE loss takes logits.
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3,
                 norm_layer: type[nn.Module] = nn.InstanceNorm2d) -> None:
        super().__init__()
        kw = 4
        padw = math.ceil((kw - 1) / 2)  # 2, as DeblurGAN (pix2pix uses 1)
        # Instance norm has no affine terms here, so the convolutions keep their biases.
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, kw, stride=2, padding=padw), nn.LeakyReLU(0.2, True)]
        channels = ndf
        for n in range(1, n_layers + 1):
            out_channels = ndf * min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(channels, out_channels, kw, stride=stride, padding=padw),
                       norm_layer(out_channels), nn.LeakyReLU(0.2, True)]
            channels = out_channels
        layers.append(nn.Conv2d(channels, 1, kw, stride=1, padding=padw))
        self.model = nn.Sequential(*layers)
        self.in_channels = in_channels

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """N(0, 0.02) convolutions and N(1, 0.02) norm scales, as pix2pix and DeblurGAN."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)

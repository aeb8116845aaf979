"""pix2pix's U-Net generator (Isola et al. 2017), laid out exactly as the original code.

The network is built recursively from the bottleneck out, one ``UnetSkipConnectionBlock``
per resolution, so original ``latest_net_G.pth`` files (keys ``model.model.1.model.3...``)
load as they are; that is why the ``nn.Sequential`` indices below must not change.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import register_generator

_NORMS = {"batch": nn.BatchNorm2d, "instance": nn.InstanceNorm2d}


class UnetSkipConnectionBlock(nn.Module):
    """Down (LReLU-Conv4/2-Norm) -> inner block -> up (ReLU-ConvT4/2-Norm), concatenated with the input.

    The outermost block has no norm on its way down and ends in Tanh instead of a skip; the
    innermost has no norm on its way down either (its output is 1x1 at the design size).
    """

    def __init__(self, outer_nc: int, inner_nc: int, input_nc: int | None = None,
                 submodule: nn.Module | None = None, *, outermost: bool = False, innermost: bool = False,
                 norm_layer: type[nn.Module] = nn.BatchNorm2d, dropout: bool = False) -> None:
        super().__init__()
        self.outermost = outermost
        use_bias = norm_layer is nn.InstanceNorm2d  # batch norm has its own shift
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
        downrelu, uprelu = nn.LeakyReLU(0.2, True), nn.ReLU(True)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            layers = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            layers = [downrelu, downconv, uprelu, upconv, norm_layer(outer_nc)]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            layers = [downrelu, downconv, norm_layer(inner_nc), submodule, uprelu, upconv, norm_layer(outer_nc)]
            if dropout:
                # pix2pix's only source of noise: dropout in the decoder. pix2pix also tests
                # with it on (and with batch statistics); our exports and validation run in eval
                # mode, as pix2pix's --eval does: deterministic output, running statistics.
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


@register_generator("unet_generator")
class UnetGenerator(nn.Module):
    """U-Net with ``num_downs`` stride-2 levels; ``num_downs=8`` is pix2pix's ``unet_256``.

    Input and output: (N, 3, H, W) RGB in [-1, 1]. H and W should be multiples of
    ``2 ** num_downs`` (the runtime pads); other sizes are replicate-padded here and cropped
    back, a convenience for eager PyTorch that an exported graph traced at a multiple omits.
    """

    input_range = (-1.0, 1.0)
    channel_order = "RGB"

    def __init__(self, num_downs: int = 8, ngf: int = 64, dropout: bool = True, norm: str = "batch") -> None:
        super().__init__()
        if num_downs < 5 or ngf < 1 or norm not in _NORMS:
            raise ValueError(f"need num_downs >= 5, ngf >= 1 and norm in {sorted(_NORMS)}; "
                             f"got num_downs={num_downs}, ngf={ngf}, norm={norm!r}")
        self.num_downs, self.ngf, self.dropout, self.norm = num_downs, ngf, dropout, norm
        self.size_multiple = 2 ** num_downs
        norm_layer = _NORMS[norm]
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, norm_layer=norm_layer)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, norm_layer=norm_layer, dropout=dropout)
        for mult in (4, 2, 1):
            block = UnetSkipConnectionBlock(ngf * mult, ngf * mult * 2, submodule=block, norm_layer=norm_layer)
        self.model = UnetSkipConnectionBlock(3, ngf, input_nc=3, submodule=block, outermost=True, norm_layer=norm_layer)

    @property
    def arch_args(self) -> dict:
        return {"num_downs": self.num_downs, "ngf": self.ngf, "dropout": self.dropout, "norm": self.norm}

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        pad_bottom, pad_right = -height % self.size_multiple, -width % self.size_multiple
        if pad_bottom or pad_right:
            padded = F.pad(x, (0, pad_right, 0, pad_bottom), mode="replicate")
            return self.model(padded)[..., :height, :width]
        return self.model(x)

    @staticmethod
    def args_from_state_dict(state_dict: dict) -> dict | None:
        """Infer the arguments from key names; None when the keys are not this architecture's."""
        first = state_dict.get("model.model.0.weight")
        if first is None or tuple(first.shape[1:]) != (3, 4, 4):
            return None
        # Block k's layers sit under "model" + ".model.1" * (k - 1) + ".model".
        depth = max(key.count("model.") - 1 for key in state_dict if re.fullmatch(r"model(\.model\.\d+)+\.weight", key))
        # Dropout has no weights, so it cannot be seen in a state dict: assume pix2pix's default.
        dropout = True
        # pix2pix gives its convolutions a bias only with InstanceNorm (BatchNorm has its own
        # shift); running statistics tell nothing: PyTorch < 0.4 saved them for InstanceNorm too.
        norm = "instance" if "model.model.0.bias" in state_dict else "batch"
        return {"num_downs": depth, "ngf": int(first.shape[0]), "dropout": dropout, "norm": norm}

"""DeblurGAN's ResNet generator (Kupyn et al. 2018), laid out exactly as the original code.

Module indices matter: the original ``latest_net_G.pth`` files address weights as
``model.<index>.*`` and ``model.<index>.conv_block.<index>.*``, so the ``nn.Sequential``
order below must not change (that is why the padding modules and the dropout slot exist as
separate entries rather than ``padding_mode="reflect"`` on the convolutions).
"""

from __future__ import annotations

import re

import torch
from torch import Tensor, nn

from . import register_generator

_STEM_AND_DOWN = 10  # entries of ``model`` before the first ResnetBlock: pad, conv, norm, relu, 2 x (conv, norm, relu)


def _instance_norm(channels: int) -> nn.InstanceNorm2d:
    # No affine parameters and no running statistics, as DeblurGAN trained it: every image
    # is normalised by its own statistics at train and test time.
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    """Pad-Conv3-IN-ReLU-[Dropout]-Pad-Conv3-IN, added to its input."""

    def __init__(self, dim: int, dropout: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, bias=True),
            _instance_norm(dim),
            nn.ReLU(True),
        ]
        if dropout:
            # The original only inserts the module when enabled, so the second conv sits
            # at index 6 with dropout and at 5 without; checkpoints depend on it.
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, kernel_size=3, bias=True), _instance_norm(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv_block(x)


class CoarseBranch(nn.Module):
    """A residual detour through 1/8 resolution: 2x down, ``n_blocks`` ResnetBlocks, 2x up.

    Not in DeblurGAN: each block here sees twice the context of one at 1/4 for a quarter of
    the pixels, for shake wider than the 1/4 stage's receptive field (experiments.md). Its
    last convolution has no norm behind it, so zeroing it silences the branch exactly and
    a trained model can grow one without changing its output.
    """

    def __init__(self, dim: int, n_blocks: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(dim, dim * 2, kernel_size=3, stride=2, padding=1, bias=True),
            _instance_norm(dim * 2),
            nn.ReLU(True),
            *[ResnetBlock(dim * 2, dropout=False) for _ in range(n_blocks)],
            nn.ConvTranspose2d(dim * 2, dim, kernel_size=3, stride=2, padding=1, output_padding=1, bias=True),
            _instance_norm(dim),
            nn.ReLU(True),
            nn.Conv2d(dim, dim, kernel_size=1, bias=True),
        )

    @property
    def out(self) -> nn.Conv2d:
        return self.body[-1]

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


@register_generator("resnet_generator")
class ResnetGenerator(nn.Module):
    """Conv7 - 2x down - ``n_blocks`` ResnetBlocks - 2x up - Conv7 - Tanh, plus a global skip.

    Input and output: (N, 3, H, W) RGB in [-1, 1], H and W multiples of 4 (the runtime pads).
    ``coarse_blocks`` > 0 (not in the paper) adds a :class:`CoarseBranch` after the blocks,
    outside ``model`` so that the DeblurGAN keys stay as they are; H and W must then be
    multiples of 8.
    """

    # The preprocessing contract travels with the model: checkpoint -> ONNX metadata -> runtime.
    input_range = (-1.0, 1.0)
    channel_order = "RGB"  # the original code read images with PIL
    size_multiple = 4  # two stride-2 convolutions down, two transposed up

    def __init__(self, ngf: int = 64, n_blocks: int = 9, dropout: bool = True, coarse_blocks: int = 0) -> None:
        super().__init__()
        if ngf < 1 or n_blocks < 0 or coarse_blocks < 0:
            raise ValueError(f"ngf must be >= 1, n_blocks and coarse_blocks >= 0, got ngf={ngf}, "
                             f"n_blocks={n_blocks}, coarse_blocks={coarse_blocks}")
        self.ngf, self.n_blocks, self.dropout, self.coarse_blocks = ngf, n_blocks, dropout, coarse_blocks
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(3, ngf, kernel_size=7, bias=True),
            _instance_norm(ngf),
            nn.ReLU(True),
        ]
        for mult in (1, 2):
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=True),
                _instance_norm(ngf * mult * 2),
                nn.ReLU(True),
            ]
        layers += [ResnetBlock(ngf * 4, dropout) for _ in range(n_blocks)]
        for mult in (4, 2):
            layers += [
                nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, kernel_size=3, stride=2, padding=1, output_padding=1, bias=True),
                _instance_norm(ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, kernel_size=7, bias=True), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        if coarse_blocks:
            self.coarse = CoarseBranch(ngf * 4, coarse_blocks)
            self.size_multiple = 8

    @property
    def min_size(self) -> int:
        """Smallest side it trains on: InstanceNorm at the coarsest scale needs 2 x 2 pixels."""
        return 2 * self.size_multiple

    @property
    def arch_args(self) -> dict:
        args = {"ngf": self.ngf, "n_blocks": self.n_blocks, "dropout": self.dropout}
        if self.coarse_blocks:  # absent otherwise: DeblurGAN-layout checkpoints stay as they were
            args["coarse_blocks"] = self.coarse_blocks
        return args

    def forward(self, x: Tensor) -> Tensor:
        if self.coarse_blocks:
            split = _STEM_AND_DOWN + self.n_blocks
            residual = self.model[split:](self.coarse(self.model[:split](x)))
        else:
            residual = self.model(x)
        # learn_residual: the network predicts the correction, the skip carries the image.
        return (x + residual).clamp(-1.0, 1.0)

    @staticmethod
    def args_from_state_dict(state_dict: dict) -> dict | None:
        """Infer ``ngf``, ``n_blocks`` and ``dropout`` from key names and tensor shapes.

        Returns None when the keys are not this architecture's.
        """
        first = state_dict.get("model.1.weight")
        if first is None or tuple(first.shape[1:]) != (3, 7, 7):
            return None
        block_ids = set()
        second_conv_slots = set()
        for key in state_dict:
            m = re.fullmatch(r"model\.(\d+)\.conv_block\.(\d+)\.weight", key)
            if m:
                block_ids.add(int(m.group(1)))
                second_conv_slots.add(int(m.group(2)))
        # The second conv of a block sits at index 6 behind a Dropout slot, else at 5.
        dropout = 6 in second_conv_slots or not block_ids
        args = {"ngf": int(first.shape[0]), "n_blocks": len(block_ids), "dropout": dropout}
        coarse = {int(m.group(1)) for key in state_dict
                  if (m := re.fullmatch(r"coarse\.body\.(\d+)\.conv_block\.1\.weight", key))}
        if coarse or "coarse.body.0.weight" in state_dict:
            args["coarse_blocks"] = len(coarse)
        return args


def _convs(model: ResnetGenerator) -> tuple[list[nn.Module], list[tuple[nn.Conv2d, nn.Conv2d]]]:
    """The six convolutions outside the blocks (stem, 2 down, 2 up, head) and each block's pair."""
    outer = [m for m in model.model if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    blocks = []
    for m in model.model:
        if isinstance(m, ResnetBlock):
            first, second = (c for c in m.conv_block if isinstance(c, nn.Conv2d))
            blocks.append((first, second))
    return outer, blocks


def _copy_map(old: int, new: int, rng: torch.Generator) -> Tensor:
    """New channel j repeats old channel map[j]: the first ``old`` are themselves, the rest random."""
    return torch.cat([torch.arange(old), torch.arange(new - old) % old if new >= 2 * old
                      else torch.randperm(old, generator=rng)[: new - old]])


def _split_inputs(weight: Tensor, dim: int, copies: Tensor, noise: float, rng: torch.Generator) -> Tensor:
    """Spread each old input channel's weights over its copies, in random shares that sum to 1.

    The copies carry identical activations, so any shares that sum to one keep the output;
    unequal shares give the copies different gradients, so they can learn different features
    (equal halves would keep them identical for ever: Net2Net, Chen et al. 2016).
    """
    grown = weight.index_select(dim, copies)
    share = torch.exp(noise * torch.randn(grown.shape, generator=rng, dtype=grown.dtype))
    total = torch.zeros_like(weight).index_add_(dim, copies, share)
    return grown * share / total.index_select(dim, copies)


@torch.no_grad()
def grow_resnet_generator(source: ResnetGenerator, target: ResnetGenerator, *, noise: float = 0.1,
                          seed: int = 0) -> None:
    """Load ``source`` into the wider and/or deeper ``target`` so that it computes the same function.

    Width (Net2WiderNet): every new channel repeats an existing one (an InstanceNorm of a copy
    is the copy of the InstanceNorm), and the layer reading them splits the old weight over the
    copies. Depth: each extra ResnetBlock goes after the old ones with its second convolution
    zeroed, so it adds InstanceNorm(0) = 0 and starts as the identity; its first convolution
    keeps ``target``'s initialisation. A new coarse branch starts silent the same way (its
    output convolution zeroed; nothing fragile, no norm follows it). Training then starts from the smaller model's quality
    instead of from scratch. ``target`` needs ngf >= source's and n_blocks >= source's.

    New blocks are fragile: the gradient of InstanceNorm at a zero-variance input is scaled by
    1/sqrt(eps) ~ 300, and a norm without affine parameters makes any non-constant branch
    output unit-variance, so the first Adam steps turn each new block from nothing into a full
    unit-variance term of the residual stream. Train them with an LR warm-up; widening alone
    perturbs no more than any restart of Adam.
    """
    if target.ngf < source.ngf or target.n_blocks < source.n_blocks:
        raise ValueError(f"can only grow: ngf {source.ngf} -> {target.ngf}, n_blocks {source.n_blocks} -> "
                         f"{target.n_blocks} (a smaller model cannot hold the larger one's function)")
    if source.coarse_blocks and (source.coarse_blocks, source.ngf) != (target.coarse_blocks, target.ngf):
        raise ValueError(f"a coarse branch cannot grow or go: coarse_blocks {source.coarse_blocks} -> "
                         f"{target.coarse_blocks}, ngf {source.ngf} -> {target.ngf}")
    rng = torch.Generator().manual_seed(seed)
    # Same width: plain copies (splitting a weight into shares of 1 would round it).
    widths = {w: _copy_map(source.ngf * w, target.ngf * w, rng) for w in (1, 2, 4) if target.ngf > source.ngf}
    (s_outer, s_blocks), (t_outer, t_blocks) = _convs(source), _convs(target)

    def grow(src: nn.Module, dst: nn.Module, copies_in: Tensor | None, copies_out: Tensor | None) -> None:
        # Conv2d weights are (out, in, k, k); ConvTranspose2d ones (in, out, k, k).
        in_dim, out_dim = (0, 1) if isinstance(src, nn.ConvTranspose2d) else (1, 0)
        weight, bias = src.weight, src.bias
        if copies_out is not None:
            weight, bias = weight.index_select(out_dim, copies_out), bias.index_select(0, copies_out)
        if copies_in is not None:
            weight = _split_inputs(weight, in_dim, copies_in, noise, rng)
        dst.weight.copy_(weight)
        dst.bias.copy_(bias)

    # stem 3 -> ngf, down ngf -> 2 ngf -> 4 ngf, up 4 ngf -> 2 ngf -> ngf, head ngf -> 3
    for src, dst, w_in, w_out in zip(s_outer, t_outer, (None, 1, 2, 4, 2, 1), (1, 2, 4, 2, 1, None)):
        grow(src, dst, widths.get(w_in), widths.get(w_out))
    for (s1, s2), (t1, t2) in zip(s_blocks, t_blocks):
        grow(s1, t1, widths.get(4), widths.get(4))
        grow(s2, t2, widths.get(4), widths.get(4))
    for _, second in t_blocks[len(s_blocks):]:
        second.weight.zero_()
        second.bias.zero_()
    if source.coarse_blocks:
        target.coarse.load_state_dict(source.coarse.state_dict())
    elif target.coarse_blocks:
        # A new branch adds exactly zero; the rest of it keeps ``target``'s initialisation, and
        # its zeroed output convolution (no norm behind it) gets gradients from the first step.
        target.coarse.out.weight.zero_()
        target.coarse.out.bias.zero_()

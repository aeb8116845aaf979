"""Measurements of a generator that the runtime and the benchmarks rely on."""

from __future__ import annotations

import copy

import torch
from torch import nn

_NORMS = (nn.InstanceNorm2d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)
_NONLINEAR = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.Dropout)


@torch.no_grad()
def _linear_probe(model: nn.Module) -> nn.Module:
    """A copy whose output is a positive, weight-independent function of every input pixel in
    the convolutional receptive field.

    The trained weights cannot be used: a saturated Tanh (or dead ReLUs, or the output clamp)
    zeroes the gradient and the field would measure as a single pixel. So norms and
    non-linearities become identities and every kernel a positive average (fan-in
    normalised, so values neither explode into the clamp nor vanish).
    """
    probe = copy.deepcopy(model).eval()
    for child in list(probe.modules()):
        for attr, sub in list(child.named_children()):
            if isinstance(sub, _NORMS + _NONLINEAR):
                setattr(child, attr, nn.Identity())
    for module in probe.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            module.weight.fill_(1.0 / (module.weight[0].numel()))
            if module.bias is not None:
                module.bias.zero_()
    return probe


def measure_receptive_field(model: nn.Module, *, start: int = 256, limit: int = 2048) -> int:
    """Side of the input square that one output pixel depends on (norm layers disabled).

    Found by back-propagating from the centre output pixel of a linearised copy; the input
    grows until the gradient's support no longer touches the border (or ``limit`` is
    reached, e.g. for U-Nets whose field covers everything).
    """
    probe = _linear_probe(model)
    size = start
    while True:
        x = torch.full((1, 3, size, size), 1e-3, requires_grad=True)
        y = probe(x)
        c = size // 2
        y[0, :, c, c].sum().backward()
        support = x.grad[0].abs().sum(0) > 0
        rows = torch.nonzero(support.any(1)).flatten()
        cols = torch.nonzero(support.any(0)).flatten()
        if rows.numel() == 0:
            return 1
        touches = rows[0] == 0 or cols[0] == 0 or rows[-1] == size - 1 or cols[-1] == size - 1
        extent = int(max(rows[-1] - rows[0], cols[-1] - cols[0])) + 1
        if not touches or size * 2 > limit:
            return extent
        size *= 2


def count_gflops_per_megapixel(model: nn.Module, *, size: int = 256) -> float:
    """Multiply-adds of convolutions x 2, per million input pixels (norms/activations ignored)."""
    macs = 0

    def conv_hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs
        k = module.kernel_size[0] * module.kernel_size[1]
        if isinstance(module, nn.ConvTranspose2d):
            macs += inputs[0].numel() * module.out_channels // module.groups * k
        else:
            macs += output.numel() * module.in_channels // module.groups * k

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules()
             if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, size, size))
    finally:
        for h in hooks:
            h.remove()
    return 2 * macs / (size * size) * 1e6 / 1e9


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

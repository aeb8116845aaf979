"""Generator architectures, keyed by name.

A checkpoint stores ``arch`` (a registry name) and ``arch_args`` (the constructor's keyword
arguments); ``create_generator(arch, **arch_args)`` rebuilds exactly that network, so a
command-line flag can never silently change the architecture of a model being loaded.
"""

from __future__ import annotations

import inspect
from typing import Callable

from torch import nn

_GENERATORS: dict[str, Callable[..., nn.Module]] = {}


def register_generator(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _GENERATORS:
            raise ValueError(f"generator {name!r} is registered twice")
        _GENERATORS[name] = factory
        return factory

    return decorator


def list_generators() -> list[str]:
    return sorted(_GENERATORS)


def create_generator(arch: str, **arch_args) -> nn.Module:
    """Build a registered generator; unknown names and unknown arguments are errors."""
    try:
        factory = _GENERATORS[arch]
    except KeyError:
        raise ValueError(f"unknown generator {arch!r}; registered: {', '.join(list_generators())}") from None
    takes = inspect.signature(factory).parameters
    foreign = sorted(set(arch_args) - set(takes))
    if foreign and not any(p.kind is p.VAR_KEYWORD for p in takes.values()):
        raise ValueError(f"{arch} takes {', '.join(takes)}; not {', '.join(foreign)}")
    return factory(**arch_args)


def crop_limits(generator: nn.Module) -> tuple[int, int]:
    """(multiple, smallest side) of the training crops a generator takes: its size multiple, and
    a minimum below which an InstanceNorm at its coarsest scale would see one pixel."""
    multiple = int(getattr(generator, "size_multiple", 1))
    return multiple, int(getattr(generator, "min_size", multiple))


def check_crop(generator: nn.Module, crop: int, option: str = "--crop", *, ssim: bool = False) -> None:
    """ValueError naming the fix when ``crop`` does not fit ``generator`` (``ssim``: it is also
    scored with SSIM, whose window is 7 px)."""
    multiple, smallest = crop_limits(generator)
    if ssim:
        smallest = max(smallest, -(-7 // multiple) * multiple)
    if crop % multiple or crop < smallest:
        fit = max(smallest, -(-crop // multiple) * multiple)
        fix = f"; pass {option} {fit}"
        downs = getattr(generator, "num_downs", None)
        if downs is not None and crop >= 32 and crop & (crop - 1) == 0:  # U-Nets have 5 levels at least
            # A U-Net halves its input num_downs times: fewer levels take a smaller crop.
            fix += f", or --num-downs {min(downs, crop.bit_length() - 1)} for {crop} px"
        raise ValueError(f"{option} {crop}: this generator needs sides that are multiples of {multiple}, at least "
                         f"{smallest}{fix}")


def infer_arch(state_dict: dict) -> tuple[str, dict] | None:
    """Recognise a bare state dict: the first architecture whose key layout matches wins."""
    for name, factory in _GENERATORS.items():
        infer = getattr(factory, "args_from_state_dict", None)
        args = infer(state_dict) if infer else None
        if args is not None:
            return name, args
    return None


# Registration happens on import; keep these imports below the registry.
from .resnet_generator import ResnetGenerator  # noqa: E402
from .unet_generator import UnetGenerator  # noqa: E402

__all__ = ["ResnetGenerator", "UnetGenerator", "check_crop", "create_generator", "crop_limits", "infer_arch",
           "list_generators", "register_generator"]

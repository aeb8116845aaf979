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
    if foreign:
        raise ValueError(f"{arch} takes {', '.join(takes)}; not {', '.join(foreign)}")
    return factory(**arch_args)


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

__all__ = ["ResnetGenerator", "create_generator", "infer_arch", "list_generators", "register_generator"]
from .unet_generator import UnetGenerator  # noqa: E402

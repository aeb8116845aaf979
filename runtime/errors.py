"""Errors a user can act on, and how every CLI reports them.

Libraries raise these with the file and the fix in the message; the CLIs turn them into
one line on stderr and exit status 2 (usage/input errors), never a traceback unless
``--debug`` is given. Other exceptions are bugs and keep their traceback.
"""

from __future__ import annotations

import functools
import logging
import sys
from typing import Callable, TypeVar

import click

EXIT_USAGE = 2  # bad input, bad file, bad option: the user can fix it
EXIT_CHECK_FAILED = 1  # the inputs were fine but the result failed its checks (export parity)

F = TypeVar("F", bound=Callable[..., object])


class DeblurError(Exception):
    """Base class: something the user can fix. The message names the input and the fix."""

    exit_code = EXIT_USAGE


class InputError(DeblurError):
    """An input image/video/folder that cannot be read or used."""


class ModelError(DeblurError):
    """A model file (ONNX) that cannot be loaded or does not fit the runtime's contract."""


class CheckpointError(DeblurError):
    """A PyTorch checkpoint that cannot be loaded safely or does not fit the architecture."""


class ProviderError(DeblurError):
    """An ONNX Runtime execution provider that is missing or failed to initialise."""


class ExportError(DeblurError):
    """Export produced a model that fails its checks (parity, simplification)."""

    exit_code = EXIT_CHECK_FAILED


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (libraries' messages run to pages), or its type."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


# What each extra of pyproject.toml brings, and the extra each tool is installed with: a hint
# names the tool's own extra when it brings the missing module, never one already installed.
_EXTRA_MODULES = {"cpu": {"onnxruntime"}, "gpu": {"onnxruntime"}, "train": {"torch", "skimage"},
                  "export": {"torch", "onnx", "onnxsim", "onnxconverter_common"}, "bench": {"skimage"},
                 "heif": {"pillow_heif"}}
# deblur-run has none: its onnxruntime comes from [cpu] or [gpu], and the hint names both.
_TOOL_EXTRA = {"deblur-export": "export", "deblur-train": "train", "deblur-bench": "bench"}


def install_hint(module: str | None, tool: str | None = None) -> str:
    """What to install for a missing optional module, e.g. ``pip install '.[export]'`` (deblur-edge
    installs from its checkout: it is not on PyPI)."""
    module = (module or "").split(".")[0]
    own = _TOOL_EXTRA.get(tool or "")
    extras = [own] if own and module in _EXTRA_MODULES[own] else \
        [extra for extra, modules in _EXTRA_MODULES.items() if module in modules]
    if not extras:  # a base dependency (PyAV, OpenCV, ...): the install itself is incomplete
        return "reinstall deblur-edge: pip install '.[cpu]' in its checkout"
    # torch first, pinned: an open range pulls a multi-GB CUDA build (README, Install).
    first = "pip install torch==2.13.0, then " if module == "torch" else ""
    return first + " or ".join(f"pip install '.[{extra}]'" for extra in extras) + " in the deblur-edge checkout"


def report_errors(func: F) -> F:
    """Wrap a click command body: DeblurError -> one line + exit 2; ``debug=True`` re-raises."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        debug = bool(kwargs.get("debug"))
        try:
            return func(*args, **kwargs)
        except DeblurError as exc:
            if debug:
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except ImportError as exc:
            # A missing optional dependency (onnxruntime, torch, onnxsim, ...): say which, once.
            if debug:
                raise
            context = click.get_current_context(silent=True)
            tool = context.find_root().info_name if context else None
            hint = "" if "install" in str(exc) else f" ({install_hint(exc.name, tool)})"
            click.echo(f"error: {exc}{hint}", err=True)
            sys.exit(EXIT_USAGE)
        except OSError as exc:
            # A file the code did not anticipate (permissions, full disk): still one line.
            if debug or exc.filename is None:
                raise
            click.echo(f"error: {exc.filename}: {exc.strerror or first_line(exc)}", err=True)
            sys.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            if debug:
                raise
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Library code logs through `logging`; the CLIs decide what reaches the terminal."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)

"""The checkpoint format, and loading of state dicts that other code saved.

Our format (``FORMAT_VERSION`` 1) is a plain dict that ``torch.load(weights_only=True)``
can read, so a checkpoint can never run code::

    {
      "format": "deblur-edge-checkpoint", "version": 1,
      "arch": "resnet_generator", "arch_args": {"ngf": 64, "n_blocks": 9, "dropout": True},
      "generator": <state dict>,
      "step": 12000, "meta": {"data": [...], "losses": {...}, "config": {...}},
      # the trainer adds what it needs to resume: "critic", "optimizers", "rng", ...
    }

Also accepted: bare generator state dicts (the original DeblurGAN ``latest_net_G.pth``,
saved by PyTorch < 0.4 with InstanceNorm running statistics), ``module.`` / ``_orig_mod.``
prefixes (DataParallel, torch.compile) and dicts wrapped as ``{"model"|"state_dict"|
"generator"|"netG": ...}``. ``arch_args`` are inferred from tensor shapes when absent.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deblur.runtime.atomic import atomic_path
from deblur.runtime.errors import CheckpointError, first_line

from .models import create_generator, infer_arch
from .models.resnet_generator import ResnetGenerator, grow_resnet_generator

log = logging.getLogger(__name__)

FORMAT_NAME = "deblur-edge-checkpoint"
FORMAT_VERSION = 1
_WRAPPER_KEYS = ("generator", "netG", "model", "state_dict", "net_g", "params")
_PREFIXES = ("module.", "_orig_mod.")
_FILE_KINDS = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"\x08", "a protobuf, e.g. an ONNX model"))
_STALE_NORM_SUFFIXES = (".running_mean", ".running_var", ".num_batches_tracked")


@dataclass
class LoadedGenerator:
    """A generator in eval mode and where it came from."""

    model: nn.Module
    arch: str
    arch_args: dict
    path: Path
    sha256: str
    step: int | None = None
    meta: dict = field(default_factory=dict)


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def strip_prefixes(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Remove wrapper prefixes that DataParallel/DDP (``module.``) and torch.compile add."""
    out = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        out[key] = value
    return out


def save_checkpoint(path: str | os.PathLike, generator: nn.Module, *, arch: str, arch_args: dict,
                    step: int | None = None, meta: dict | None = None, **extra: Any) -> Path:
    """Write a checkpoint atomically (temporary file + ``os.replace``): never half a file."""
    path = Path(path)
    state = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "arch": arch,
        "arch_args": dict(arch_args),
        "generator": strip_prefixes(generator.state_dict()),
        "step": step,
        "meta": meta or {},
        **extra,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def save_generator_only(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy a training checkpoint without the critic and optimiser states: what deblur-export
    and inference need, a third of the size (to move it off a rented GPU, or to share it)."""
    state = load_checkpoint(src)
    keep = ("format", "version", "arch", "arch_args", "generator", "step", "meta", "config")
    with atomic_path(Path(dst)) as tmp:
        torch.save({k: state[k] for k in keep if k in state}, tmp)
    return Path(dst)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True`` and errors that name the file and the fix."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory; give the checkpoint file (e.g. {path}/checkpoints/latest.pt)")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: file is empty; re-save or re-download the checkpoint")
    with open(path, "rb") as f:
        head = f.read(4)
    # torch.save writes a zip archive (PyTorch >= 1.6) or, before, a pickle (protocol 2+,
    # first byte 0x80). Anything else (an image, an ONNX model) is named as such, not as a
    # weights file that the safe loader refused.
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        kind = next((name for magic, name in _FILE_KINDS if head.startswith(magic)), "another kind of file")
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint: it is {kind}; give the .pt/.pth file "
                              "torch.save wrote (deblur-train: RUN_DIR/checkpoints/latest.pt)")
    try:
        with warnings.catch_warnings():  # torch warns about what the error below says once
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses anything but tensors and plain containers: a file that wants
        # to build arbitrary objects (or run code) is rejected, never executed. torch's own
        # text opens with advice to load it unsafely: only the line naming the culprit is quoted.
        culprit = next((line.strip().split(". ")[0] for line in str(exc).splitlines()
                        if "GLOBAL" in line or "Unsupported" in line), "it builds objects")
        raise CheckpointError(
            f"{path}: refused to load: it is not a plain weights file ({culprit[:200]}). "
            "Only checkpoints of tensors and plain containers are loaded; re-save it with "
            "torch.save(model.state_dict(), path)") from None
    except Exception as exc:  # noqa: BLE001 - any failure to deserialise means "not a checkpoint"
        reason = first_line(exc).split(". ")[0]  # torch's first sentence; the rest is advice
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint, truncated or damaged ({reason}); "
                              "copy it again, or use another one (deblur-train keeps RUN_DIR/checkpoints/"
                              "step_*.pt beside latest.pt)") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, expected a dict of weights")
    return obj


def _unwrap_state_dict(obj: dict[str, Any], path: Path) -> dict[str, Any]:
    if obj.get("format") == FORMAT_NAME:
        return obj["generator"]
    for key in _WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, dict) and inner and all(isinstance(k, str) for k in inner):
            return inner
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    raise CheckpointError(f"{path}: no generator weights found (top-level keys: {', '.join(map(str, list(obj)[:8]))})")


def _drop_stale_norm_stats(state_dict: dict[str, Any], model: nn.Module, path: Path) -> dict[str, Any]:
    """PyTorch < 0.4 saved running stats for InstanceNorm that our norms do not track."""
    expected = set(model.state_dict())
    stale = [k for k in state_dict if k.endswith(_STALE_NORM_SUFFIXES) and k not in expected]
    if stale:
        log.info("%s: dropped %d InstanceNorm running-statistics tensors (saved by PyTorch < 0.4; "
                 "the model normalises each image by its own statistics)", path, len(stale))
    return {k: v for k, v in state_dict.items() if k not in stale}


def load_generator(path: str | os.PathLike) -> LoadedGenerator:
    """Load any supported checkpoint into an eval-mode generator on the CPU."""
    path = Path(path)
    obj = load_checkpoint(path)
    if obj.get("format") == FORMAT_NAME and obj.get("version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {obj['version']} is newer than this "
                              f"deblur-edge understands ({FORMAT_VERSION}); upgrade deblur-edge")
    state_dict = strip_prefixes(_unwrap_state_dict(obj, path))
    if obj.get("arch"):
        arch, arch_args = obj["arch"], dict(obj.get("arch_args") or {})
    else:
        inferred = infer_arch(state_dict)
        if inferred is None:
            sample = ", ".join(list(state_dict)[:5])
            raise CheckpointError(f"{path}: weights do not match any known generator architecture "
                                  f"(first keys: {sample}); is this a generator checkpoint?")
        arch, arch_args = inferred
    try:
        model = create_generator(arch, **arch_args)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot build {arch!r} from {arch_args}: {exc}") from None
    state_dict = _drop_stale_norm_stats(state_dict, model, path)
    broken = [k for k, t in state_dict.items() if torch.is_tensor(t) and t.is_floating_point() and not t.isfinite().all()]
    if broken:  # NaN compares false with everything: every later check would pass it
        raise CheckpointError(f"{path}: {len(broken)} weight tensors hold NaN or Inf ({_preview(broken, 2)}): the run "
                              "diverged before this was saved; use an earlier checkpoint (checkpoints/step_*.pt) or "
                              "retrain with a lower --lr")
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as exc:  # shape mismatches raise even with strict=False
        lines = [ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln]
        raise CheckpointError(f"{path}: does not fit {arch}({_fmt_args(arch_args)}): "
                              f"{_preview(lines, 2) if lines else str(exc)[:300]}") from None
    problems = []
    if result.missing_keys:
        problems.append(f"missing keys: {_preview(result.missing_keys)}")
    if result.unexpected_keys:
        problems.append(f"unexpected keys: {_preview(result.unexpected_keys)}")
    if problems:
        raise CheckpointError(f"{path}: does not fit {arch}({_fmt_args(arch_args)}): " + "; ".join(problems))
    model.eval()
    return LoadedGenerator(model=model, arch=arch, arch_args=arch_args, path=path, sha256=file_sha256(path),
                           step=obj.get("step"), meta=obj.get("meta") or {})


def _preview(keys: list[str], n: int = 4) -> str:
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def _fmt_args(args: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in args.items())


def init_generator_from(generator: nn.Module, arch: str, path: str | os.PathLike, *, seed: int = 0) -> LoadedGenerator:
    """Copy the weights of the generator checkpoint at ``path`` into ``generator`` (fine-tuning).

    Tensors are matched by position, not by name: a Dropout slot has no weights but shifts the
    indices of what follows it (``conv_block.6`` vs ``.5``), so a model trained with dropout
    can start a run without it. A ResNet generator may also grow into a wider (``ngf``) or
    deeper (``n_blocks``) one that starts out computing the same function
    (:func:`grow_resnet_generator`; ``seed`` picks its symmetry-breaking shares). Any other
    difference is an error.
    """
    source = load_generator(path)
    if source.arch != arch:
        raise CheckpointError(f"{path}: holds a {source.arch} generator, this run trains {arch}; "
                              f"drop --init-from or pass its architecture")
    src, dst = list(source.model.state_dict().values()), generator.state_dict()
    shapes_src = [tuple(t.shape) for t in src]
    shapes_dst = [tuple(t.shape) for t in dst.values()]
    if shapes_src == shapes_dst:
        generator.load_state_dict(dict(zip(dst, src)))
        return source
    if isinstance(source.model, ResnetGenerator) and isinstance(generator, ResnetGenerator):
        try:
            grow_resnet_generator(source.model, generator, seed=seed)
            return source
        except ValueError as exc:
            raise CheckpointError(f"{path}: {exc}; leave out --ngf/--n-blocks/--coarse-blocks (NGF/BLOCKS/COARSE "
                                  "of the recipe scripts) to train the checkpoint's own size") from None
    raise CheckpointError(f"{path}: its {arch}({_fmt_args(source.arch_args)}) does not fit this run's "
                          f"generator ({len(shapes_src)} vs {len(shapes_dst)} tensors or other shapes); "
                          "leave out the width/depth options (--ngf, --n-blocks, --num-downs; NGF/BLOCKS "
                          "of the recipe scripts) to take the checkpoint's")

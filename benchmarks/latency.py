"""Latency and throughput of models x providers x sizes x tile settings.

Three variants are timed per setting; at each size every model, provider, tile setting and
variant runs interleaved, run by run, in one process, so background load on a shared machine
hits them alike and their ratios stay fair:

* ``deblurrer``: ``Deblurrer.__call__`` on a uint8 photo: what a user gets, pre/post-processing
  and tiling included;
* ``session.run``: the bare ONNX Runtime call(s) on pre-made tensors of the same shapes (the
  whole padded image, or every tile), so the runtime's overhead is the difference;
* ``torch`` (with ``--torch CKPT``): the same computation in PyTorch eager FP32, on the CPU
  with the same thread count (compared with the CPU provider) or with ``--torch-device cuda``
  on the GPU (compared with the CUDA provider). torch is imported only then.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any, Callable

import cv2
import numpy as np

from deblur.runtime.deblurrer import Deblurrer
from deblur.runtime.errors import InputError, install_hint
from deblur.runtime.image_io import as_bgr8, read_image
from deblur.runtime.tiling import pad_reflect

from . import report

log = logging.getLogger(__name__)

NAMED_SIZES = {  # name -> (width, height)
    "256": (256, 256),
    "480p": (854, 480),
    "720p": (1280, 720),
    "1080p": (1920, 1080),
    "4k": (3840, 2160),
}


def parse_size(text: str) -> tuple[str, int, int]:
    """``"720p"``, ``"4K"``, ``"256"`` (any N: N x N) or ``"640x480"`` -> (label, width, height)."""
    key = text.strip().lower().replace("²", "")
    if key in NAMED_SIZES:
        return key, *NAMED_SIZES[key]
    if key.isdigit() and int(key) > 0:
        return key, int(key), int(key)
    match = re.fullmatch(r"(\d+)\s*[x×]\s*(\d+)", key)
    if match and int(match.group(1)) > 0 and int(match.group(2)) > 0:
        return key, int(match.group(1)), int(match.group(2))
    raise InputError(f"size {text!r} is not one of {', '.join(NAMED_SIZES)}, N (a square) or WxH (e.g. 640x480)")


def photo(width: int, height: int, path: str | None = None) -> np.ndarray:
    """A real photo (default: the bundled astronaut) scaled to cover ``width x height`` and centre-cropped.

    Real content rather than noise: a model's cost does not depend on it, but tiled-vs-whole
    differences and codec behaviour in the video benchmark do.
    """
    src = path or str(resources.files("deblur.runtime") / "assets" / "astronaut.jpg")
    image = as_bgr8(read_image(src))
    scale = max(width / image.shape[1], height / image.shape[0])
    resized = cv2.resize(image, (max(width, math.ceil(image.shape[1] * scale)), max(height, math.ceil(image.shape[0] * scale))),
                         interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
    y0, x0 = (resized.shape[0] - height) // 2, (resized.shape[1] - width) // 2
    return np.ascontiguousarray(resized[y0:y0 + height, x0:x0 + width])


def time_interleaved(variants: dict[str, Callable[[], Any]], *, warmup: int, runs: int) -> dict[str, list[float]]:
    """Seconds per call of each variant; warm-up calls excluded, variants alternated per run.

    Each timed call comes right after an untimed call of the same variant. Without it the
    first call after another session pays for that session's still-spinning ONNX Runtime
    threads and for cold caches (measured at 256² on 2 cores: 27 ms alone, 46–49 ms right
    after another session), and in a fixed cyclic order the same variants always pay: the
    runtime's overhead over ``session.run`` read 1.5x at 256² and 1.14x at 480p instead of
    ~1.02x. Interleaving still spreads background load over all variants; the untimed calls
    double the benchmark's time.
    """
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for run in range(runs):
        shift = run % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            fn = variants[name]
            fn()  # settle: this variant's threads and caches, not the previous one's
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


@dataclass
class LatencySettings:
    models: list[str]
    providers: list[str] = field(default_factory=lambda: ["cpu"])
    sizes: list[str] = field(default_factory=lambda: ["256", "480p", "720p", "1080p"])
    tiles: list[int] = field(default_factory=lambda: [0])  # 0: whole image in one run
    overlap: int | None = None  # None: the model's tile_context
    tile_batch: int = 1
    warmup: int = 2  # runs excluded: first runs allocate buffers and pick kernels
    runs: int = 10
    threads: int | None = None  # None: physical cores
    torch_checkpoint: str | None = None
    torch_device: str = "cpu"
    photo: str | None = None


def _session_calls(deb: Deblurrer, image: np.ndarray) -> tuple[list[np.ndarray], int]:
    """Tensors the runtime would feed for ``image`` (same shapes), and the pixels they hold."""
    x, fmt = deb.prepare(image)
    height, width, grid = deb.plan(image.shape)
    padded = pad_reflect(x, height, width)
    if grid is None:
        tensors = [deb.to_model([padded], fmt)]
    else:
        tile = padded[:grid.tile_h, :grid.tile_w]
        n = len(grid)
        sizes = [deb.tile_batch] * (n // deb.tile_batch) + ([n % deb.tile_batch] if n % deb.tile_batch else [])
        tensors = [deb.to_model([tile] * s, fmt) for s in sizes]
    return tensors, sum(int(np.prod(t.shape)) // 3 for t in tensors)


# The ONNX Runtime provider a PyTorch device is compared with.
TORCH_DEVICE_PROVIDER = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


class _TorchBaseline:
    """Same weights in PyTorch eager (FP32), same thread count; imported only when asked for."""

    def __init__(self, checkpoint: str, threads: int, device: str = "cpu") -> None:
        try:
            import torch
        except ImportError:
            raise InputError(f"--torch needs PyTorch: {install_hint('torch', 'deblur-export')}") from None
        from deblur.train.checkpoint import load_generator

        if device not in TORCH_DEVICE_PROVIDER:
            raise InputError(f"--torch-device {device!r}: use one of {', '.join(TORCH_DEVICE_PROVIDER)}")
        if device == "cuda" and not torch.cuda.is_available():
            raise InputError("--torch-device cuda: this PyTorch build sees no CUDA GPU "
                             f"(torch {torch.__version__}); install a CUDA build of torch or use --torch-device cpu")
        self.torch, self.device = torch, device
        self.provider = TORCH_DEVICE_PROVIDER[device]
        torch.set_num_threads(threads)
        if device == "cuda":
            # The timed shapes repeat, where a PyTorch user turns cuDNN's own algorithm search on;
            # it tunes during warm-up. ONNX Runtime searches as exhaustively only for tiled runs
            # (whole images of changing sizes would re-tune per size), so whole-image rows now
            # lean towards PyTorch, tiled rows are like for like.
            torch.backends.cudnn.benchmark = True
        loaded = load_generator(checkpoint)
        self.model, self.sha256 = loaded.model.to(device), loaded.sha256

    def runner(self, tensors: list[np.ndarray]) -> Callable[[], None]:
        inputs = [self.torch.from_numpy(t.astype(np.float32)) for t in tensors]

        def run() -> None:
            # Host array in, host array out, like session.run with NumPy inputs: the copies
            # to and from the GPU are part of the time (and .cpu() waits for the kernels).
            with self.torch.inference_mode():
                for t in inputs:
                    self.model(t.to(self.device)).cpu()
        return run


def _torch_comparable(deb: Deblurrer, torch_base: _TorchBaseline | None) -> bool:
    # Only the same weights on the same device make the ratio mean "ORT vs PyTorch"; a model
    # without our metadata cannot be checked and is compared (same_weights_as_torch: null).
    # A --uint8-io model keeps its checkpoint's sha256 but takes pixels, not the tensors the
    # PyTorch model takes: its speed is compared with the other models instead.
    if torch_base is None or deb.provider != torch_base.provider or deb.io_dtype == np.uint8:
        return False
    return deb.info.source_sha256 in (None, torch_base.sha256)


def _stats(seconds: list[float], image_mp: float, computed_mp: float, gflops_per_mp: float | None) -> dict[str, Any]:
    p50 = report.percentile(seconds, 50)
    return {
        "runs": len(seconds), "p50_ms": p50 * 1e3, "p95_ms": report.percentile(seconds, 95) * 1e3,
        "mean_ms": float(np.mean(seconds)) * 1e3, "fps": 1.0 / p50, "mp_per_s": image_mp / p50,
        "gflop_per_s": gflops_per_mp * computed_mp / p50 if gflops_per_mp else None,
    }


def run_latency(settings: LatencySettings) -> dict[str, Any]:
    """Measure every combination; returns the JSON payload (system, settings, rows)."""
    sizes = [parse_size(s) for s in settings.sizes]
    threads = settings.threads or report.physical_cores()
    torch_base = (_TorchBaseline(settings.torch_checkpoint, threads, settings.torch_device)
                  if settings.torch_checkpoint else None)
    debs = [Deblurrer(model, provider, tile=tile, overlap=settings.overlap, tile_batch=settings.tile_batch,
                      threads=threads)
            for model in settings.models for provider in settings.providers for tile in settings.tiles]
    if torch_base is not None and not any(_torch_comparable(d, torch_base) for d in debs):
        log.warning("--torch: no %s-provider model exported from %s among the models; baseline skipped",
                    torch_base.device.upper(), settings.torch_checkpoint)
    unchecked = [d.model_path.name for d in debs if _torch_comparable(d, torch_base) and d.info.source_sha256 is None]
    if unchecked:  # compared, but nothing says the ONNX file holds that checkpoint's network
        log.warning("--torch: %s carr%s no record of its checkpoint (deblur-export metadata): speedup_vs_torch "
                    "may compare different networks (same_weights_as_torch: null)", ", ".join(dict.fromkeys(unchecked)),
                    "ies" if len(set(unchecked)) == 1 else "y")
    rows: list[dict[str, Any]] = []
    for label, width, height in sizes:
        rows += _measure_size(debs, settings, label, width, height, torch_base)
        log.info("%s done", label)
    used = list(dict.fromkeys(d.provider for d in debs))
    # After the runs: CUDA libraries (cuDNN in particular) may be mapped only on first use.
    return {"benchmark": "latency", "system": report.system_info(", ".join(used), threads),
            "settings": asdict(settings), "reference": "first model/provider per tile (speedup_vs_ref)", "rows": rows}


def _measure_size(debs: list[Deblurrer], settings: LatencySettings, label: str, width: int, height: int,
                  torch_base: _TorchBaseline | None) -> list[dict[str, Any]]:
    # Every model, provider, tile and variant at this size in one interleaved loop, so their
    # ratios (FP16 vs FP32, CUDA vs CPU, ORT vs torch, tiled vs whole) share the machine's load.
    image = photo(width, height, settings.photo)
    variants: dict[tuple, Callable[[], Any]] = {}
    plans = []
    for i, deb in enumerate(debs):
        tensors, computed_px = _session_calls(deb, image)
        variants[(i, "deblurrer")] = lambda deb=deb: deb(image)
        variants[(i, "session.run")] = lambda s=deb.session, n=deb.input_name, ts=tensors: [s.run(None, {n: t}) for t in ts]
        torch_key = (deb.tile, tuple(t.shape for t in tensors)) if _torch_comparable(deb, torch_base) else None
        if torch_base is not None and torch_key is not None and ("torch", torch_key) not in variants:
            variants[("torch", torch_key)] = torch_base.runner(tensors)
        plans.append((deb, tensors, computed_px, torch_key))
    report.reset_peak_rss()
    times = time_interleaved(variants, warmup=settings.warmup, runs=settings.runs)  # type: ignore[arg-type]
    shared = {"size": label, "width": width, "height": height, "peak_rss_mb": report.peak_rss_mb(),
              "gpu_mem_mb": report.gpu_memory_mb()}
    rows: list[dict[str, Any]] = []
    torch_done: set = set()
    ref_p50: dict[tuple, float] = {}
    for i, (deb, tensors, computed_px, torch_key) in enumerate(plans):
        info = deb.info
        base = {"model": str(deb.model_path), "precision": info.precision, "io": info.io_dtype,
                "provider": deb.provider, **shared,
                "tile": deb.tile, "overlap": deb.overlap if deb.tile else None, "tile_batch": deb.tile_batch,
                "session_calls": len(tensors)}
        torch_s = times.get(("torch", torch_key))  # type: ignore[call-overload]
        torch_p50 = report.percentile(torch_s, 50) * 1e3 if torch_s else None
        stats = {v: _stats(times[(i, v)], width * height / 1e6, computed_px / 1e6, info.gflops_per_megapixel)
                 for v in ("deblurrer", "session.run")}
        for variant, s in stats.items():
            ref = ref_p50.setdefault((deb.tile, variant), s["p50_ms"])
            rows.append({**base, "variant": variant, **s,
                         "overhead_vs_session": s["p50_ms"] / stats["session.run"]["p50_ms"] if variant == "deblurrer" else None,
                         "speedup_vs_ref": ref / s["p50_ms"],
                         "speedup_vs_torch": torch_p50 / s["p50_ms"] if torch_p50 else None,
                         "same_weights_as_torch": (info.source_sha256 == torch_base.sha256  # type: ignore[union-attr]
                                                   if torch_p50 and info.source_sha256 else None)})
        if torch_s and torch_key not in torch_done:
            torch_done.add(torch_key)
            rows.append({**base, "model": str(settings.torch_checkpoint), "precision": "fp32", "io": "float32", "provider": f"torch ({torch_base.device.upper()} eager)",  # type: ignore[union-attr]
                         "variant": "torch", **_stats(torch_s, width * height / 1e6, computed_px / 1e6, info.gflops_per_megapixel),
                         "overhead_vs_session": None, "speedup_vs_ref": None, "speedup_vs_torch": None})
    return rows


COLUMNS = ["model", "precision", "io", "provider", "size", "tile", "variant", "p50_ms", "p95_ms", "fps", "mp_per_s",
           "gflop_per_s", "overhead_vs_session", "speedup_vs_torch", "speedup_vs_ref", "peak_rss_mb", "gpu_mem_mb"]


def short_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with model paths shortened to file names, for tables."""
    from pathlib import Path

    return [{**r, "model": Path(r["model"]).name, "provider": r["provider"].replace("ExecutionProvider", "")}
            for r in rows]

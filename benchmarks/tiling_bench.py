"""Tiled versus whole-image inference: fidelity, time and memory per tile size and overlap.

For a real photo at each size, the whole-image result is the reference. Per (tile, overlap):
PSNR of the tiled result against it (how visible seams/context loss are), time relative to
whole-image (interleaved in one process, so the ratio is fair on a busy machine), and the
peak resident memory of a fresh process that runs only that configuration — sessions and
arenas of other configurations would otherwise pollute the number.
"""

from __future__ import annotations

import itertools
import json
import logging
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deblur.runtime.deblurrer import DEFAULT_BLEND, Deblurrer
from deblur.runtime.errors import DeblurError, InputError
from deblur.runtime.image_io import read_image, write_image

from . import report
from .latency import parse_size, photo, time_interleaved
from .metrics import psnr

log = logging.getLogger(__name__)


@dataclass
class TilingSettings:
    model: str
    provider: str = "cpu"
    sizes: list[str] = field(default_factory=lambda: ["1080p", "4k"])
    # Real DeblurGAN context is ~84 px a side: below 512 most of each tile is context.
    tiles: list[int] = field(default_factory=lambda: [512, 768, 1024])
    overlaps: list[int | None] = field(default_factory=lambda: [None])  # None: the model's tile_context
    blend: int = DEFAULT_BLEND
    warmup: int = 1
    runs: int = 3
    threads: int | None = None
    photo: str | None = None
    memory: bool = True  # one subprocess per configuration for its peak RSS


def _child_peak_rss(image_path: Path, model: str, provider: str, tile: int, overlap: int | None, blend: int,
                    threads: int | None) -> dict[str, float]:
    config = {"image": str(image_path), "model": model, "provider": provider, "tile": tile, "overlap": overlap,
              "blend": blend, "threads": threads}
    proc = subprocess.run([sys.executable, "-m", "deblur.benchmarks.tiling_bench", json.dumps(config)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise DeblurError(f"memory probe (tile {tile or 'whole'}) failed in its subprocess: {last}; "
                          "out of memory? rerun with --no-memory or smaller sizes")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _child_main(config: dict[str, Any]) -> None:
    # Runs in a fresh interpreter: load, one call, report what the process needed.
    image = read_image(config["image"])
    deb = Deblurrer(config["model"], config["provider"], tile=config["tile"], overlap=config["overlap"],
                    blend=config["blend"], threads=config["threads"])
    ready = report.current_rss_mb()
    deb(image)
    peak = report.peak_rss_mb()
    print(json.dumps({"rss_before_mb": ready, "peak_rss_mb": peak, "peak_delta_mb": peak - ready,
                      "gpu_mem_mb": report.gpu_memory_mb()}))


def run_tiling(settings: TilingSettings) -> dict[str, Any]:
    """Measure every (size, tile, overlap); returns the JSON payload."""
    if not settings.tiles or any(t <= 0 for t in settings.tiles):
        raise InputError(f"--tile takes positive tile sides (whole-image is always measured), got {settings.tiles}")
    sizes = [parse_size(s) for s in settings.sizes]
    whole = Deblurrer(settings.model, settings.provider, tile=0, threads=settings.threads)
    tiled = {(t, o): Deblurrer(settings.model, settings.provider, tile=t, overlap=o, blend=settings.blend,
                               threads=settings.threads)
             for t, o in itertools.product(settings.tiles, settings.overlaps)}
    configs = {"whole": whole, **{f"{t}/{o}": d for (t, o), d in tiled.items()}}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="deblur-bench-tiling-") as tmp:
        for label, width, height in sizes:
            image = photo(width, height, settings.photo)
            image_path = write_image(Path(tmp) / f"{label}.png", image)
            # A tile that covers the image runs it whole, whatever the overlap: measured once.
            grids = {key: deb.plan(image.shape)[2] if deb.tile else None for key, deb in configs.items()}
            active, covering = {}, set()
            for key, deb in configs.items():
                if deb.tile and grids[key] is None:
                    if deb.tile in covering:
                        continue
                    covering.add(deb.tile)
                active[key] = deb
            # Memory first: the children then never share the machine with this process's
            # arenas grown by whole-image runs (gigabytes at 4K).
            memory = {key: _child_peak_rss(image_path, settings.model, settings.provider, d.tile,
                                            d.overlap if d.tile else None, settings.blend, settings.threads)
                      for key, d in active.items()} if settings.memory else {}
            outputs: dict[str, np.ndarray] = {}  # the last timed run's result: no extra pass for PSNR

            def run(key: str, deb: Deblurrer) -> None:
                outputs[key] = deb(image)

            times = time_interleaved({key: (lambda k=key, d=d: run(k, d)) for key, d in active.items()},
                                     warmup=settings.warmup, runs=settings.runs)
            reference, whole_ms = outputs["whole"], report.percentile(times["whole"], 50) * 1e3
            for key, deb in active.items():
                out, ms = outputs[key], report.percentile(times[key], 50) * 1e3
                grid = grids[key]  # None: the image ran whole, with no overlap or blend
                tiled = grid is not None
                rows.append({
                    "size": label, "width": width, "height": height, "tile": deb.tile,
                    "overlap": deb.overlap if tiled else None, "blend": settings.blend if tiled else None,
                    "tiles": len(grid) if grid is not None else 1,
                    "psnr_vs_whole_db": psnr(out, reference),
                    "max_abs_diff": int(np.abs(out.astype(np.int16) - reference).max()),
                    "p50_ms": ms, "p95_ms": report.percentile(times[key], 95) * 1e3, "time_vs_whole": ms / whole_ms,
                    "peak_rss_mb": None, "rss_before_mb": None, "peak_delta_mb": None, "gpu_mem_mb": None,
                    **memory.get(key, {}),
                })
                log.info("%s tile %s: %.1f ms", label, deb.tile or "whole", ms)
    return {"benchmark": "tiling", "system": report.system_info(whole.provider, settings.threads or report.physical_cores()),
            "settings": asdict(settings), "model": str(whole.model_path), "model_tile_context": whole.info.tile_context,
            "model_normalization": whole.info.normalization,
            "rows": rows}


COLUMNS = ["size", "tile", "overlap", "tiles", "psnr_vs_whole_db", "max_abs_diff", "p50_ms", "time_vs_whole",
           "peak_rss_mb", "peak_delta_mb"]


if __name__ == "__main__":
    _child_main(json.loads(sys.argv[1]))

"""Restoration quality on synthetic camera shake (or real GoPro pairs) against classical baselines.

Each sharp photo is blurred by the trainer's own degradation (``deblur.train.blur.degrade``)
with a generator seeded by ``(seed, crc32("folder/file"))``, so every run and every method sees
the same inputs, whatever other images are in the run. Methods: each ONNX model, the blurred input itself ("identity"), and Wiener and
Richardson-Lucy deconvolution given the *true* kernel (``benchmarks/baselines.py``, tuned on a
separate split). Metrics follow ``benchmarks/metrics.py``: RGB (or Y), data range 255, a
border of ``DEFAULT_CROP_BORDER`` px cropped. Real GoPro pairs have no known kernel, so the
non-blind baselines are skipped there.
"""

from __future__ import annotations

import itertools
import logging
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from deblur.runtime.deblurrer import Deblurrer
from deblur.runtime.errors import InputError
from deblur.runtime.image_io import IMAGE_SUFFIXES, as_bgr8, read_image
from deblur.train.blur import BlurConfig, degrade

from . import report
from .baselines import BASELINES
from .metrics import DEFAULT_CROP_BORDER, mean_psnr, measure

log = logging.getLogger(__name__)

CONDITIONS = {"noise_jpeg": BlurConfig(), "clean": BlurConfig(noise_probability=0.0, jpeg_probability=0.0)}


@dataclass
class QualitySettings:
    data: list[str]
    models: list[str] = field(default_factory=list)
    provider: str = "cpu"
    conditions: list[str] = field(default_factory=lambda: ["noise_jpeg"])
    seed: int = 0  # image "folder/file" is blurred with default_rng([seed, crc32("folder/file")])
    limit: int | None = None  # first N images (sorted) per folder
    max_side: int | None = None  # downscale larger images (INTER_AREA) before blurring
    crop_border: int = DEFAULT_CROP_BORDER
    on: str = "rgb"  # "rgb" or "y"
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    tile: int = 512
    threads: int | None = None
    self_ensemble: int = 1  # Deblurrer(self_ensemble=...) for the models
    sheet_images: int = 4  # rows of the contact sheet


@dataclass
class Sample:
    name: str
    sharp: np.ndarray  # (H, W, 3) uint8 BGR
    blurred: np.ndarray | None = None  # given for real pairs, else synthesised
    kernel: np.ndarray | None = None


def _shrink(image: np.ndarray, max_side: int | None) -> np.ndarray:
    if not max_side or max(image.shape[:2]) <= max_side:
        return image
    scale = max_side / max(image.shape[:2])
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def load_samples(folder: str | Path, *, limit: int | None, max_side: int | None) -> list[Sample]:
    """Sharp photos of a folder, or (blur, sharp) pairs if it has the GoPro ``*/blur`` + ``*/sharp`` layout."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of sharp images (or GoPro-layout pairs)")
    blur_dirs = sorted(d for d in folder.rglob("blur") if d.is_dir() and (d.parent / "sharp").is_dir())
    samples: list[Sample] = []
    if blur_dirs:
        for blur_dir in blur_dirs:
            sharp_dir = blur_dir.parent / "sharp"
            alone = sorted({p.name for p in _images(blur_dir)} ^ {p.name for p in _images(sharp_dir)})
            if alone:  # a pair scores pixel by pixel: a half pair cannot be scored
                log.warning("%s: %d image%s without a partner in blur/ or sharp/ left out: %s", blur_dir.parent,
                            len(alone), "" if len(alone) == 1 else "s", ", ".join(alone[:5]))
            for path in _images(blur_dir):
                sharp_path = sharp_dir / path.name
                if sharp_path.exists():
                    blurred, sharp = as_bgr8(read_image(path)), as_bgr8(read_image(sharp_path))
                    if blurred.shape != sharp.shape:  # a pair scores pixel by pixel
                        raise InputError(f"{path}: {blurred.shape[1]}x{blurred.shape[0]}, its sharp partner "
                                         f"{sharp_path} {sharp.shape[1]}x{sharp.shape[0]}: pairs must match; "
                                         "fix or remove the pair")
                    name = f"{folder.resolve().name}/{path.relative_to(folder)}"  # as photos: -d folders apart
                    samples.append(Sample(name, _shrink(sharp, max_side), _shrink(blurred, max_side)))
                if limit and len(samples) >= limit:
                    return samples
    else:
        paths = _images(folder)[:limit] if limit else _images(folder)
        samples = [Sample(f"{folder.resolve().name}/{p.name}", _shrink(as_bgr8(read_image(p)), max_side)) for p in paths]
    if not samples:
        raise InputError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) or GoPro blur/sharp pairs found")
    return samples


def image_rng(seed: int, name: str) -> np.random.Generator:
    """The generator that blurs image ``name`` (``folder/file``): fixed by the name, so an
    image gets the same blur whatever else is in the run (``--limit``, other folders)."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _methods(settings: QualitySettings) -> dict[str, Callable[[np.ndarray, np.ndarray | None], np.ndarray]]:
    unknown = [b for b in settings.baselines if b not in BASELINES]
    if unknown:
        raise InputError(f"unknown baseline(s) {unknown}; choose from {', '.join(BASELINES)}")
    methods: dict[str, Callable] = {b: BASELINES[b] for b in settings.baselines}
    # A model's label never takes a baseline's or a contact-sheet column's name (a model file
    # called identity.onnx was reported, and drawn, as the blurred input).
    taken = {*BASELINES, "blurred", "sharp"}
    for model in settings.models:
        deb = Deblurrer(model, settings.provider, tile=settings.tile, threads=settings.threads,
                        self_ensemble=settings.self_ensemble)
        stem = Path(model).stem
        label = next(name for name in itertools.chain((stem, str(model)), (f"{stem} ({n})" for n in itertools.count(2)))
                     if name not in taken)
        taken.add(label)
        methods[label] = lambda blurred, kernel, deb=deb: deb(blurred)
    return methods


def run_quality(settings: QualitySettings) -> tuple[dict[str, Any], np.ndarray]:
    """Score every method on every image; returns the JSON payload and the contact sheet image."""
    bad = [c for c in settings.conditions if c not in CONDITIONS]
    if bad or settings.on not in ("rgb", "y"):
        raise InputError(f"conditions must be from {list(CONDITIONS)} (got {settings.conditions}), on rgb|y (got {settings.on})")
    samples = [s for folder in settings.data for s in load_samples(folder, limit=settings.limit, max_side=settings.max_side)]
    too_small = [s.name for s in samples if min(s.sharp.shape[:2]) <= 2 * settings.crop_border + 10]
    if too_small:
        raise InputError(f"images too small for a {settings.crop_border} px crop border: {', '.join(too_small[:3])}")
    methods = _methods(settings)
    per_image: list[dict[str, Any]] = []
    sheet_rows: list[tuple[str, dict[str, np.ndarray]]] = []
    warm: set[str] = set()
    for condition in settings.conditions:
        for sample in samples:
            blurred, kernel = sample.blurred, sample.kernel
            if blurred is None:
                blurred, kernel = degrade(sample.sharp, image_rng(settings.seed, sample.name), CONDITIONS[condition])
            elif condition != settings.conditions[0]:
                continue  # a real pair is what it is: scored once, under "real", whatever the conditions
            label = condition if sample.blurred is None else "real"
            outputs = {}
            for name, fn in methods.items():
                if kernel is None and name in ("wiener", "richardson_lucy"):
                    continue  # real pairs: no true kernel to give them
                if name not in warm and name != "identity":
                    # One untimed call first (a session's first run, FFT plans: Wiener's first
                    # image took 94 ms, the next 6-8 ms), as the latency benchmark does.
                    fn(blurred, kernel)
                    warm.add(name)
                start = time.perf_counter()
                # identity needs no kernel; a real pair has none to check it against
                outputs[name] = blurred.copy() if kernel is None and name == "identity" else fn(blurred, kernel)
                seconds = time.perf_counter() - start
                m = measure(outputs[name], sample.sharp, crop_border=settings.crop_border, on=settings.on)  # type: ignore[arg-type]
                per_image.append({"condition": label, "image": sample.name, "method": name, "psnr": m.psnr,
                                  "ssim": m.ssim, "seconds": seconds, "width": blurred.shape[1], "height": blurred.shape[0]})
            if condition == settings.conditions[0] and len(sheet_rows) < settings.sheet_images:
                sheet_rows.append((sample.name, {"blurred": blurred, **{k: v for k, v in outputs.items() if k != "identity"},
                                                 "sharp": sample.sharp}))
            log.info("%s %s done", label, sample.name)
    if not per_image:
        raise InputError("nothing to measure: real blur/sharp pairs have no true kernel for wiener or "
                         "richardson_lucy; add --baseline identity or a model (-m)")
    summary = summarise(per_image)
    payload = {"benchmark": "quality", "system": report.system_info(_provider_name(settings), settings.threads or report.physical_cores()),
               "settings": asdict(settings), "metric": {"on": settings.on, "data_range": 255, "crop_border": settings.crop_border,
                                                        "psnr": "skimage peak_signal_noise_ratio; mean caps each image at 100 dB",
                                                        "ssim": "skimage structural_similarity, gaussian sigma 1.5, population covariance, mean over channels"},
               "images": len(samples), "summary": summary, "per_image": per_image}
    columns = ["blurred", *(name for name in methods if name != "identity"), "sharp"]
    return payload, contact_sheet(sheet_rows, per_image, settings.conditions[0], columns)


def _provider_name(settings: QualitySettings) -> str | None:
    from deblur.runtime.providers import resolve_provider

    return resolve_provider(settings.provider).name if settings.models else None


def summarise(per_image: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean PSNR/SSIM/time per (condition, method), in first-seen order."""
    keys = list(dict.fromkeys((r["condition"], r["method"]) for r in per_image))
    rows = []
    for condition, method in keys:
        sel = [r for r in per_image if r["condition"] == condition and r["method"] == method]
        rows.append({"condition": condition, "method": method, "images": len(sel),
                     "psnr": mean_psnr(r["psnr"] for r in sel), "ssim": float(np.mean([r["ssim"] for r in sel])),
                     "seconds_per_image": float(np.mean([r["seconds"] for r in sel]))})
    return rows


CELL = 256  # px, side of one contact-sheet cell


def _cell(image: np.ndarray, label: str) -> np.ndarray:
    # The whole image fitted into a square cell, and under it a nearest-neighbour zoom of the
    # centre (a quarter of the short side, filling the cell), where blur and ringing are
    # easiest to judge.
    h, w = image.shape[:2]
    scale = CELL / max(h, w)
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    top = np.full((CELL, CELL, 3), 40, np.uint8)
    top[:small.shape[0], :small.shape[1]] = small
    side = max(8, min(h, w) // 4)
    y0, x0 = (h - side) // 2, (w - side) // 2
    zoom = cv2.resize(image[y0:y0 + side, x0:x0 + side], (CELL, CELL), interpolation=cv2.INTER_NEAREST)
    bar = np.full((22, CELL, 3), 255, np.uint8)
    cv2.putText(bar, label[:40], (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([bar, top, zoom])


def contact_sheet(rows: list[tuple[str, dict[str, np.ndarray]]], per_image: list[dict[str, Any]], condition: str,
                  columns: list[str] | None = None) -> np.ndarray:
    """blurred | each method | sharp per image (with centre zooms), labelled with PSNR/SSIM; a
    method that did not run on an image (no kernel for a real pair) keeps its column, empty."""
    scores = {(r["image"], r["method"]): r for r in per_image if r["condition"] in (condition, "real")}
    lines = []
    for name, images in rows:
        cells = []
        for method in columns or list(images):
            image = images.get(method)
            if image is None:
                blank = np.full((CELL, CELL, 3), 40, np.uint8)
                cells.append(_cell(blank, f"{method}: n/a (no kernel)"))
                continue
            score = scores.get((name, "identity" if method == "blurred" else method))
            label = f"{method} {score['psnr']:.2f}dB {score['ssim']:.3f}" if score else f"{method} ({name})"
            cells.append(_cell(image, label))
        lines.append(np.hstack([np.pad(c, ((0, 4), (0, 4), (0, 0)), constant_values=255) for c in cells]))
    if not lines:
        return np.full((CELL, CELL, 3), 255, np.uint8)
    width = max(line.shape[1] for line in lines)
    return np.vstack([np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0)), constant_values=255) for line in lines])


COLUMNS = ["condition", "method", "images", "psnr", "ssim", "seconds_per_image"]

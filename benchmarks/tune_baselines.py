"""Tune the deconvolution baselines once, on a split that is not the validation split.

    python -m deblur.benchmarks.tune_baselines --data /work/shared/data/sharp/CBSD68

Takes the first ``--images`` photos (sorted by name) of ``--data``, centre-crops them to
``--crop`` pixels, blurs each with ``degrade(sharp, np.random.default_rng(seed + i), config)``
under two conditions (the default config with noise and JPEG, and the same with both off: the
generator draws the same kernel for a seed either way), then scores a grid of Wiener and
Richardson-Lucy settings by PSNR/SSIM as ``deblur.benchmarks.metrics`` defines them. The
setting with the best mean PSNR pooled over both conditions is the one to put in
``baselines.py``; the grid goes to ``baseline_tuning.json`` and a table to ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np

from deblur.benchmarks import baselines as B
from deblur.benchmarks.metrics import DEFAULT_CROP_BORDER, measure, mean_psnr
from deblur.train.blur import BlurConfig, degrade

CONDITIONS = {
    "noise_jpeg": BlurConfig(),
    "clean": BlurConfig(noise_probability=0.0, jpeg_probability=0.0),
}
WIENER_BALANCES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
WIENER_REGS = ("identity", "laplacian")
WIENER_BOUNDARIES = ("none", "reflect", "taper")
# Capped at 200: each iteration costs two FFT convolutions, and at 1080p the benchmark would
# spend minutes per image beyond that. The unpadded runs are only the boundary ablation.
RL_ITERS = {"reflect": (5, 10, 20, 30, 50, 100, 200), "none": (10, 30, 100)}


def _settings() -> list[tuple[str, dict]]:
    grid: list[tuple[str, dict]] = [("identity", {})]
    for reg in WIENER_REGS:
        for boundary in WIENER_BOUNDARIES:
            for balance in WIENER_BALANCES:
                grid.append(("wiener", {"balance": balance, "reg": reg, "boundary": boundary}))
    for boundary, iters in RL_ITERS.items():
        for num_iter in iters:
            grid.append(("richardson_lucy", {"num_iter": num_iter, "boundary": boundary}))
    return grid


def _centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    if min(h, w) < size:
        raise ValueError(f"image {h}x{w} is smaller than the {size} px crop")
    y, x = (h - size) // 2, (w - size) // 2
    return image[y : y + size, x : x + size]


def _score_image(job: tuple[str, int, int]) -> dict[str, list[tuple[float, float]]]:
    # One image, both conditions, the whole grid: a unit of work for the process pool.
    path, crop, seed = job
    sharp = cv2.imread(path, cv2.IMREAD_COLOR)
    if sharp is None:
        raise OSError(f"cannot read {path}")
    sharp = _centre_crop(sharp, crop)
    scores: dict[str, list[tuple[float, float]]] = {}
    for condition, config in CONDITIONS.items():
        blurred, kernel = degrade(sharp, np.random.default_rng(seed), config)
        row = []
        for name, params in _settings():
            restored = B.BASELINES[name](blurred, kernel, **params)
            m = measure(restored, sharp, crop_border=DEFAULT_CROP_BORDER)
            row.append((m.psnr, m.ssim))
        scores[condition] = row
    return scores


def tune_baselines(
    data: str | Path, *, images: int = 20, crop: int = 256, seed: int = 0, workers: int | None = None
) -> dict:
    """Score the grid on ``images`` photos of ``data``; returns the JSON-ready results."""
    files = sorted(p for p in Path(data).iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp"})
    files = files[:images]
    if len(files) < images:
        raise ValueError(f"{data} has only {len(files)} images, {images} requested")
    seeds = [seed + i for i in range(len(files))]
    workers = workers or min(2, os.cpu_count() or 1)
    start = time.perf_counter()
    jobs = [(str(p), crop, s) for p, s in zip(files, seeds)]
    # Each worker runs single-threaded FFTs; processes rather than threads as RL is numpy-heavy.
    with ProcessPoolExecutor(max_workers=workers) as pool:
        per_image = list(pool.map(_score_image, jobs))
    elapsed = time.perf_counter() - start

    grid = []
    for index, (name, params) in enumerate(_settings()):
        entry: dict = {"method": name, **params, "psnr": {}, "ssim": {}}
        for condition in CONDITIONS:
            values = [img[condition][index] for img in per_image]
            entry["psnr"][condition] = round(mean_psnr(v[0] for v in values), 3)
            entry["ssim"][condition] = round(float(np.mean([v[1] for v in values])), 4)
        entry["psnr"]["pooled"] = round(float(np.mean(list(entry["psnr"].values()))), 3)
        grid.append(entry)

    def best(method: str, key: str = "pooled") -> dict:
        return max((g for g in grid if g["method"] == method), key=lambda g: g["psnr"][key])

    chosen = {m: best(m) for m in ("identity", "wiener", "richardson_lucy")}
    per_condition = {c: {m: best(m, c) for m in ("wiener", "richardson_lucy")} for c in CONDITIONS}
    return {
        "convention": {
            "metric": "PSNR/SSIM on RGB, data_range=255, uint8 inputs, SSIM Wang et al. 2004 "
            "(gaussian sigma 1.5, population covariance), mean over images",
            "crop_border": DEFAULT_CROP_BORDER,
            "selection": "max mean PSNR pooled over both conditions",
        },
        "split": {
            "data": str(data),
            "files": [p.name for p in files],
            "crop": f"centre {crop}x{crop}",
            "seeds": seeds,
            "rng": "np.random.default_rng(seed) per image, same seed in both conditions",
        },
        "conditions": {c: asdict(cfg) for c, cfg in CONDITIONS.items()},
        "chosen": chosen,
        "best_per_condition": per_condition,
        "grid": grid,
        "run": {
            "seconds": round(elapsed, 1),
            "workers": workers,
            "machine": platform.processor() or platform.machine(),
        },
    }


def _params(entry: dict) -> str:
    keys = [k for k in entry if k not in ("method", "psnr", "ssim")]
    return ", ".join(f"{k}={entry[k]}" for k in keys) or "-"


def grid_of(result: dict, key: str) -> list[dict]:
    """Grid entries that have parameter ``key`` (the deconvolutions, not identity)."""
    return [g for g in result["grid"] if key in g]


def to_markdown(result: dict) -> str:
    """A short table of the chosen settings and the boundary ablation at those settings."""
    conds = list(result["conditions"])
    split = result["split"]
    lines = [
        "# Deconvolution baseline tuning",
        "",
        f"Split: first {len(split['files'])} images of `{split['data']}` (sorted), {split['crop']}; "
        f"seeds {split['seeds'][0]}..{split['seeds'][-1]} ({split['rng']}). "
        "Validation (Set5 + Set14) was not used.",
        f"Metric: {result['convention']['metric']}, border {result['convention']['crop_border']} px cropped. "
        f"Selection: {result['convention']['selection']}.",
        f"Regenerate: `python -m deblur.benchmarks.tune_baselines --data {split['data']}` "
        f"({result['run']['seconds']} s on {result['run']['workers']} workers).",
        "",
    ]
    header = [
        "| method | parameters | " + " | ".join(f"PSNR {c}" for c in conds)
        + " | " + " | ".join(f"SSIM {c}" for c in conds) + " |",
        "|---|---|" + "---|" * (2 * len(conds)),
    ]
    lines += header

    def row(entry: dict, label: str) -> str:
        return (f"| {label} | {_params(entry)} | " + " | ".join(f"{entry['psnr'][c]:.2f}" for c in conds)
                + " | " + " | ".join(f"{entry['ssim'][c]:.4f}" for c in conds) + " |")

    for name, entry in result["chosen"].items():
        lines.append(row(entry, f"**{name}**" + (" (chosen)" if name != "identity" else " (blurred input)")))
    lines += ["", "Ablations around the chosen settings (same split):", "", *header]
    chosen_w, chosen_rl = result["chosen"]["wiener"], result["chosen"]["richardson_lucy"]
    for g in result["grid"]:
        if g["method"] == "wiener" and g["balance"] == chosen_w["balance"] and g is not chosen_w:
            lines.append(row(g, "wiener"))
        elif g["method"] == "wiener" and (g["reg"], g["boundary"]) == (chosen_w["reg"], chosen_w["boundary"]):
            if g is not chosen_w:
                lines.append(row(g, "wiener"))
        elif g["method"] == "richardson_lucy" and g is not chosen_rl:
            lines.append(row(g, "richardson_lucy"))
    lines += ["", "Boundary handling, each variant at its own best parameter (pooled PSNR):", ""]
    # Padding interacts with the parameter (ringing from the border needs more damping), so
    # each variant is compared at its own optimum rather than at the chosen one.
    def variant(g: dict) -> tuple:
        return (g["method"], g.get("reg", ""), g["boundary"])

    padded = grid_of(result, "boundary")
    for key in sorted({variant(g) for g in padded}):
        top = max((g for g in padded if variant(g) == key), key=lambda g: g["psnr"]["pooled"])
        lines.append(f"- {key[0]} {_params(top)}: {top['psnr']['pooled']:.2f} dB")
    lines += ["", "Best per condition (if tuned on one condition alone):", ""]
    for c, bests in result["best_per_condition"].items():
        picks = (f"{m} {_params(e)} -> {e['psnr'][c]:.2f} dB" for m, e in bests.items())
        lines.append(f"- {c}: " + "; ".join(picks))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder of sharp photos (tuning split, not validation)")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    result = tune_baselines(
        args.data, images=args.images, crop=args.crop, seed=args.seed, workers=args.workers
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "baseline_tuning.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "baseline_tuning.md").write_text(to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()

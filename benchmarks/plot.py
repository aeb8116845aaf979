"""Latency-vs-resolution chart drawn with OpenCV, so the benchmarks need no plotting library."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

_COLOURS = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140),
            (194, 119, 227), (127, 127, 127)]  # BGR, the usual categorical palette
W, H, LEFT, RIGHT, TOP, BOTTOM = 900, 560, 80, 260, 40, 60


def _log_ticks(low: float, high: float) -> list[float]:
    ticks = []
    for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
        ticks += [m * 10 ** e for m in (1, 2, 5) if low <= m * 10 ** e <= high]
    return ticks or [low, high]


def latency_plot(rows: list[dict[str, Any]], variants: tuple[str, ...] = ("deblurrer", "torch")) -> np.ndarray:
    """p50 latency (ms, log) against megapixels (log), one line per model/provider/tile/variant."""
    series: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if r["variant"] not in variants:
            continue
        key = f"{Path(r['model']).stem} {r['provider'].replace('ExecutionProvider', '')} " \
              f"{'tile ' + str(r['tile']) if r['tile'] else 'whole'} {r['variant']}"
        series.setdefault(key, []).append((r["width"] * r["height"] / 1e6, r["p50_ms"]))
    canvas = np.full((H, W, 3), 255, np.uint8)
    points = [p for s in series.values() for p in s]
    if not points:
        return canvas
    x_lo, x_hi = min(p[0] for p in points) / 1.3, max(p[0] for p in points) * 1.3
    y_lo, y_hi = min(p[1] for p in points) / 1.5, max(p[1] for p in points) * 1.5

    def to_px(mp: float, ms: float) -> tuple[int, int]:
        fx = (math.log(mp) - math.log(x_lo)) / (math.log(x_hi) - math.log(x_lo))
        fy = (math.log(ms) - math.log(y_lo)) / (math.log(y_hi) - math.log(y_lo))
        return int(LEFT + fx * (W - LEFT - RIGHT)), int(H - BOTTOM - fy * (H - TOP - BOTTOM))

    font, grey = cv2.FONT_HERSHEY_SIMPLEX, (200, 200, 200)
    for mp in _log_ticks(x_lo, x_hi):
        x, _ = to_px(mp, y_lo)
        cv2.line(canvas, (x, TOP), (x, H - BOTTOM), grey, 1)
        cv2.putText(canvas, f"{mp:g}", (x - 10, H - BOTTOM + 18), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for ms in _log_ticks(y_lo, y_hi):
        _, y = to_px(x_lo, ms)
        cv2.line(canvas, (LEFT, y), (W - RIGHT, y), grey, 1)
        cv2.putText(canvas, f"{ms:g}", (8, y + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.rectangle(canvas, (LEFT, TOP), (W - RIGHT, H - BOTTOM), (0, 0, 0), 1)
    cv2.putText(canvas, "megapixels (log)", (LEFT + 200, H - 15), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, "p50 latency, ms (log)", (LEFT, TOP - 12), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for i, (key, pts) in enumerate(series.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        pts = sorted(pts)
        pixels = [to_px(mp, ms) for mp, ms in pts]
        for a, b in zip(pixels, pixels[1:]):
            cv2.line(canvas, a, b, colour, 2, cv2.LINE_AA)
        for p in pixels:
            cv2.circle(canvas, p, 4, colour, -1, cv2.LINE_AA)
        y = TOP + 10 + 18 * i
        cv2.line(canvas, (W - RIGHT + 10, y), (W - RIGHT + 30, y), colour, 2)
        cv2.putText(canvas, key[:34], (W - RIGHT + 35, y + 4), font, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas

"""Pure tile arithmetic: padding, tile placement and blending weights. No state, no I/O.

Geometry along one axis (the same on the other)::

    |<-------------- tile (fixed shape fed to the model) -------------->|
    |<- context ->|<- ramp ->|<-------- kept, weight 1 -------->|<- ramp ->|<- context ->|

Each tile reads ``context`` pixels beyond the part of the output it contributes; those
output pixels are discarded because the model saw a truncated neighbourhood there. Kept
regions of neighbouring tiles overlap by at least ``blend`` pixels and are mixed with a
raised-cosine ramp, so the weights of every pixel sum to 1. Tiles touching the image border
keep everything up to the border: there the whole-image run sees the same border.
Edge tiles are shifted inward rather than shrunk, so every tile has the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def padded_size(length: int, multiple: int, minimum: int = 1) -> int:
    """Smallest size >= max(length, minimum) that is a multiple of ``multiple``."""
    length = max(length, minimum)
    return -(-length // multiple) * multiple


def pad_reflect(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad an (H, W, C) array at the bottom/right to (height, width) by mirroring.

    ``symmetric`` (edge pixel repeated) rather than ``reflect`` because it is defined for
    1-pixel images too and for pads larger than the image (numpy mirrors repeatedly).
    """
    pad_h, pad_w = height - image.shape[0], width - image.shape[1]
    if pad_h < 0 or pad_w < 0:
        raise ValueError(f"cannot pad {image.shape[:2]} down to {(height, width)}")
    if pad_h == 0 and pad_w == 0:
        return image
    return np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="symmetric")


def tile_stride(tile: int, context: int, blend: int, multiple: int = 1) -> int:
    """New output pixels per tile along one axis: what is left of the tile after the context on
    both sides and the cross-fade, rounded down to ``multiple``; below 1 the tile is too small."""
    return (tile - 2 * context - blend) // multiple * multiple


def smallest_sensible_tile(context: int, blend: int, multiple: int = 1) -> int:
    """The smallest tile whose stride is at least half of it, i.e. that computes each output
    pixel under 4 times (at the bare minimum, stride ``multiple``, hundreds of times)."""
    tile = -(-2 * (2 * context + blend) // multiple) * multiple
    while tile_stride(tile, context, blend, multiple) * 2 < tile:
        tile += multiple
    return tile


def tile_starts(length: int, tile: int, context: int, blend: int, multiple: int = 1) -> list[int]:
    """Start offsets of fixed-size tiles covering ``[0, length)``; the last one ends at ``length``.

    The stride is rounded down to ``multiple`` so every start stays aligned (``length`` and
    ``tile`` are multiples already, hence so is the last, shifted-inward start).
    """
    if tile >= length:
        return [0]
    stride = tile_stride(tile, context, blend, multiple)
    if stride < 1:
        raise ValueError(f"tile {tile} is too small for context {context} and blend {blend}: "
                         f"needs tile >= 2*context + blend + {multiple} = {2 * context + blend + multiple}")
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def _ramp(n: int) -> np.ndarray:
    # Raised cosine sampled at pixel centres: strictly positive, smooth, symmetric.
    return (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)


def axis_weights(starts: list[int], length: int, tile: int, context: int, blend: int) -> list[np.ndarray]:
    """Per-tile 1-D weights (unnormalised) over each tile's span along one axis."""
    weights = []
    for i, start in enumerate(starts):
        w = np.ones(min(tile, length), np.float32)
        if i > 0:  # interior left edge: drop the context, ramp up
            w[:context] = 0.0
            w[context:context + blend] = _ramp(blend)
        if i < len(starts) - 1:  # interior right edge
            end = len(w) - context
            w[end:] = 0.0
            w[end - blend:end] = np.minimum(w[end - blend:end], _ramp(blend)[::-1])
        weights.append(w)
    return weights


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles go on a padded image of ``height x width`` and how they blend."""

    height: int
    width: int
    tile_h: int
    tile_w: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]
    weights_y: tuple[np.ndarray, ...]  # per tile row, normalised so they sum to 1 per pixel
    weights_x: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)

    def positions(self) -> list[tuple[int, int]]:
        return [(y, x) for y in self.ys for x in self.xs]

    def weight(self, y: int, x: int) -> np.ndarray:
        """Blend weight (tile_h, tile_w, 1) of the tile at (y, x); all tiles' weights sum to 1."""
        wy = self.weights_y[self.ys.index(y)]
        wx = self.weights_x[self.xs.index(x)]
        return (wy[:, None] * wx[None, :])[:, :, None]


def _normalised(weights: list[np.ndarray], starts: list[int], length: int) -> tuple[np.ndarray, ...]:
    # Normalising per axis is enough: 2-D weights are outer products, and the sum of outer
    # products over a grid is the product of the per-axis sums.
    norm = np.zeros(length, np.float32)
    for w, s in zip(weights, starts):
        norm[s:s + len(w)] += w
    return tuple(w / norm[s:s + len(w)] for w, s in zip(weights, starts))


def make_grid(height: int, width: int, tile: int, context: int, blend: int, multiple: int = 1) -> TileGrid:
    """Tile grid for a padded (multiple-aligned) image. ``tile`` is rounded up to ``multiple``."""
    tile = padded_size(tile, multiple)
    tile_h, tile_w = min(tile, height), min(tile, width)
    ys = tile_starts(height, tile_h, context, blend, multiple)
    xs = tile_starts(width, tile_w, context, blend, multiple)
    wy = _normalised(axis_weights(ys, height, tile_h, context, blend), ys, height)
    wx = _normalised(axis_weights(xs, width, tile_w, context, blend), xs, width)
    return TileGrid(height, width, tile_h, tile_w, tuple(ys), tuple(xs), wy, wx)

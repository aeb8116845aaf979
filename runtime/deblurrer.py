"""``Deblurrer``: one object that owns the ONNX session and the image contract.

Stages, each a pure function of its arguments (nothing is passed through ``self``, so one
instance is safe to call from many threads; ONNX Runtime's ``run`` is thread-safe)::

    image --prepare--> (H, W, 3) pixels, caller's dtype --plan + pad_reflect-->
          --process (whole) | tile_bands, each model call as to_model -> session -> from_model-->
          float32 BGR rows in the model's range (uint8 BGR pixels from a --uint8-io model)
          --post_process (whole image, or band by band)--> image of the input's shape and dtype

On a GPU the model is fast and these CPU-side conversions are most of the time (measured on
an H200 at 1080p: 14 ms in the session, 64 ms through this class before they were fused, 43
ms after), so uint8 images, the common case, cross each way in one pass over the pixels; a
model exported with ``--uint8-io`` takes and gives them as they are and converts in the graph.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np

from .errors import InputError, ModelError, ProviderError, first_line
from .image_io import equal_channels, native_order
from .model_info import ModelInfo
from .providers import ALIASES, GPU_PROVIDERS, create_session, resolve_provider
from .tiling import TileGrid, make_grid, pad_reflect, padded_size, smallest_sensible_tile, tile_stride

log = logging.getLogger(__name__)

# tile=None ("auto"): whole images up to 1080p's pixel count, 1024-px tiles above. Measured
# with the shipped InstanceNorm model (benchmarks/results/cpu/tiling-default.md): tiles cost
# 1.5-2.9x the time of one whole-image run and differ from it by 38-46 dB PSNR (edges a little
# stronger or weaker per tile, no seams), while a 4K image drops from 6.2 GB to 1.5 GB peak
# (1080p whole: 1.7 GB): tiling is for bounding memory.
AUTO_WHOLE_PIXELS = 1920 * 1080
AUTO_TILE = 1024
DEFAULT_BLEND = 32  # px of cosine ramp between neighbouring tiles' kept regions
MIN_SIDE = 16  # px; smaller images are mirror-padded up so every conv has room to reflect
# How ORT's CUDA allocator and cuDNN word an allocation failure.
_OOM_PATTERNS = ("out of memory", "failed to allocate", "cudaerrormemoryallocation", "bfcarena")


def default_model_path(provider: str = "cpu") -> Path | None:
    """The model shipped inside the package for ``provider`` (``cpu``, ``cuda``, ... or an ONNX
    Runtime provider name), if this build ships one.

    The same weights twice: ``default.onnx`` computes in FP32 with float I/O (exact for 16-bit
    images; FP16 is no faster on CPUs); on CUDA ``default_gpu.onnx``, FP16 with uint8 pixels in
    and out, converted in the graph, because there the CPU-side conversions were most of the
    time (H200, 720p: 6.6 ms end to end instead of 31 ms; 1080p 15 vs 52 ms). ``Deblurrer``
    still sends 16-bit and float images through ``default.onnx``, which keeps their depth.
    """
    if not isinstance(provider, str):
        raise ProviderError(f"provider must be a name such as 'cpu' or 'cuda', got {provider!r}")
    name = ALIASES.get(provider.strip().lower(), provider)
    models = resources.files("deblur.runtime") / "models"
    # TensorRT is not timed with it (and older TensorRTs leave uint8 nodes to the CPU).
    for file in ("default_gpu.onnx", "default.onnx") if name == "CUDAExecutionProvider" else ("default.onnx",):
        path = Path(str(models / file))
        if path.is_file():
            return path
    return None


# (quarter turns, then flipped left-right?) of each input, per self-ensemble size: 2 and 4
# keep the input's shape (one cuDNN tuning per tile shape); 8 is the whole dihedral group.
SELF_ENSEMBLE: dict[int, tuple[tuple[int, bool], ...]] = {
    1: ((0, False),),
    2: ((0, False), (0, True)),
    4: ((0, False), (0, True), (2, False), (2, True)),
    8: tuple((turns, flip) for flip in (False, True) for turns in range(4)),
}


class _DeviceOutOfMemory(Exception):
    """A model call could not allocate GPU memory: the image is retried with smaller tiles."""


@dataclass(frozen=True)
class _Format:
    """How to turn the model's output back into what the caller gave us."""

    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float  # pixel value that maps to the top of the model's range
    alpha: np.ndarray | None
    grey: bool = False  # grey pixels (HxW, or colour channels all equal): the result is grey too


class Deblurrer:
    """Deblur images with an exported ONNX model on CUDA or CPU.

    >>> deblur = Deblurrer("model.onnx", provider="auto")
    >>> sharp = deblur(cv2.imread("blurry.jpg"))   # HxWx3 uint8 BGR in, same out

    Without ``model``, the shipped one (:func:`default_model_path`): on CUDA its FP16 twin
    with uint8 I/O for 8-bit images, the FP32 one for deeper images and on other providers.
    Inputs as OpenCV gives them: HxWx3 BGR, HxW grey (returned grey; so is the content of a
    colour image whose channels are all equal), HxWx4 BGRA (alpha
    passed through untouched); uint8, uint16 (full precision kept, except through a model
    exported with ``--uint8-io``, which sees 8 bits) or float in [0, 1].
    ``tile`` is the model input side in pixels (0: the whole image at once; None: whole up to
    ``max_whole_pixels``, ``AUTO_TILE`` tiles above, bounding memory); each tile reads
    ``overlap`` pixels of context beyond the part it contributes (default: half the model's
    receptive field, from its metadata) and neighbouring tiles are cross-faded over
    ``blend`` pixels. ``tile_batch`` tiles go through the model per call.
    ``self_ensemble`` (1, 2, 4 or 8) averages the model's results on that many flipped and
    rotated copies of each input, mapped back (EDSR's "+" models): +0.16 to +0.25 dB for 2x to
    8x the time (``SELF_ENSEMBLE`` lists the transforms; README has the measurements).
    """

    def __init__(self, model: str | os.PathLike | None = None, provider: str = "auto", *,
                 tile: int | None = None, overlap: int | None = None, blend: int = DEFAULT_BLEND,
                 tile_batch: int = 1, max_whole_pixels: int = AUTO_WHOLE_PIXELS, device_id: int = 0,
                 threads: int | None = None, self_ensemble: int = 1) -> None:
        numbers = (("tile", tile, 0), ("overlap", overlap, 0), ("blend", blend, 0), ("tile_batch", tile_batch, 1),
                   ("threads", threads, 1), ("max_whole_pixels", max_whole_pixels, 1), ("device_id", device_id, 0))
        for name, value, _ in numbers:  # 64.5 or "256" would fail later as a raw TypeError
            if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool)):
                raise InputError(f"{name} must be an integer, got {value!r}")
        bad = [f"{name} {value}" for name, value, low in numbers if value is not None and value < low]
        if bad:
            raise InputError(f"{', '.join(bad)}: tile, overlap, blend and device_id must be >= 0, tile_batch, "
                             "threads and max_whole_pixels >= 1")
        if self_ensemble not in SELF_ENSEMBLE or not isinstance(self_ensemble, (int, np.integer)) or isinstance(
                self_ensemble, bool):
            raise InputError(f"self_ensemble must be one of {', '.join(map(str, SELF_ENSEMBLE))}, got {self_ensemble!r}")
        self.self_ensemble = self_ensemble
        # What pickling sends instead of the session and its lock: the receiving process (a
        # multiprocessing pool's worker) opens its own, as it would have.
        self._args = dict(model=model, provider=provider, tile=tile, overlap=overlap, blend=blend,
                          tile_batch=tile_batch, max_whole_pixels=max_whole_pixels, device_id=device_id,
                          threads=threads, self_ensemble=self_ensemble)
        # Fixed tile shapes make cuDNN's exhaustive algorithm search pay off; whole images of
        # varying sizes would re-tune on every new shape.
        self.choice = resolve_provider(provider, device_id=device_id, fixed_shapes=bool(tile))
        try:
            self.session, path = self._open(model, threads)
        except ProviderError as exc:
            # "auto" promises the GPU if it works, else the CPU: onnxruntime-gpu lists CUDA on
            # machines without a GPU or its libraries (CI runners, containers without --gpus).
            if provider.strip().lower() != "auto":
                raise
            log.warning("provider auto runs on the CPU: %s", first_line(exc))
            self.choice = resolve_provider("cpu")
            self.session, path = self._open(model, threads)
        self.model_path = path
        shipped = default_model_path()  # the FP32 one
        # The shipped GPU model sees 8 bits: 16-bit and float images go through the FP32 one
        # instead, opened on the first such image (most callers never send one).
        self._deep_args = None if model is not None or shipped in (None, path) else {
            **self._args, "model": shipped, "provider": self.choice.name}
        self._deep: Deblurrer | None = None
        self._deep_lock = threading.Lock()
        self.info = _read_info(self.session, path)
        self.input_name, self.output_name, self.io_dtype = _check_io(self.session, path, self.info)
        batch = self.session.get_inputs()[0].shape[0]
        if isinstance(batch, int) and batch != 1:
            raise ModelError(f"{path}: the model takes a fixed batch of {batch}; deblur-edge feeds one image or "
                             "tile at a time: re-export it with a dynamic batch (deblur-export does)")
        if isinstance(batch, int) and tile_batch > 1:
            raise InputError(f"{path}: the model takes one image at a time (a fixed batch of 1): use tile_batch "
                             f"(--tile-batch) 1, not {tile_batch}, or re-export it with a dynamic batch")
        self.provider = self.session.get_providers()[0]
        # The model's channel planes in BGR order: input plane c is the caller's channel
        # _planes[c], and output plane _planes[c] becomes BGR channel c.
        self._planes = (2, 1, 0) if self.info.channel_order == "RGB" else (0, 1, 2)
        self.tile, self.blend, self.tile_batch, self.device_id = tile, blend, tile_batch, device_id
        self.max_whole_pixels = max_whole_pixels
        self._said_8_bit = False  # the one piece of call-time state: a warning given once
        self.overlap = self.info.tile_context if overlap is None else overlap
        m = self.info.size_multiple
        # A tile adds `stride` new output pixels per axis: at the bare minimum (stride m) it
        # computes each output pixel hundreds of times (208 s instead of 0.7 s for a 384-px photo).
        sensible = smallest_sensible_tile(self.overlap, blend, m)
        # Auto tiles grow for models whose context needs it (a pix2pix U-Net: 1022-px receptive field).
        self._auto_tile = max(AUTO_TILE, sensible)
        checked = self._auto_tile if tile is None else tile
        stride = tile_stride(checked, self.overlap, blend, m)
        if checked and stride < 1:
            raise InputError(f"tile {checked} is too small for overlap {self.overlap} and blend {blend}: use tile "
                             f"(--tile) >= {sensible} ({2 * self.overlap + blend + m} at the very least), tile 0 "
                             "(whole images), or a smaller overlap or blend")
        if checked and checked < sensible:
            log.warning("tile %d adds only %d px per tile after overlap %d x 2 and blend %d: every output pixel "
                        "is computed ~%.0f times; tile (--tile) >= %d keeps that under 4", checked, stride, self.overlap,
                        blend, (checked / stride) ** 2, sensible)
        if self.provider == "CPUExecutionProvider" and self.info.precision == "fp16":
            log.warning("%s is an FP16 model: on CPUs it is no faster than FP32 (ONNX Runtime computes most "
                        "ops in float32 and casts around them) and less exact; export without --fp16 for CPU use",
                        path)
        if self.choice.name in GPU_PROVIDERS and self.io_dtype != np.uint8 and path != shipped:
            log.info("%s takes float arrays: on GPUs converting them in NumPy costs more than the model (H200: "
                     "2.7-3.4x its session time); an export with --uint8-io converts in the graph", path.name)
        log.info("deblurring with %s on %s (tile %s, overlap %d)", path.name, self.provider,
                 "auto" if tile is None else tile or "off", self.overlap)

    def _open(self, model: str | os.PathLike | None, threads: int | None) -> tuple[object, Path]:
        """A session of ``model`` (None: the shipped one for the chosen provider) and its path."""
        path = Path(model) if model is not None else default_model_path(self.choice.name)
        if path is None:
            raise ModelError("no default model ships with this version of deblur-edge; pass a model file "
                             "(make one with: deblur-export CHECKPOINT model.onnx)")
        return create_session(str(_check_model_file(path)), self.choice, threads=threads), path

    def __reduce__(self):
        return _reopen, (self._args,)

    # -- public API ---------------------------------------------------------------------
    def __call__(self, image: np.ndarray) -> np.ndarray:
        # Padding and tiling work on the caller's pixels (uint8: 3 bytes a pixel); only the
        # part going into the model is converted to float, and tiled results are finished
        # band by band into the output, so a tiled image never exists in float32 whole.
        image = native_order(image)  # '>u2' is no np.uint16: it would miss the deep-image route below
        if self._deep_args is not None and getattr(image, "dtype", None) in (np.uint16, np.float16, np.float32,
                                                                             np.float64):
            return self._deep_twin()(image)
        x, fmt = self.prepare(image)
        tile = self.tile_for(x.shape)
        while True:
            try:
                height, width, grid = self.plan(x.shape, tile)
                padded = pad_reflect(x, height, width)
                if grid is None:
                    return self.post_process(self.process(padded, fmt)[:x.shape[0], :x.shape[1]], fmt)
                return self._finish_tiled(padded, grid, fmt, x.shape[0], x.shape[1])
            except _DeviceOutOfMemory as exc:  # only the model call's GPU allocations are retried
                smaller = self._tile_after_oom(exc, tile, x.shape)
                log.warning("%s ran out of memory at tile %s; retrying this image with tile %d",
                            self.provider, tile or "off (whole image)", smaller)
                tile = smaller
            except Exception as exc:
                if type(exc).__module__.startswith("onnxruntime"):
                    raise ModelError(f"{self.model_path}: inference failed on a {x.shape[1]}x{x.shape[0]} "
                                     f"image ({first_line(exc)})") from exc
                raise

    def _deep_twin(self) -> Deblurrer:
        """The FP32 float-I/O default model, for the 16-bit and float images the GPU one would round."""
        with self._deep_lock:
            if self._deep is None:
                log.info("%s takes 8-bit pixels: deeper images go through %s", self.model_path.name,
                         self._deep_args["model"].name)
                self._deep = Deblurrer(**self._deep_args)
            return self._deep

    def tile_for(self, shape: tuple[int, ...]) -> int:
        """The tile side used for an image of this shape (0: whole image)."""
        if self.tile is None:
            return 0 if shape[0] * shape[1] <= self.max_whole_pixels else self._auto_tile
        return self.tile

    def deblur_many(self, images: Iterable[np.ndarray]) -> list[np.ndarray]:
        """Deblur several images (any sizes); results in the same order."""
        return [self(image) for image in images]

    # -- stages -------------------------------------------------------------------------
    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, _Format]:
        """Validate; split off alpha and widen grey to 3 channels, keeping the caller's dtype."""
        if image is None:
            raise InputError("expected a numpy image array, got None: cv2.imread returns None for a missing or "
                             "unreadable file (deblur.runtime.read_image says which)")
        if not isinstance(image, np.ndarray):
            raise InputError(f"expected a numpy image array, got {type(image).__name__}")
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise InputError(f"image of shape {image.shape} is not HxW, HxWx3 or HxWx4")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise InputError(f"image of shape {image.shape} has no pixels")
        image = native_order(image)
        shape, dtype = image.shape, image.dtype
        if image.dtype == np.uint8:
            scale = 255.0
        elif image.dtype == np.uint16:
            scale = 65535.0
        elif image.dtype in (np.float32, np.float64, np.float16):
            scale = 1.0
            if not np.isfinite(image).all():
                raise InputError(f"image contains {np.count_nonzero(~np.isfinite(image))} NaN or infinite values; "
                                 "replace them (e.g. numpy.nan_to_num) first")
            # Slightly outside [0, 1] is fine (HDR highlights clip); far outside is another scale,
            # which would come back saturated with no error.
            low, high = float(image.min()), float(image.max())
            if high > 2.0 or low < -0.5:
                raise InputError(f"float pixels span [{low:.4g}, {high:.4g}], but float images are taken as "
                                 "[0, 1]: scale them first (8-bit data / 255, 16-bit / 65535, [-1, 1] as "
                                 "(x + 1) / 2), or save the image as 8- or 16-bit")
        else:
            raise InputError(f"{image.dtype} images are not supported; use uint8, uint16 or float in [0, 1]")
        alpha = None
        if image.ndim == 3 and image.shape[2] == 4:
            alpha, image = image[:, :, 3].copy(), image[:, :, :3]
            image = _fill_hidden(image, alpha == 0)
        grey = image.ndim == 2 or image.shape[2] == 1
        if grey:
            image = np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=2)
        else:
            grey = equal_channels(image)
        return image, _Format(shape, dtype, scale, alpha, grey)

    def to_model(self, tiles: Sequence[np.ndarray], fmt: _Format) -> np.ndarray:
        """(h, w, 3) BGR pixels of the caller's dtype -> one (N, 3, h, w) model input batch.

        Scaled to the model's range, in its channel order and I/O dtype, written plane by plane
        straight into the batch: one pass, no float HWC intermediate and no transpose copy.
        """
        if self.io_dtype == np.uint8:
            return self._to_pixels(tiles, fmt)
        low, high = self.info.input_range
        x = np.empty((len(tiles), 3, *tiles[0].shape[:2]), self.io_dtype)
        # FP16 I/O: computed in float32 and rounded once, as the model was checked against.
        scratch = None if self.io_dtype == np.float32 else np.empty(tiles[0].shape[:2], np.float32)
        for n, tile in enumerate(tiles):
            for c, src in enumerate(self._planes):
                plane = x[n, c] if scratch is None else scratch
                if fmt.scale == 1.0:  # float input may stray outside [0, 1]
                    np.clip(tile[:, :, src], 0.0, 1.0, out=plane, casting="unsafe")
                    plane *= np.float32(high - low)
                else:
                    # dtype: NumPy 1.x would pick a float16 loop for uint8 x float32 scalar.
                    np.multiply(tile[:, :, src], (high - low) / fmt.scale, out=plane, dtype=np.float32,
                                casting="unsafe")
                plane += np.float32(low)
                if scratch is not None:
                    x[n, c] = scratch
        return x

    def _to_pixels(self, tiles: Sequence[np.ndarray], fmt: _Format) -> np.ndarray:
        """``to_model`` for a uint8-I/O model: (N, h, w, 3) pixels; the graph converts them."""
        order = slice(None, None, -1) if self.info.channel_order == "RGB" else slice(None)
        if fmt.dtype == np.uint8:
            if len(tiles) == 1:  # the whole image: no copy when it is contiguous already
                return np.ascontiguousarray(tiles[0][:, :, order])[None]
            return np.stack([tile[:, :, order] for tile in tiles])
        # 16-bit or float pixels: this model sees 8 bits (the result comes back in the caller's
        # dtype, with 8-bit precision). Said once per instance: a folder of 16-bit TIFFs would
        # repeat it per file.
        if not self._said_8_bit:
            self._said_8_bit = True
            log.warning("%s takes 8-bit pixels (exported with --uint8-io): %s images are deblurred at 8-bit "
                        "precision; use a float-I/O export of the model to keep their depth", self.model_path.name,
                        fmt.dtype)
        low, high = self.info.input_range
        x = np.stack([tile[:, :, order] for tile in tiles]).astype(np.float32)
        if fmt.scale == 1.0:
            np.clip(x, 0.0, 1.0, out=x)
        x *= np.float32((high - low) / fmt.scale)
        x += np.float32(low)
        return np.clip(np.rint(x, out=x), 0, 255, out=x).astype(np.uint8)

    def from_model(self, out: np.ndarray) -> list[np.ndarray]:
        """(N, 3, h, w) model output -> N contiguous (h, w, 3) float32 BGR arrays, model's range.

        A uint8-I/O model's (N, h, w, 3) output comes back as N (h, w, 3) uint8 BGR arrays.
        """
        if out.dtype == np.uint8:
            return [np.ascontiguousarray(item[:, :, ::-1]) if self.info.channel_order == "RGB" else item
                    for item in out]
        fp16 = out.dtype == np.float16 or self.info.precision == "fp16"
        out = out.astype(np.float32, copy=False)
        # One pass, no allocation (on the float32 copy FP16 outputs need anyway): pixel values
        # sum far below float32's overflow, and any NaN or infinity makes the sum one.
        if not np.isfinite(out.sum()):
            raise ModelError(f"{self.model_path}: the model produced {np.count_nonzero(~np.isfinite(out))} NaN or "
                             f"infinite values on a {list(out.shape)} batch"
                             + ("; an FP16 model can overflow: use its FP32 export" if fp16 else ""))
        # cv2.merge interleaves the planes in one vectorised pass (numpy's transpose copy of a
        # channel-first array is several times slower).
        return [cv2.merge([item[c] for c in self._planes]) for item in out]

    def plan(self, shape: tuple[int, ...], tile: int | None = None) -> tuple[int, int, TileGrid | None]:
        """The padded size the model sees for an image of ``shape``, and its tile grid (None: whole).

        Mirror-padded to the size multiple (and ``MIN_SIDE``) and cropped back afterwards, so
        any H x W works. The benchmarks call this too, so they time exactly these shapes.
        """
        m = self.info.size_multiple
        height, width = padded_size(shape[0], m, MIN_SIDE), padded_size(shape[1], m, MIN_SIDE)
        tile = self.tile_for(shape) if tile is None else tile
        if not tile or max(shape[:2]) <= tile:
            return height, width, None
        return height, width, make_grid(height, width, tile, self.overlap, self.blend, m)

    def process(self, padded: np.ndarray, fmt: _Format) -> np.ndarray:
        """The whole (padded) image in one model run."""
        return self._run(self.to_model([padded], fmt))[0]

    def tile_bands(self, padded: np.ndarray, grid: TileGrid, fmt: _Format) -> Iterator[tuple[int, np.ndarray]]:
        """Blended results as (first row, float32 rows), top to bottom, each yielded as soon as
        no later tile touches it: memory holds one row of tiles, not the image.

        The rows are a view of one reused buffer, valid until the next iteration (finish or
        copy them first). Tiles of one row go through the model ``tile_batch`` at a time.
        """
        band = np.zeros((grid.tile_h, grid.width, 3), np.float32)
        for i, top in enumerate(grid.ys):
            for j in range(0, len(grid.xs), self.tile_batch):
                xs = grid.xs[j:j + self.tile_batch]
                batch = self.to_model([padded[top:top + grid.tile_h, x0:x0 + grid.tile_w] for x0 in xs], fmt)
                for x0, tile_out in zip(xs, self._run(batch)):
                    band[:, x0:x0 + grid.tile_w] += tile_out * grid.weight(top, x0)
            finished = (grid.ys[i + 1] if i + 1 < len(grid.ys) else top + grid.tile_h) - top
            yield top, band[:finished]
            # The rows the next tile row overlaps move up; the rest starts from zero again.
            carried = grid.tile_h - finished
            band[:carried] = band[finished:].copy()
            band[carried:] = 0.0

    def _finish_tiled(self, padded: np.ndarray, grid: TileGrid, fmt: _Format, height: int, width: int) -> np.ndarray:
        """Tiles -> the caller's layout and dtype band by band, cropped to ``height x width``."""
        out = None
        for top, rows in self.tile_bands(padded, grid, fmt):
            rows = rows[:max(0, height - top), :width]
            if len(rows):
                done = self.post_process(rows, fmt, top)
                if out is None:
                    out = np.empty((height, *done.shape[1:]), done.dtype)
                out[top:top + len(rows)] = done
        return out

    def post_process(self, y: np.ndarray, fmt: _Format, top: int = 0) -> np.ndarray:
        """Back to the caller's channel layout, value range and dtype. Consumes ``y`` (in place).

        ``y`` may be a band of rows starting at row ``top`` of the image (tiled images are
        finished band by band); the result has the caller's layout for those rows.
        """
        low, high = self.info.input_range
        if y.dtype == np.uint8 and fmt.dtype != np.uint8:  # a uint8-I/O model, a 16-bit/float caller
            y = y.astype(np.float32)
        if y.dtype != np.uint8:
            np.clip(y, low, high, out=y)
        if fmt.grey:
            # The model's colour channels differ by a few levels even for grey input: a grey
            # picture (a scan, a grey+alpha PNG, which OpenCV decodes to BGRA) would come back
            # with faint false colour.
            y = cv2.cvtColor(y, cv2.COLOR_BGR2GRAY)
        gain = fmt.scale / (high - low)
        if y.dtype == np.uint8:  # the graph already scaled, rounded and saturated
            y = np.ascontiguousarray(y)
        elif fmt.dtype == np.uint8:
            # scale, round half to even (as np.rint) and saturate in one pass; |.| is a no-op
            # on the clipped range.
            y = cv2.convertScaleAbs(y, alpha=gain, beta=-low * gain)
        else:
            y -= np.float32(low)
            y *= np.float32(gain)
            if fmt.dtype.kind == "u":
                np.rint(y, out=y)
            # A fresh array, not a view of the padded model output or of a reused band.
            y = np.ascontiguousarray(y, dtype=fmt.dtype)
        if fmt.grey and len(fmt.shape) == 3 and fmt.shape[2] >= 3:
            y = np.repeat(y[:, :, None], 3, axis=2)
        if fmt.alpha is not None:
            y = np.dstack([y, fmt.alpha[top:top + len(y)]])
        return y.reshape(len(y), *fmt.shape[1:])

    def _tile_after_oom(self, exc: Exception, tile: int, shape: tuple[int, ...]) -> int:
        """Half the tile after a GPU allocation failure; ModelError when that cannot help."""
        m = self.info.size_multiple
        smaller = padded_size((tile or max(shape[:2])) // 2, m)
        if smaller < 2 * self.overlap + self.blend + m:
            raise ModelError(f"{self.provider} is out of memory even with tile {tile}; free GPU memory, "
                             f"use a smaller overlap (--overlap), or provider cpu") from exc
        return smaller

    # -- model execution ----------------------------------------------------------------
    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        """A ``to_model`` batch through the session -> ``from_model`` arrays (self-ensembled)."""
        if self.self_ensemble == 1:
            return self.from_model(self._infer(batch))
        # NCHW floats or NHWC pixels (uint8 I/O); results come back HWC either way.
        axes = (1, 2) if batch.dtype == np.uint8 else (2, 3)
        total = None
        for turns, flip in SELF_ENSEMBLE[self.self_ensemble]:
            x = np.rot90(np.flip(batch, axes[1]) if flip else batch, turns, axes)
            outs = self.from_model(self._infer(np.ascontiguousarray(x)))
            outs = [np.rot90(y, -turns, (0, 1)) for y in outs]
            outs = [np.flip(y, 1) if flip else y for y in outs]
            if total is None:
                total = [y.astype(np.float32) for y in outs]
            else:
                for acc, y in zip(total, outs):
                    acc += y
        for acc in total:
            acc *= np.float32(1 / self.self_ensemble)
        if batch.dtype == np.uint8:
            return [np.rint(acc).astype(np.uint8) for acc in total]
        return total

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        """One batch through the session: the model's raw output. A GPU allocation failure is
        told apart (the image is retried with smaller tiles)."""
        try:
            out = self._session_run(batch)
        except Exception as exc:
            if self.provider in GPU_PROVIDERS and any(p in str(exc).lower() for p in _OOM_PATTERNS):
                raise _DeviceOutOfMemory(first_line(exc)) from exc
            raise
        # An image-to-image model gives back the input's shape; anything else (an upscaler, a
        # one-channel mask, a classifier) would come back cropped, garbled or as a traceback.
        if out.shape != batch.shape:
            raise ModelError(f"{self.model_path}: the model's output {list(out.shape)} does not match its input "
                             f"{list(batch.shape)}; deblur-edge runs models whose output is the input's size "
                             "and channels (not an upscaler, mask or classifier)")
        return out

    def _session_run(self, batch: np.ndarray) -> np.ndarray:
        # Plain run on GPUs too: binding the input and output on the device (IOBinding) was
        # measured no faster on an H200 (8.8 vs 8.5 ms at 720p, interleaved): the copies are the same.
        return self.session.run([self.output_name], {self.input_name: batch})[0]


def _fill_hidden(image: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """``image`` with the colour under fully transparent pixels replaced by the nearest visible
    pixel's. Whatever a cut-out hides there (black, white, old background) is invisible, but the
    model sees it across an edge: visible edge pixels differed by up to 53 levels between a black
    and a white hidden area. Filled, the result depends on what can be seen only."""
    if not hidden.any() or hidden.all():
        return image
    # Labels of the nearest visible pixel, numbered 1.. in raster order of the visible pixels.
    _, nearest = cv2.distanceTransformWithLabels(hidden.astype(np.uint8), cv2.DIST_L2, 5,
                                                 labelType=cv2.DIST_LABEL_PIXEL)
    visible = image[~hidden]
    filled = image.copy()  # never the caller's array
    filled[hidden] = visible[nearest[hidden] - 1]
    return filled


def _reopen(args: dict) -> Deblurrer:
    return Deblurrer(**args)


def _check_model_file(path: Path) -> Path:
    if not path.exists():
        raise ModelError(f"{path}: no such model file")
    if path.is_dir():
        raise ModelError(f"{path}: is a directory, expected an .onnx model file")
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: model file is empty")
    try:
        path.open("rb").close()
    except PermissionError:
        raise ModelError(f"{path}: permission denied; check the file's read permissions") from None
    return path


def _read_info(session, path: Path) -> ModelInfo:
    try:
        info = ModelInfo.from_metadata(session.get_modelmeta().custom_metadata_map)
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{path}: invalid deblur metadata ({exc}); re-export with deblur-export") from None
    if not info.has_metadata:
        log.info("%s has no deblur-edge metadata: assuming %s input in %s, size multiple %d",
                 path, info.channel_order, list(info.input_range), info.size_multiple)
    return info


def _check_io(session, path: Path, info: ModelInfo) -> tuple[str, str, type]:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or not outputs:
        raise ModelError(f"{path}: expected one image input, found {len(inputs)} inputs and {len(outputs)} outputs")
    name, shape = inputs[0].name, inputs[0].shape
    dtypes = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8}
    if inputs[0].type not in dtypes:
        raise ModelError(f"{path}: input type {inputs[0].type} is not supported (float, float16 or uint8)")
    dtype = dtypes[inputs[0].type]
    nhwc = info.io_layout == "NHWC"
    pixels_out = outputs[0].type == "tensor(uint8)"
    if (dtype == np.uint8) != nhwc or pixels_out != nhwc:
        layout_note = f"metadata io_layout {info.io_layout}" if info.has_metadata else \
            "no deblur-edge metadata (NCHW assumed)"
        raise ModelError(f"{path}: {inputs[0].type} input and {outputs[0].type} output with {layout_note}: "
                         "deblur-edge runs float NCHW models and uint8 NHWC models (deblur-export --uint8-io) "
                         "with uint8 output; re-export with deblur-export")
    layout = "(N, H, W, 3)" if nhwc else "(N, 3, H, W)"
    if len(shape) != 4:
        raise ModelError(f"{path}: input {name!r} has rank {len(shape)} {shape}; an image-to-image model takes {layout}")
    channels, spatial = (shape[3], shape[1:3]) if nhwc else (shape[1], shape[2:])
    if isinstance(channels, int) and channels != 3:
        raise ModelError(f"{path}: input {name!r} {shape} has {channels} channels where {layout} has 3; "
                         "deblur-edge feeds 3 (RGB/BGR)")
    if any(isinstance(d, int) for d in spatial):
        raise ModelError(f"{path}: input {name!r} has a fixed size {shape}; deblur-edge needs dynamic "
                         "height and width (re-export with dynamic axes, e.g. deblur-export)")
    return name, outputs[0].name, dtype

"""Does the ONNX model compute what the PyTorch model computes? Measured on a real photo."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import cv2
import numpy as np
import onnx
import torch
from torch import nn

# Two crops of different aspect ratio, multiples of 4: catches baked shapes and
# transposed-axis bugs that a square test input would hide.
PARITY_SIZES = ((256, 176), (160, 320))  # (H, W)


@dataclass(frozen=True)
class ParityResult:
    size: tuple[int, int]  # (H, W)
    max_abs: float  # in model units ([-1, 1] -> a range of 2)
    psnr_db: float

    def __str__(self) -> str:
        return f"{self.size[1]}x{self.size[0]}: max|diff| {self.max_abs:.2e}, PSNR {self.psnr_db:.1f} dB"


def reference_photo() -> np.ndarray:
    """The bundled real photo, HxWx3 uint8 BGR."""
    path = resources.files("deblur.runtime") / "assets" / "astronaut.jpg"
    image = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"bundled photo {path} is missing or unreadable; reinstall deblur-edge")
    return image


def photo_batch(size: tuple[int, int], input_range: tuple[float, float], channel_order: str,
                photo: np.ndarray | None = None) -> np.ndarray:
    """(1, 3, H, W) float32 centre crop of ``photo`` (BGR uint8; default: the reference photo)
    in the model's range and order."""
    image = reference_photo() if photo is None else photo
    h, w = size
    scale = max(h / image.shape[0], w / image.shape[1], 1.0)
    if scale > 1.0:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    top, left = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
    crop = image[top:top + h, left:left + w]
    if channel_order == "RGB":
        crop = crop[:, :, ::-1]
    low, high = input_range
    x = crop.astype(np.float32) / 255.0 * (high - low) + low
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def calibration_batches(input_range: tuple[float, float], channel_order: str, count: int = 8,
                        size: tuple[int, int] = (128, 128), seed: int = 0,
                        photos: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """Crops of photos (default: the bundled reference photo) with synthetic camera shake:
    activations like real inputs. ``photos``: the user's own (BGR uint8), taken in turn."""
    from deblur.train.blur import BlurConfig, degrade

    rng = np.random.default_rng(seed)
    photos = photos or [reference_photo()]
    low, high = input_range
    batches = []
    for index in range(count):
        photo = photos[index % len(photos)]
        scale = max(size[0] / photo.shape[0], size[1] / photo.shape[1], 1.0)
        if scale > 1.0:  # a small photo is enlarged to the crop, not skipped
            photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        top = int(rng.integers(0, photo.shape[0] - size[0] + 1))
        left = int(rng.integers(0, photo.shape[1] - size[1] + 1))
        crop, _ = degrade(photo[top:top + size[0], left:left + size[1]], rng, BlurConfig())
        if channel_order == "RGB":
            crop = crop[:, :, ::-1]
        x = crop.astype(np.float32) / 255.0 * (high - low) + low
        batches.append(np.ascontiguousarray(x.transpose(2, 0, 1)[None]))
    return batches


def psnr(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(data_range ** 2 / mse)


def check_parity(model: nn.Module, proto: onnx.ModelProto, *, input_range: tuple[float, float],
                 channel_order: str, size_multiple: int = 1,
                 sizes: tuple[tuple[int, int], ...] = PARITY_SIZES,
                 photo: np.ndarray | None = None) -> list[ParityResult]:
    """Run torch (FP32, eval) and ONNX Runtime (CPU) on the same photo crops (of ``photo``,
    default the bundled one).

    Sizes are rounded up to ``size_multiple`` (a U-Net needs 2**levels) and stay different
    in aspect ratio.
    """
    sizes = tuple(tuple(-(-d // size_multiple) * size_multiple for d in size) for size in sizes)
    session = _cpu_session(proto)
    feed = session.get_inputs()[0]
    feed_dtype = np.float16 if feed.type == "tensor(float16)" else np.float32
    data_range = input_range[1] - input_range[0]
    results = []
    for size in sizes:
        x = photo_batch(size, input_range, channel_order, photo)
        with torch.no_grad():
            expected = model.eval()(torch.from_numpy(x)).numpy()
        got = session.run(None, {feed.name: x.astype(feed_dtype)})[0].astype(np.float32)
        results.append(ParityResult(size, float(np.abs(got - expected).max()), psnr(got, expected, data_range)))
    return results


def check_pixel_io(float_proto: onnx.ModelProto, pixel_proto: onnx.ModelProto, *, input_range: tuple[float, float],
                   channel_order: str, size_multiple: int = 1,
                   sizes: tuple[tuple[int, int], ...] = PARITY_SIZES) -> tuple[int, float]:
    """How far a uint8-I/O graph (``to_uint8_io``) is from the float graph it wraps: the largest
    difference in grey levels and the fraction of values that differ at all.

    The float graph gets exactly the float32 values the wrapper computes from the pixels (an
    INT8 graph's quantisation steps flip on one ulp), and its output is rounded the same way,
    so a correct wrapper agrees everywhere but on rare rounding ties."""
    float_session, pixel_session = _cpu_session(float_proto), _cpu_session(pixel_proto)
    feed = float_session.get_inputs()[0]
    feed_dtype = np.float16 if feed.type == "tensor(float16)" else np.float32
    low, high = (np.float32(v) for v in input_range)
    worst, differing, total = 0, 0, 0
    for size in sizes:
        size = tuple(-(-d // size_multiple) * size_multiple for d in size)
        pixels = np.rint((photo_batch(size, input_range, "BGR")[0] - low) * (255.0 / (high - low))).astype(np.uint8)
        model_planes = pixels[::-1] if channel_order == "RGB" else pixels  # (3, H, W), model's order
        x = np.multiply(model_planes, np.float32((high - low) / 255.0), dtype=np.float32) + low
        y = float_session.run(None, {feed.name: x[None].astype(feed_dtype)})[0][0].astype(np.float32)
        expected = np.clip(np.rint((y - low) * np.float32(255.0 / (high - low))), 0, 255)
        if channel_order == "RGB":
            expected = expected[::-1]
        nhwc = np.ascontiguousarray(pixels.transpose(1, 2, 0))[None]
        got = pixel_session.run(None, {pixel_session.get_inputs()[0].name: nhwc})[0][0].transpose(2, 0, 1)
        diff = np.abs(got.astype(np.int16) - expected.astype(np.int16))
        worst, differing, total = max(worst, int(diff.max())), differing + int(np.count_nonzero(diff)), total + diff.size
    return worst, differing / total


def _cpu_session(proto: onnx.ModelProto):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # FP16 graphs on CPU log every inserted cast otherwise
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])

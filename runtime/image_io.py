"""Reading and writing images the way the runtime needs: any path, any bit depth, atomically."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import cv2
import numpy as np

from .atomic import atomic_path
from .errors import InputError, first_line
from .heif import encode_heif, is_heif, read_heif
from .metadata import (HEIF_SUFFIXES, JPEG_SUFFIXES, METADATA_SUFFIXES, Metadata, embed_metadata, exif_orientation,
                       read_metadata, TIFF_PHOTOMETRIC, tiff_short, tiff_with_straight_alpha, unlike_srgb)

IMAGE_SUFFIXES = (".png", *JPEG_SUFFIXES, ".bmp", ".tif", ".tiff", ".webp", *HEIF_SUFFIXES)
SIXTEEN_BIT_SUFFIXES = (".png", ".tif", ".tiff", *HEIF_SUFFIXES)  # HEIF: as 10 bits
FLOAT_SUFFIXES = (".tif", ".tiff")  # float pixels are taken as [0, 1], as Deblurrer takes them
ALPHA_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".webp", *HEIF_SUFFIXES)  # JPEG has no alpha: OpenCV drops it
_JPEG_SAMPLING = {"444": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444, "422": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
                  "420": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420, "440": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_440,
                  "411": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_411}
MAX_SIDE = {".webp": 16383, **dict.fromkeys(JPEG_SUFFIXES, 65500)}  # what each encoder takes, px a side
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """HxW, HxWx3 (BGR) or HxWx4 (BGRA) array, uint8, uint16 or float (TIFF), at the depth it is
    stored, turned upright by its EXIF orientation (as viewers show it).

    Decoded from bytes (``np.fromfile`` + ``imdecode``) because ``cv2.imread`` cannot open
    non-ASCII paths on Windows and returns None without saying why.
    """
    return read_image_and_metadata(path)[0]


def read_image_and_metadata(path: str | os.PathLike) -> tuple[np.ndarray, Metadata]:
    """:func:`read_image`, and the ICC colour profile and EXIF block embedded in the file (JPEG,
    PNG, WebP, TIFF, HEIF), from one read of the file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected an image file")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except PermissionError:
        raise InputError(f"{path}: permission denied; check the file's read permissions") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if data.size == 0:
        raise InputError(f"{path}: file is empty")
    if is_heif(data):  # upright already, its EXIF orientation superseded (see runtime/heif.py)
        return read_heif(path, data)
    # Decoded as stored and turned upright here: UNCHANGED ignores the EXIF orientation, and
    # OpenCV's own reading of it misses some a viewer honours (big-endian LONG in JPEGs); one
    # parser must decide both the turn and the EXIF edit of the output. TIFFs are the
    # exception: OpenCV's TIFF decoder turns them by their own Orientation tag, whatever the flags.
    is_jpeg = data[:3].tobytes() == b"\xff\xd8\xff"
    is_tiff = data[:4].tobytes() in (b"II*\x00", b"MM\x00*")
    flags = (cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION if is_jpeg
             else cv2.IMREAD_UNCHANGED)  # JPEGs: no alpha to keep, and UNCHANGED would keep CMYK
    try:
        image = cv2.imdecode(data, flags)
    except cv2.error as exc:  # raised, not None, past OpenCV's size limit (2^30 pixels)
        too_big = "CV_IO_MAX_IMAGE_PIXELS" in str(exc)
        raise InputError(f"{path}: " + ("has more pixels than OpenCV decodes (2^30 by default; the environment "
                                        "variable OPENCV_IO_MAX_IMAGE_PIXELS raises the limit)" if too_big else
                                        f"cannot be decoded ({first_line(exc.err or exc)})")) from None
    if image is None or image.size == 0:
        raise InputError(f"{path}: not a readable image (corrupt, truncated, or not one of the image formats "
                         f"{', '.join(IMAGE_SUFFIXES)})")
    metadata = read_metadata(data)
    if not is_tiff:
        image = apply_orientation(image, exif_orientation(metadata.exif))
    elif image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 4:
        image = _tiff_rgba8(image, metadata.extra_samples, tiff_short(data, TIFF_PHOTOMETRIC))
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        raise InputError(f"{path}: {image.dtype} pixels are not supported; use 8- or 16-bit or float32 images")
    return image, metadata


def native_order(image: np.ndarray) -> np.ndarray:
    """``image`` in the machine's byte order: a big-endian array (np.frombuffer of 16-bit PNG
    rows or FITS data) would otherwise be read byte-swapped by OpenCV, or miss dtype checks
    ('>u2' is not np.uint16)."""
    if isinstance(image, np.ndarray) and not image.dtype.isnative:
        return image.astype(image.dtype.newbyteorder("="))
    return image


def _tiff_rgba8(image: np.ndarray, extra: int | None, photometric: int | None) -> np.ndarray:
    """An 8-bit TIFF of 4 channels as OpenCV decodes it, through libtiff's RGBA reader: colour
    premultiplied by a real alpha (straight alpha came back darkened: 200 at alpha 32 as 25),
    or an opaque alpha made up for a CMYK file (converted to colour)."""
    if photometric == 5 and extra is None:  # CMYK: four colour samples, no alpha
        return np.ascontiguousarray(image[:, :, :3])
    if extra not in (1, 2):  # unspecified (OpenCV writes none): the 4th sample as it is
        return image
    # Back to straight colour (what the model and every output format take), in place, in row
    # bands through a 256 x 256 table: a 200-MP scan must not need gigabytes of float copies.
    # 8 bits lost under low alpha stay lost; fully transparent pixels have no colour left: black.
    if (image[:, :, 3] == 255).all():
        return image
    for top in range(0, image.shape[0], 256):
        band = image[top:top + 256]
        band[:, :, :3] = _UNPREMULTIPLY[band[:, :, 3:], band[:, :, :3]]
    return image


_ALPHA, _COLOUR = np.arange(256, dtype=np.float32)[:, None], np.arange(256, dtype=np.float32)[None, :]
# _UNPREMULTIPLY[alpha, premultiplied colour] -> straight colour
_UNPREMULTIPLY = np.clip(np.rint(_COLOUR * 255 / np.maximum(_ALPHA, 1)), 0, 255).astype(np.uint8) * (_ALPHA > 0)


def to_8bit(image: np.ndarray) -> np.ndarray:
    """A uint16 picture with 8 bits per channel, rounded (``x / 257``), channels as they are."""
    return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)


def as_bgr8(image: np.ndarray) -> np.ndarray:
    """Any image :func:`read_image` returns as contiguous HxWx3 uint8 BGR: 16 bits scaled down,
    float [0, 1] scaled up (NaN as 0), grey widened, alpha dropped. For the tools that work on
    8-bit colour (training crops, calibration, benchmark photos), not for results."""
    if image.dtype == np.uint16:
        image = to_8bit(image)
    elif image.dtype.kind == "f":
        image = (np.clip(np.nan_to_num(image), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(image[:, :, :3])


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels upright for an EXIF orientation (1-8), any channels and depth."""
    turned = {
        2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1),
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1], 8: lambda a: np.rot90(a, 1),
    }.get(orientation)
    return image if turned is None else np.ascontiguousarray(turned(image))


def check_format(suffix: str, dtype: np.dtype) -> None:
    """Refuse a file type that cannot hold ``dtype`` pixels: OpenCV would fall back to 8 bits
    by clipping, not scaling (a 16-bit photo nearly white, a float one nearly black)."""
    suffixes = {np.dtype(np.uint8): IMAGE_SUFFIXES, np.dtype(np.uint16): SIXTEEN_BIT_SUFFIXES,
                np.dtype(np.float32): FLOAT_SUFFIXES, np.dtype(np.float64): FLOAT_SUFFIXES}.get(np.dtype(dtype), ())
    if suffix.lower() not in suffixes:
        fix = f"write the result as {' or '.join(suffixes)}" if suffixes else "use uint8, uint16 or float32 pixels"
        raise InputError(f"{suffix} cannot store {np.dtype(dtype)} pixels; {fix}")


def check_size(suffix: str, shape: tuple[int, ...]) -> None:
    """Refuse a picture too large for the file type before the work, not after it."""
    limit = MAX_SIDE.get(suffix.lower())
    if limit and max(shape[:2]) > limit:
        raise InputError(f"{suffix} holds at most {limit} px a side, and this picture is {shape[1]}x{shape[0]}; "
                         "write .png or .tif")


def fit_side(image: np.ndarray, suffix: str) -> np.ndarray:
    """``image`` scaled down to the largest size ``suffix`` holds, if it is larger (pictures to
    look at: ``--compare``'s side-by-side of a wide panorama)."""
    limit = MAX_SIDE.get(suffix.lower())
    if not limit or max(image.shape[:2]) <= limit:
        return image
    scale = limit / max(image.shape[:2])
    size = (max(1, min(limit, round(image.shape[1] * scale))), max(1, min(limit, round(image.shape[0] * scale))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def equal_channels(image: np.ndarray) -> bool:
    """All three colour channels (BGR, BGRA) equal: a grey picture stored as colour."""
    b, g, r = (image[:, :, c] for c in range(3))
    sample = np.s_[::17, ::17]  # most colour pictures differ within this sample: no full pass
    if not (np.array_equal(b[sample], g[sample]) and np.array_equal(g[sample], r[sample])):
        return False
    return np.array_equal(b, g) and np.array_equal(g, r)


def _png_grey_alpha(grey: np.ndarray, alpha: np.ndarray) -> bytes:
    """A grey + alpha PNG (colour type 4, 8 or 16 bits), which OpenCV cannot write: a grey+alpha
    input comes back as one, not as RGBA. Every row uses the Up filter (vectorised; on photos
    close to OpenCV's adaptive choice)."""
    height, width = grey.shape
    depth = 16 if grey.dtype == np.uint16 else 8
    pixels = np.stack([grey, alpha], axis=2).astype(">u2" if depth == 16 else np.uint8)
    raw = pixels.view(np.uint8).reshape(height, -1)
    rows = np.empty((height, raw.shape[1] + 1), np.uint8)
    rows[:, 0] = 2  # Up: each byte minus the one above it
    rows[0, 1:] = raw[0]
    np.subtract(raw[1:], raw[:-1], out=rows[1:, 1:])  # uint8 arithmetic wraps, as PNG's does
    del pixels, raw

    def chunk(kind: bytes, body: bytes) -> bytes:
        return b"".join((len(body).to_bytes(4, "big"), kind, body, zlib.crc32(body, zlib.crc32(kind)).to_bytes(4, "big")))

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([depth, 4, 0, 0, 0])
    # Level 1: a 12-MP picture in 0.2 s instead of 2 s, for a 15 % larger file.
    return b"".join((b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", header), chunk(b"IDAT", zlib.compress(rows, 1)),
                     chunk(b"IEND", b"")))


def _writable(image: np.ndarray, suffix: str) -> np.ndarray:
    """``image`` checked for a ``suffix`` file: a picture's shape, a dtype the format stores."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"expected a numpy image array, got {type(image).__name__}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)) or not image.size:
        raise InputError(f"cannot write an image of shape {image.shape}: HxW, HxWx3 (BGR) or HxWx4 (BGRA) "
                         "with pixels is needed")
    image = native_order(image)
    check_format(suffix, image.dtype)
    return image


def encode_image(image: np.ndarray, suffix: str, like: Metadata | None = None) -> bytes:
    """``image`` as a ``suffix`` file's bytes, encoded ``like`` the file it came from (its
    :class:`Metadata`): a grey + alpha source goes into a PNG as grey + alpha (when the colour
    channels are still equal), not RGBA; a JPEG keeps its source's chroma subsampling (4:4:4
    stays 4:4:4) and at least its quality (95 at the least); a WebP is lossy (quality 95) when
    its source was lossy (JPEG, lossy WebP), lossless otherwise, as OpenCV writes it; a HEIC
    (through pillow-heif) at quality 90, 16-bit pictures with 10 bits."""
    image = _writable(image, suffix)
    if suffix.lower() in HEIF_SUFFIXES:
        return encode_heif(image, nclx=like.nclx if like else None)
    like = like or Metadata()
    params: list[int] = []
    if suffix.lower() in JPEG_SUFFIXES:
        params = [cv2.IMWRITE_JPEG_QUALITY, max(95, like.jpeg_quality or 0)]
        if like.jpeg_sampling in _JPEG_SAMPLING:
            params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, _JPEG_SAMPLING[like.jpeg_sampling]]
    elif suffix.lower() == ".webp" and like.lossy:  # lossless from a lossy photo: 7x the file
        params = [cv2.IMWRITE_WEBP_QUALITY, 95]
    if (like.grey_alpha and suffix.lower() == ".png" and image.ndim == 3 and image.shape[2] == 4 and image.size
            and equal_channels(image)):
        return _png_grey_alpha(image[:, :, 0], image[:, :, 3])
    try:
        # OpenCV picks the encoder by suffix and knows JPEG only as .jpg, .jpeg and .jpe.
        ok, buffer = cv2.imencode(".jpg" if suffix.lower() in JPEG_SUFFIXES else suffix.lower(), image, params)
    except cv2.error as exc:  # e.g. wider than a format allows (WebP: 16383 px)
        raise InputError(f"cannot encode a {image.shape[1]}x{image.shape[0]} image as {suffix} "
                         f"({str(exc).strip().splitlines()[-1]})") from None
    # Marked as straight alpha, as editors need to show it as transparency, unless it came from
    # a TIFF without the mark (as OpenCV writes them): OpenCV pipelines read such files back
    # exactly, and libtiff's reader premultiplies marked ones.
    if (ok and suffix.lower() in (".tif", ".tiff") and image.ndim == 3 and image.shape[2] == 4
            and not (like.tiff and like.extra_samples is None)):
        return tiff_with_straight_alpha(buffer.tobytes())
    if not ok:  # what OpenCV refuses without an exception: sizes past the format's limit
        check_size(suffix, image.shape)
        raise InputError(f"cannot encode a {image.shape[1]}x{image.shape[0]} image as {suffix}")
    return buffer.tobytes()


def write_image(path: str | os.PathLike, image: np.ndarray, icc: bytes | None = None,
                exif: bytes | None = None, *, like: Metadata | None = None) -> Path:
    """Encode by the file's suffix and write atomically: a crash never leaves half an image.
    ``icc``, ``exif``: a colour profile and an EXIF block (TIFF structure) to embed, as they
    are, into JPEG, PNG, WebP and TIFF; BMP gets neither. JPEG has no alpha: a BGRA image's
    alpha channel is dropped there (deblur-run warns before the work; check ``ALPHA_SUFFIXES``).
    ``like``: the source's :class:`Metadata`, to encode like it (see :func:`encode_image`)."""
    path = Path(path)
    for name, blob in (("icc", icc), ("exif", exif)):
        if blob is not None and not isinstance(blob, bytes):
            raise InputError(f"{path}: {name} must be bytes (as read_image_and_metadata returns), "
                             f"got {type(blob).__name__}")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputError(f"{path}: unknown image type {path.suffix!r}; use one of {', '.join(IMAGE_SUFFIXES)}")
    suffix = path.suffix.lower()
    try:
        if suffix in HEIF_SUFFIXES:  # pillow-heif embeds them itself
            nclx = like.nclx if like else None
            data, icc, exif = encode_heif(_writable(image, suffix), icc, exif, nclx), None, None
        else:
            data = encode_image(image, path.suffix, like)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    dpi = like.dpi if like and suffix not in HEIF_SUFFIXES else None
    nclx = like.nclx if like and suffix == ".png" and unlike_srgb(like.nclx) else None  # as cICP
    if suffix in METADATA_SUFFIXES and (icc or exif or dpi or nclx):
        try:
            data = embed_metadata(data, icc, exif, dpi, nclx)
        except ValueError as exc:
            raise InputError(f"{path}: {exc}") from None
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 8) -> np.ndarray:
    """``left | right`` with a neutral gap, for ``--compare``."""
    if left.shape != right.shape:
        raise ValueError(f"side_by_side needs equal shapes, got {left.shape} and {right.shape}")
    gap_shape = (left.shape[0], gap) + left.shape[2:]
    fill = np.iinfo(left.dtype).max // 2 if left.dtype.kind == "u" else 0.5
    return np.concatenate([left, np.full(gap_shape, fill, left.dtype), right], axis=1)

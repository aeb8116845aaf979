"""Reading and writing images the way the runtime needs: any path, any bit depth, atomically."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .atomic import atomic_path
from .errors import InputError
from .icc import ICC_SUFFIXES, embed_icc, read_icc

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
SIXTEEN_BIT_SUFFIXES = (".png", ".tif", ".tiff")
FLOAT_SUFFIXES = (".tif", ".tiff")  # float pixels are taken as [0, 1], as Deblurrer takes them
ALPHA_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".webp")  # JPEG has no alpha: OpenCV drops it
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """HxW, HxWx3 (BGR) or HxWx4 (BGRA) array, uint8, uint16 or float (TIFF), exactly as stored.

    Decoded from bytes (``np.fromfile`` + ``imdecode``) because ``cv2.imread`` cannot open
    non-ASCII paths on Windows and returns None without saying why.
    """
    return read_image_and_profile(path)[0]


def read_image_and_profile(path: str | os.PathLike) -> tuple[np.ndarray, bytes | None]:
    """:func:`read_image`, and the ICC colour profile embedded in the file (JPEG, PNG, WebP)
    or None, from one read of the file."""
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
    # JPEGs carry no alpha or 16-bit data but often an EXIF orientation, which only the
    # non-UNCHANGED modes apply; PNG/TIFF/WebP may carry alpha and 16 bits, so keep them whole
    # and apply their (rarer) EXIF orientation here, as viewers and OpenCV's colour mode do.
    is_jpeg = data[:3].tobytes() == b"\xff\xd8\xff"
    flags = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH if is_jpeg else cv2.IMREAD_UNCHANGED
    image = cv2.imdecode(data, flags)
    if image is None or image.size == 0:
        raise InputError(f"{path}: not a readable image (corrupt, truncated, or not an image format "
                         f"OpenCV decodes: {', '.join(IMAGE_SUFFIXES)})")
    if not is_jpeg:
        image = apply_orientation(image, exif_orientation(data))
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        raise InputError(f"{path}: {image.dtype} pixels are not supported; use 8- or 16-bit or float32 images")
    return image, read_icc(data)


def _tiff_orientation(tiff: bytes) -> int:
    """The Orientation tag (0x0112) of IFD0 in TIFF-structured EXIF data; 1 when absent."""
    if tiff[:6] == b"Exif\x00\x00":  # the APP1 prefix, which some writers keep in PNG/WebP too
        tiff = tiff[6:]
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return 1
    for i in range(int.from_bytes(tiff[ifd:ifd + 2], order)):
        entry = tiff[ifd + 2 + 12 * i: ifd + 14 + 12 * i]
        if len(entry) < 12:
            break
        if int.from_bytes(entry[:2], order) == 0x0112:
            # SHORT (type 3) as the standard says; LONG (4) from some writers. Either way the
            # value sits at the start of the 4-byte field, in the file's byte order.
            size = 4 if int.from_bytes(entry[2:4], order) == 4 else 2
            value = int.from_bytes(entry[8:8 + size], order)
            return value if 1 <= value <= 8 else 1
    return 1


def exif_orientation(data: bytes | np.ndarray) -> int:
    """EXIF orientation (1-8) of a PNG (eXIf chunk) or WebP (EXIF chunk); 1 for anything else.
    Reads only the chunk headers and the EXIF payload: no copy of the file."""
    view = memoryview(data).cast("B")
    if bytes(view[:8]) == b"\x89PNG\r\n\x1a\n":
        pos = 8
        while pos + 8 <= len(view):
            length, kind = int.from_bytes(view[pos:pos + 4], "big"), bytes(view[pos + 4:pos + 8])
            if kind == b"eXIf":
                return _tiff_orientation(bytes(view[pos + 8:pos + 8 + length]))
            if kind in (b"IDAT", b"IEND"):
                break  # the PNG spec puts eXIf before the image data
            pos += 12 + length
    elif bytes(view[:4]) == b"RIFF" and bytes(view[8:12]) == b"WEBP":
        pos = 12
        while pos + 8 <= len(view):
            kind, length = bytes(view[pos:pos + 4]), int.from_bytes(view[pos + 4:pos + 8], "little")
            if kind == b"EXIF":
                return _tiff_orientation(bytes(view[pos + 8:pos + 8 + length]))
            pos += 8 + length + (length & 1)
    return 1


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


def encode_image(image: np.ndarray, suffix: str) -> bytes:
    params: list[int] = []
    if suffix.lower() in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, 95]
    check_format(suffix, image.dtype)
    ok, buffer = cv2.imencode(suffix.lower(), image, params)
    if not ok:
        raise InputError(f"cannot encode an image as {suffix}")
    return buffer.tobytes()


def write_image(path: str | os.PathLike, image: np.ndarray, icc: bytes | None = None) -> Path:
    """Encode by the file's suffix and write atomically: a crash never leaves half an image.
    ``icc``: a colour profile to embed (JPEG and PNG; other formats are written untagged)."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputError(f"{path}: unknown image type {path.suffix!r}; use one of {', '.join(IMAGE_SUFFIXES)}")
    try:
        data = encode_image(image, path.suffix)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    if icc and path.suffix.lower() in ICC_SUFFIXES:
        try:
            data = embed_icc(data, icc)
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

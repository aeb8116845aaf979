"""HEIC/HEIF photos (iPhones, many Android phones and cameras) through pillow-heif, an optional
extra: OpenCV decodes no HEIF.

libheif hands the pixels back upright: it applies the file's rotation and mirror boxes, which
take precedence over the EXIF orientation tag such files also carry (an iPhone's says 6 while
its pixels are stored sideways and turned by the box). So a HEIF's EXIF orientation is never
applied a second time; writing, pillow-heif turns an EXIF orientation into those boxes, so an
EXIF block means in a HEIF output what it means in a JPEG.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from .errors import InputError, first_line
from .metadata import _JPEG_EXIF, Metadata, _checked_exif, _checked_icc, unlike_srgb

# ftyp brands of HEIF. AVIF files list the generic mif1/msf1 too, but their "avif"/"avis" brand
# sends them to OpenCV, which decodes AV1 (pillow-heif dropped it).
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}
# H.273 colour tags as pillow-heif names them, with sRGB's values (what an untagged file means).
_NCLX_KEYS = (("color_primaries", 1), ("transfer_characteristics", 13), ("matrix_coefficients", 6),
              ("full_range_flag", 1))
_SRGB_NCLX = tuple(default for _, default in _NCLX_KEYS)
# x265 at pillow-heif's quality 90: ~JPEG 95 to the eye at about half the file.
HEIF_QUALITY = 90
_MODES = {(1, np.dtype(np.uint8)): "L", (1, np.dtype(np.uint16)): "I;16",
          (3, np.dtype(np.uint8)): "BGR", (3, np.dtype(np.uint16)): "BGR;16",
          (4, np.dtype(np.uint8)): "BGRA", (4, np.dtype(np.uint16)): "BGRA;16"}


class HeifSupportMissing(InputError):
    """pillow-heif is not installed: every HEIF file fails alike (a batch should say so once)."""


def _pillow_heif(name: object = None) -> Any:
    try:
        import pillow_heif
    except ImportError:
        where = f"{name}: " if name is not None else ""
        raise HeifSupportMissing(f"{where}HEIC/HEIF images need pillow-heif, which is not installed: pip install "
                                 "pillow-heif (or the checkout's extra: pip install '.[heif]'), or convert the "
                                 "photos to JPEG or PNG first") from None
    return pillow_heif


def is_heif(data: bytes | np.ndarray) -> bool:
    """Whether the bytes start an HEVC-coded HEIF file (by its ftyp box, not its name)."""
    head = bytes(memoryview(data).cast("B")[:64])
    if len(head) < 16 or head[4:8] != b"ftyp":
        return False
    size = min(int.from_bytes(head[:4], "big"), len(head))
    brands = {head[8:12]} | {head[i:i + 4] for i in range(16, size - 3, 4)}
    return bool(brands & _HEIF_BRANDS) and not brands & _AVIF_BRANDS


def read_heif(name: object, data: np.ndarray) -> tuple[np.ndarray, Metadata]:
    """The primary picture, upright (HxW, HxWx3 BGR or HxWx4 BGRA; 10/12-bit pictures as uint16
    on the full 16-bit scale), and its ICC profile and EXIF block."""
    pillow_heif = _pillow_heif(name)
    try:
        heif = pillow_heif.open_heif(io.BytesIO(data.tobytes()), convert_hdr_to_8bit=False, bgr_mode=True)
        image = np.asarray(heif)
    except (ValueError, RuntimeError, OSError, EOFError) as exc:
        raise InputError(f"{name}: cannot be decoded as HEIF ({first_line(exc)}); the file may be truncated "
                         "or damaged") from None
    icc = _checked_icc(heif.info.get("icc_profile") or None)
    tags = heif.info.get("nclx_profile") or {}
    nclx = tuple(int(tags.get(key, default)) for key, default in _NCLX_KEYS) if tags and not icc else None
    # pillow-heif gives the EXIF with JPEG's "Exif\0\0" prefix, which _checked_exif takes off.
    metadata = Metadata(icc=icc, nclx=None if nclx == _SRGB_NCLX else nclx,
                        exif=_checked_exif(heif.info.get("exif") or None),
                        frames=len(heif), primary=heif.primary_index, lossy=True)
    return np.ascontiguousarray(image), metadata


def encode_heif(image: np.ndarray, icc: bytes | None = None, exif: bytes | None = None,
                nclx: tuple[int, int, int, int] | None = None) -> bytes:
    """``image`` (uint8, or uint16 written with 10 bits) as HEIC bytes, with the profile, the
    EXIF block (TIFF structure) and the colour tags (a source HEIF's :attr:`Metadata.nclx`)."""
    pillow_heif = _pillow_heif()
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    mode = _MODES.get((1 if image.ndim == 2 else image.shape[2], image.dtype))
    if mode is None:
        raise InputError(f"HEIF holds 8- or 16-bit (as 10-bit) grey, BGR or BGRA pictures, not {image.dtype} "
                         f"of shape {image.shape}")
    heif = pillow_heif.from_bytes(mode=mode, size=(image.shape[1], image.shape[0]),
                                  data=np.ascontiguousarray(image).tobytes())
    options: dict[str, Any] = {"quality": HEIF_QUALITY}
    # HDR tags (a PNG's cICP beside an sRGB profile: viewers follow the cICP) win over a
    # profile; a file holds one or the other.
    nclx = nclx if unlike_srgb(nclx) or (nclx and not icc) else None
    if icc and not nclx:
        options["icc_profile"] = icc
    if exif:
        options["exif"] = _JPEG_EXIF + exif
    if nclx:
        primaries, transfer, matrix, full = nclx
        if matrix == 0:  # RGB tags (a PNG's cICP): the YUV coding is the encoder's, BT.2020's for BT.2020
            matrix, full = (9 if primaries == 9 else 6), 1
        options.update(zip((key for key, _ in _NCLX_KEYS), (primaries, transfer, matrix, full)))
    out = io.BytesIO()
    try:
        heif.save(out, **options)
    except (ValueError, RuntimeError, OSError) as exc:
        raise InputError(f"cannot encode a {image.shape[1]}x{image.shape[0]} image as HEIF ({first_line(exc)})") from None
    return out.getvalue()

"""What OpenCV drops: a file's ICC colour profile and EXIF block, read from JPEG, PNG, WebP and
TIFF inputs and embedded into outputs of the same formats (16-bit TIFFs from raw converters
are often ProPhoto or Adobe RGB, and carry the camera's EXIF).

OpenCV decodes pixel values and writes none of a file's metadata. A phone photo tagged
Display P3 whose result comes back untagged is shown as sRGB by colour-managed viewers:
duller and shifted; one whose EXIF is lost loses its date, camera and place, and a photo
library files it under the day it was deblurred. Both are copied byte for byte (the pixels
keep their colour space and their history; only their sharpness changes), with three edits
to the EXIF, because the runtime turns the pixels upright when it reads them: its orientation
says "upright", its width and height tags trade places where that turn swapped them, and its
thumbnail (a small copy of the blurred picture, still in the old orientation) is unlinked.
A TIFF keeps its EXIF in its own first IFD, beside the tags that lay out its pixels, with
offsets into the whole file: the descriptive tags (camera, date, author, the Exif and GPS
IFDs) are copied out into a block of their own, every offset rebased, and into a TIFF output
the same way back. Besides, what an output of the same kind needs to be written like its
source: print resolution, how the pixels were compressed (lossy or not, a JPEG's quality and
chroma subsampling), how many pictures the file holds (OpenCV decodes the first), a grey PNG's
transparent value and what a TIFF's 4th sample is. Nothing here raises on damaged input:
damaged metadata is no metadata, and a damaged chunk costs only itself where the container
allows.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np

# JPEG under every name it goes by (.jfif: what browsers on Windows save).
JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")
HEIF_SUFFIXES = (".heic", ".heif", ".hif")  # through pillow-heif (runtime/heif.py), an optional extra
# the outputs that get a profile and EXIF
METADATA_SUFFIXES = (*JPEG_SUFFIXES, ".png", ".webp", ".tif", ".tiff", *HEIF_SUFFIXES)
_JPEG_ICC = b"ICC_PROFILE\x00"
_JPEG_ICC_CHUNK = 65535 - 2 - len(_JPEG_ICC) - 2  # segment length field, tag, sequence bytes
MAX_ICC_BYTES = 255 * _JPEG_ICC_CHUNK  # what a JPEG can carry (16.7 MB; real profiles: 0.5-600 kB)
_JPEG_EXIF = b"Exif\x00\x00"
MAX_JPEG_EXIF_BYTES = 65535 - 2 - len(_JPEG_EXIF)  # one APP1 segment; PNG and WebP have no such limit
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ORIENTATION, _EXIF_IFD, _GPS_IFD, _INTEROP_IFD, _TIFF_ICC = 0x0112, 0x8769, 0x8825, 0xA005, 34675
TIFF_EXTRA_SAMPLES = 338  # what a 4th sample is: 0 unspecified, 1 premultiplied alpha, 2 straight alpha
TIFF_PHOTOMETRIC = 262  # 2 RGB, 5 separated (CMYK), ...
_SUB_IFDS = (_EXIF_IFD, _GPS_IFD, _INTEROP_IFD)
# IFD0 tags that describe the photo rather than lay out a TIFF's pixels (EXIF 2.32, 4.6.4 A-D;
# Windows' rating and XP* tags): what moves between a TIFF's own IFD0 and an EXIF block.
_DESCRIPTIVE_TAGS = frozenset({0x010E, 0x010F, 0x0110, 0x0132, 0x013B, 0x013C, 0x8298, _EXIF_IFD, _GPS_IFD,
                               0x4746, 0x4749, 0x9C9B, 0x9C9C, 0x9C9D, 0x9C9E, 0x9C9F})
_IFD0_TAGS = _DESCRIPTIVE_TAGS | {_ORIENTATION, 0x011A, 0x011B, 0x0128, 0x0131, 0x013E, 0x013F}
# TIFF field types: (bytes per value, bytes per unit that a change of byte order reverses).
_FIELD_TYPES = {1: (1, 1), 2: (1, 1), 3: (2, 2), 4: (4, 4), 5: (8, 4), 6: (1, 1), 7: (1, 1), 8: (2, 2),
                9: (4, 4), 10: (8, 4), 11: (4, 4), 12: (8, 8), 13: (4, 4)}
_MAX_FIELD_BYTES = 1 << 20  # a maker note is tens of kB; a bigger field is damage (or a layer dump)
# All of a copied EXIF block: a crafted file (many tags on one large blob, IFDs pointing back
# at themselves) must not turn 100 kB into gigabytes. Real blocks: under 100 kB.
_MAX_EXIF_BYTES = 4 << 20
_WIDTH_HEIGHT = ((0x0100, 0x0101), (0xA002, 0xA003))  # ImageWidth/Length (IFD0), PixelX/YDimension (Exif IFD)


@dataclass(frozen=True)
class Metadata:
    """A file's ICC profile and EXIF block (TIFF structure, without JPEG's ``Exif\\0\\0``),
    whether it stores grey + alpha (a PNG of colour type 4, which OpenCV decodes to BGRA), and
    how many pictures it holds."""

    icc: bytes | None = None
    exif: bytes | None = None
    grey_alpha: bool = False
    frames: int = 1  # an animation's frames (APNG, WebP) or a TIFF's pages; OpenCV decodes the first
    primary: int = 0  # which of them is decoded: a HEIF burst's primary picture need not be the first
    # H.273 colour tags (primaries, transfer, matrix, full range): a HEIF's nclx where it has no
    # ICC profile (BT.2020 + HLG on an HDR phone photo), a PNG's cICP. None: sRGB's, or absent.
    nclx: tuple[int, int, int, int] | None = None
    # A grey PNG's transparent value (tRNS), in decoded 8/16-bit units: OpenCV ignores it.
    transparent_grey: int | None = None
    # How the pixels were compressed, for an output of the same kind: lossy (JPEG, VP8 WebP),
    # a JPEG's estimated quality (IJG scale) and chroma subsampling ("444", "422", "420", ...).
    lossy: bool = False
    jpeg_quality: int | None = None
    jpeg_sampling: str | None = None
    # Print resolution, dots per inch (x, y): JFIF density, PNG pHYs, TIFF resolution tags.
    dpi: tuple[float, float] | None = None
    # A TIFF's ExtraSamples (what its 4th sample is); None: no tag, or not a TIFF (``tiff``).
    extra_samples: int | None = None
    tiff: bool = False


def read_metadata(data: bytes | np.ndarray) -> Metadata:
    """The ICC profile, EXIF block and the rest of :class:`Metadata` of JPEG, PNG, WebP or TIFF
    bytes; None (or the default) for each that is absent, damaged or not well-formed. Reads only
    headers and metadata: no copy of the file, and never raises."""
    view = memoryview(data).cast("B")
    if bytes(view[:3]) == b"\xff\xd8\xff":
        quality, sampling = _jpeg_coding(view)
        return Metadata(_checked_icc(_jpeg_icc(view)), _checked_exif(_jpeg_exif(view)), lossy=True,
                        jpeg_quality=quality, jpeg_sampling=sampling, dpi=_jfif_dpi(view))
    if bytes(view[:8]) == _PNG_SIGNATURE:
        chunks = _png_chunks(view)
        animation = chunks.get(b"acTL", b"")  # APNG: frame count, play count
        ihdr = len(view) > 25 and bytes(view[12:16]) == b"IHDR"
        key = _png_grey_key(view[24], chunks.get(b"tRNS")) if ihdr and view[25] == 0 else None
        return Metadata(_checked_icc(_png_icc(chunks.get(b"iCCP"))), _checked_exif(chunks.get(b"eXIf")),
                        grey_alpha=ihdr and (view[25] == 4 or key is not None),
                        frames=max(1, int.from_bytes(animation[:4], "big")) if len(animation) >= 4 else 1,
                        transparent_grey=key, dpi=_png_dpi(chunks.get(b"pHYs")), nclx=_png_cicp(chunks.get(b"cICP")))
    if bytes(view[:4]) == b"RIFF" and bytes(view[8:12]) == b"WEBP":
        chunks, frames = _webp_chunks(view)
        return Metadata(_checked_icc(chunks.get(b"ICCP")), _checked_exif(chunks.get(b"EXIF")), frames=max(1, frames),
                        lossy=b"VP8 " in chunks)
    if bytes(view[:4]) in (b"II*\x00", b"MM\x00*"):
        return Metadata(_checked_icc(_tiff_icc(view)), _checked_exif(_tiff_exif(view)), frames=_tiff_pages(view),
                        dpi=_tiff_dpi(view), extra_samples=tiff_short(view, TIFF_EXTRA_SAMPLES), tiff=True)
    return Metadata()


def read_icc(data: bytes | np.ndarray) -> bytes | None:
    """The embedded ICC profile of JPEG, PNG, WebP or TIFF bytes, or None."""
    return read_metadata(data).icc


def colour_space(profile: bytes) -> str:
    """The profile's data colour space: 'RGB', 'GRAY', 'CMYK', ... (header bytes 16-19)."""
    return profile[16:20].decode("latin-1").strip()


def _checked_icc(profile: bytes | None) -> bytes | None:
    # An ICC header: its own size first, the 'acsp' signature at 36 (ICC.1, section 7.2).
    if (profile is None or not 128 <= len(profile) <= MAX_ICC_BYTES or profile[36:40] != b"acsp"
            or int.from_bytes(profile[:4], "big") != len(profile)):
        return None
    return profile


def _checked_exif(exif: bytes | None) -> bytes | None:
    if exif is not None and exif.startswith(_JPEG_EXIF):  # some writers keep the APP1 prefix in PNG/WebP
        exif = exif[len(_JPEG_EXIF):]
    if exif is None or _byte_order(exif) is None or _first_ifd(exif) is None:
        return None
    return exif


# ------------------------------------------------------------------ containers


def _jpeg_segments(view: memoryview) -> Iterator[tuple[int, bytes]]:
    """(marker, body) of each segment before the scan (which holds no metadata); a segment
    running past the end ends the walk: what follows it cannot be found."""
    pos = 2
    while pos + 4 <= len(view) and view[pos] == 0xFF:
        marker, length = view[pos + 1], int.from_bytes(view[pos + 2:pos + 4], "big")
        if marker == 0xDA or length < 2 or pos + 2 + length > len(view):
            return
        yield marker, bytes(view[pos + 4:pos + 2 + length])
        pos += 2 + length


def _png_chunks(view: memoryview) -> dict[bytes, bytes]:
    """The first intact iCCP, tRNS, pHYs and cICP (before the image data, as the spec places them), eXIf
    (anywhere: libpng may write it after the image data) and acTL (APNG) chunks; a chunk
    failing its CRC is skipped."""
    found: dict[bytes, bytes] = {}
    pos, image_data = 8, False
    while pos + 12 <= len(view):
        length, kind = int.from_bytes(view[pos:pos + 4], "big"), bytes(view[pos + 4:pos + 8])
        if kind == b"IEND" or pos + 12 + length > len(view):
            break
        image_data = image_data or kind == b"IDAT"
        if (kind in (b"eXIf", b"acTL") or (kind in (b"iCCP", b"tRNS", b"pHYs", b"cICP") and not image_data)) and \
                kind not in found:
            body = bytes(view[pos + 8:pos + 8 + length])
            if zlib.crc32(kind + body) == int.from_bytes(view[pos + 8 + length:pos + 12 + length], "big"):
                found[kind] = body
        pos += 12 + length
    return found


def _webp_chunks(view: memoryview) -> tuple[dict[bytes, bytes], int]:
    """The first ICCP and EXIF top-level chunks of a RIFF WebP file, within the RIFF's own size
    (bytes appended after it are not the file's), "VP8 " (empty) if its picture is lossy, and
    its animation frames (ANMF chunks)."""
    found: dict[bytes, bytes] = {}
    frames = 0
    end = min(len(view), 8 + int.from_bytes(view[4:8], "little"))
    pos = 12
    while pos + 8 <= end:
        kind, length = bytes(view[pos:pos + 4]), int.from_bytes(view[pos + 4:pos + 8], "little")
        if pos + 8 + length > end:
            break
        if kind in (b"ICCP", b"EXIF") and kind not in found:
            found[kind] = bytes(view[pos + 8:pos + 8 + length])
        elif kind == b"VP8 " or (kind == b"ANMF" and _lossy_frame(view[pos + 24:pos + 8 + length])):
            found[b"VP8 "] = b""  # a lossy picture (VP8L: lossless); its bytes are not needed
        frames += kind == b"ANMF"
        pos += 8 + length + (length & 1)
    return found, frames


def _jpeg_icc(view: memoryview) -> bytes | None:
    # APP2 "ICC_PROFILE" segments, each numbered (1-based) of the same count.
    chunks: dict[int, bytes] = {}
    counts = set()
    for marker, body in _jpeg_segments(view):
        if marker == 0xE2 and body.startswith(_JPEG_ICC) and len(body) > len(_JPEG_ICC) + 2:
            number, count = body[len(_JPEG_ICC)], body[len(_JPEG_ICC) + 1]
            if number in chunks:
                return None  # two segments claim the same place
            chunks[number] = body[len(_JPEG_ICC) + 2:]
            counts.add(count)
    if not chunks or counts != {len(chunks)} or sorted(chunks) != list(range(1, len(chunks) + 1)):
        return None  # none, or a sequence with gaps: better no profile than a broken one
    return b"".join(chunks[i] for i in sorted(chunks))


# The IJG luminance table (JPEG Annex K.1) that libjpeg scales by quality: its sum, against
# which a file's first table's sum says the quality it was saved at (the ImageMagick way).
_IJG_LUMA_SUM = sum((16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                     14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
                     92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99))
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _lossy_frame(chunks: memoryview) -> bool:
    """Whether an animation frame's picture (the chunks after ANMF's 16-byte header) is VP8,
    possibly after its ALPH chunk."""
    if bytes(chunks[:4]) == b"ALPH" and len(chunks) >= 8:
        length = int.from_bytes(chunks[4:8], "little")
        chunks = chunks[8 + length + (length & 1):]
    return bytes(chunks[:4]) == b"VP8 "


def _jpeg_coding(view: memoryview) -> tuple[int | None, str | None]:
    """A JPEG's quality (estimated from its first quantisation table; None if unreadable) and
    chroma subsampling ("444", "422", "420", "440", "411"; None for grey or unusual layouts)."""
    quality = sampling = None
    for marker, body in _jpeg_segments(view):
        pos = 0
        while marker == 0xDB and quality is None and pos < len(body):  # one segment may hold several tables
            wide, table_id = body[pos] >> 4, body[pos] & 15  # 16-bit entries; 0 is luma's, by convention
            size = 128 if wide else 64
            raw = body[pos + 1:pos + 1 + size]
            pos += 1 + size
            if table_id != 0 or len(raw) < size:
                continue
            values = [int.from_bytes(raw[i:i + 2], "big") for i in range(0, 128, 2)] if wide else list(raw)
            scale = sum(values) * 100 / _IJG_LUMA_SUM  # libjpeg's percentage scaling
            quality = 100 if max(values) <= 1 else round(200 - scale) // 2 if scale <= 100 else round(5000 / scale)
            quality = min(100, max(1, quality))
        if marker in _SOF_MARKERS and len(body) >= 15 and body[5] == 3:
            (h0, v0), (h1, v1), (h2, v2) = ((body[7 + 3 * i] >> 4, body[7 + 3 * i] & 15) for i in range(3))
            if (h1, v1) == (h2, v2) and h1 and v1 and h0 % h1 == 0 and v0 % v1 == 0:
                sampling = {(1, 1): "444", (2, 1): "422", (2, 2): "420", (1, 2): "440", (4, 1): "411"}.get(
                    (h0 // h1, v0 // v1))
    return quality, sampling


def _checked_dpi(x: float, y: float) -> tuple[float, float] | None:
    if not (1 <= x <= 100_000 and 1 <= y <= 100_000):
        return None
    # PNG's whole pixels per metre make 300 dpi 299.9994 and 150 150.0114: whole within 0.02.
    return tuple(float(round(v)) if abs(v - round(v)) < 0.02 else round(v, 2) for v in (x, y))


def _jfif_dpi(view: memoryview) -> tuple[float, float] | None:
    """The JFIF APP0 density: units 1 dots per inch, 2 per cm; 0 (an aspect ratio only) is none."""
    for marker, body in _jpeg_segments(view):
        if marker == 0xE0 and body.startswith(b"JFIF\x00") and len(body) >= 12 and body[7] in (1, 2):
            per_inch = 1.0 if body[7] == 1 else 2.54
            return _checked_dpi(int.from_bytes(body[8:10], "big") * per_inch,
                                int.from_bytes(body[10:12], "big") * per_inch)
    return None


def _png_dpi(phys: bytes | None) -> tuple[float, float] | None:
    """PNG pHYs: pixels per unit x and y, unit 1 = metre (0: an aspect ratio only)."""
    if phys is None or len(phys) < 9 or phys[8] != 1:
        return None
    return _checked_dpi(int.from_bytes(phys[:4], "big") * 0.0254, int.from_bytes(phys[4:8], "big") * 0.0254)


def _tiff_dpi(view: memoryview) -> tuple[float, float] | None:
    """XResolution / YResolution (RATIONAL) of a TIFF's first IFD, per ResolutionUnit (2 inch,
    the default; 3 centimetre; 1 none)."""
    ifd, order = _first_ifd(view), _byte_order(view)
    if ifd is None:
        return None
    found: dict[int, float] = {}
    for tag, kind, at in _entries(view, ifd):
        if tag in (0x011A, 0x011B) and kind == 5:
            where = int.from_bytes(view[at + 8:at + 12], order)
            if where + 8 <= len(view):
                denominator = int.from_bytes(view[where + 4:where + 8], order)
                found[tag] = int.from_bytes(view[where:where + 4], order) / denominator if denominator else 0.0
        elif tag == 0x0128 and kind == 3:
            found[tag] = _value(view, at, kind)
    unit = found.get(0x0128, 2)
    if 0x011A not in found or 0x011B not in found or unit not in (2, 3):
        return None
    per_inch = 1.0 if unit == 2 else 2.54
    return _checked_dpi(found[0x011A] * per_inch, found[0x011B] * per_inch)


def _jpeg_exif(view: memoryview) -> bytes | None:
    # The first APP1 "Exif" segment (XMP also lives in APP1, under another name).
    return next((body for marker, body in _jpeg_segments(view) if marker == 0xE1 and body.startswith(_JPEG_EXIF)),
                None)


def _tiff_icc(view: memoryview) -> bytes | None:
    # Tag 34675 (InterColorProfile) of the first IFD: UNDEFINED or BYTE, never inline (>= 128 bytes).
    ifd = _first_ifd(view)
    if ifd is None:
        return None
    order = _byte_order(view)
    for tag, _, at in _entries(view, ifd):
        if tag == _TIFF_ICC:
            size, where = int.from_bytes(view[at + 4:at + 8], order), int.from_bytes(view[at + 8:at + 12], order)
            return bytes(view[where:where + size]) if size <= MAX_ICC_BYTES and where + size <= len(view) else None
    return None


def _tiff_exif(view: memoryview) -> bytes | None:
    """The descriptive tags of a TIFF's first IFD (and the Exif and GPS IFDs they point to) as
    an EXIF block of their own, in the file's byte order; None when it has none (orientation
    and resolution alone are not worth a block)."""
    ifd, order = _first_ifd(view), _byte_order(view)
    if ifd is None or not any(tag in _DESCRIPTIVE_TAGS for tag, _, _ in _entries(view, ifd)):
        return None
    out = bytearray(view[:4]) + bytes(4)
    entries = _copy_ifd(view, ifd, out, order, _IFD0_TAGS)
    out[4:8] = _append_ifd(out, entries, order).to_bytes(4, order)
    return bytes(out)


def _tiff_pages(view: memoryview) -> int:
    """Full-size pages of a TIFF: its IFD chain, less reduced-resolution ones (previews, bit 0
    of NewSubfileType); a loop or damage ends the count."""
    order, ifd = _byte_order(view), _first_ifd(view)
    pages, seen = 0, set()
    while ifd is not None and ifd not in seen and len(seen) < 10_000:
        seen.add(ifd)
        subfile = 0
        for tag, kind, at in _entries(view, ifd):
            if tag >= 254:  # entries are sorted by tag: NewSubfileType (254) comes first, if at all
                subfile = _value(view, at, kind) if tag == 254 else 0
                break
        pages += not subfile & 1
        link = ifd + 2 + 12 * int.from_bytes(view[ifd:ifd + 2], order)
        following = int.from_bytes(view[link:link + 4], order) if link + 4 <= len(view) else 0
        ifd = following if 8 <= following and following + 2 <= len(view) else None
    return max(1, pages)


def tiff_short(data: bytes | np.ndarray, tag: int) -> int | None:
    """The first value of a SHORT tag of a TIFF's first IFD, e.g. ``TIFF_EXTRA_SAMPLES`` or
    ``TIFF_PHOTOMETRIC``; None when the tag is absent or the bytes are no TIFF."""
    view = memoryview(data).cast("B")
    ifd = _first_ifd(view) if bytes(view[:4]) in (b"II*\x00", b"MM\x00*") else None
    if ifd is None:
        return None
    order = _byte_order(view)
    for found, kind, at in _entries(view, ifd):
        if found == tag and kind == 3:
            count = int.from_bytes(view[at + 4:at + 8], order)
            where = at + 8 if count <= 2 else int.from_bytes(view[at + 8:at + 12], order)
            return int.from_bytes(view[where:where + 2], order) if where + 2 <= len(view) else None
    return None


def _png_grey_key(depth: int, trns: bytes | None) -> int | None:
    """A grey PNG's transparent value (tRNS: 2 bytes) as OpenCV decodes the grey: bit depths
    under 8 are scaled up to 0-255, 16 bits stay."""
    if trns is None or len(trns) < 2 or depth not in (1, 2, 4, 8, 16):
        return None
    key = int.from_bytes(trns[:2], "big")
    if key >= 2 ** depth:
        return None
    return key if depth >= 8 else key * (255 // (2 ** depth - 1))


def _png_icc(body: bytes | None) -> bytes | None:
    if body is None:
        return None
    name_end = body.find(b"\x00")
    if name_end < 0 or name_end + 2 > len(body) or body[name_end + 1] != 0:
        return None  # no name terminator, or not zlib (the only method PNG defines)
    inflate = zlib.decompressobj()
    try:  # bounded: a small chunk must not inflate to gigabytes
        profile = inflate.decompress(body[name_end + 2:], MAX_ICC_BYTES + 1)
    except zlib.error:
        return None
    return None if inflate.unconsumed_tail else profile


# ------------------------------------------------------------------ EXIF (TIFF structure)


def _byte_order(tiff: bytes | memoryview) -> str | None:
    # Also a whole file's memoryview (TIFF inputs): nothing here copies more than an IFD entry.
    order = {b"II": "little", b"MM": "big"}.get(bytes(tiff[:2]))
    return order if order and len(tiff) >= 8 and int.from_bytes(tiff[2:4], order) == 42 else None


def _first_ifd(tiff: bytes | memoryview) -> int | None:
    order = _byte_order(tiff)
    ifd = int.from_bytes(tiff[4:8], order) if order else len(tiff)
    return ifd if ifd + 2 <= len(tiff) else None


def _entries(tiff: bytes | memoryview, ifd: int) -> Iterator[tuple[int, int, int]]:
    """(tag, type, offset of the entry) of each complete entry of the IFD at ``ifd``."""
    order = _byte_order(tiff)
    for i in range(int.from_bytes(tiff[ifd:ifd + 2], order)):
        at = ifd + 2 + 12 * i
        if at + 12 > len(tiff):
            return
        yield int.from_bytes(tiff[at:at + 2], order), int.from_bytes(tiff[at + 2:at + 4], order), at


def _value(tiff: bytes, entry: int, kind: int) -> int:
    # SHORT (3) or LONG (4), as the standard allows for these tags (some writers use LONG for
    # orientation); either way the value sits at the start of the 4-byte field.
    return int.from_bytes(tiff[entry + 8:entry + 8 + (4 if kind == 4 else 2)], _byte_order(tiff))


def _copy_ifd(src: bytes | memoryview, ifd: int, out: bytearray, order: str,
              keep: frozenset[int] | None = None, depth: int = 0, limit: int | None = None) -> list[bytes]:
    """The entries of the IFD at ``ifd`` in ``src`` (TIFF structure; only tags in ``keep``, if
    given), re-encoded for ``out`` in byte ``order``: values over 4 bytes and the sub-IFDs they
    point to (Exif, GPS, Interoperability) are appended to ``out`` and the entries point there.
    A damaged entry (unknown type, value past the end) is left out, not the whole IFD; so are
    values that would grow ``out`` past ``limit`` (default: ``_MAX_EXIF_BYTES`` more)."""
    limit = len(out) + _MAX_EXIF_BYTES if limit is None else limit
    src_order = _byte_order(src)
    entries: dict[int, bytes] = {}
    for tag, kind, at in _entries(src, ifd):
        if tag in entries or kind not in _FIELD_TYPES or (keep is not None and tag not in keep):
            continue
        size, unit = _FIELD_TYPES[kind]
        count = int.from_bytes(src[at + 4:at + 8], src_order)
        pointer = int.from_bytes(src[at + 8:at + 12], src_order)
        head = tag.to_bytes(2, order) + kind.to_bytes(2, order) + count.to_bytes(4, order)
        if tag in _SUB_IFDS:
            if depth < 2 and count == 1 and pointer + 2 <= len(src):  # Exif -> Interop at most: no loops
                sub = _copy_ifd(src, pointer, out, order, depth=depth + 1, limit=limit)
                entries[tag] = head + _append_ifd(out, sub, order).to_bytes(4, order)
            continue
        length = size * count
        if length <= 4:
            value = bytes(src[at + 8:at + 8 + length])
        elif length <= _MAX_FIELD_BYTES and pointer + length <= len(src) and len(out) + length <= limit:
            value = bytes(src[pointer:pointer + length])
        else:
            continue
        if src_order != order and unit > 1:
            value = b"".join(value[i:i + unit][::-1] for i in range(0, length, unit))
        if length <= 4:
            entries[tag] = head + value.ljust(4, b"\x00")
        else:
            out += b"\x00" * (len(out) & 1)  # offsets must be even (word-aligned)
            entries[tag] = head + len(out).to_bytes(4, order)
            out += value
    return list(entries.values())


def _append_ifd(out: bytearray, entries: list[bytes], order: str, next_ifd: bytes = bytes(4)) -> int:
    """Append an IFD of ``entries`` (sorted by tag, as TIFF requires) to ``out``; its offset."""
    out += b"\x00" * (len(out) & 1)
    at = len(out)
    entries = sorted(entries, key=lambda entry: int.from_bytes(entry[:2], order))
    out += len(entries).to_bytes(2, order) + b"".join(entries) + next_ifd
    return at


def exif_orientation(exif: bytes | None) -> int:
    """The Orientation tag (1-8) of an EXIF block's first IFD; 1 when absent or unreadable."""
    exif = _checked_exif(exif)
    ifd = _first_ifd(exif) if exif else None
    if ifd is None:
        return 1
    for tag, kind, at in _entries(exif, ifd):
        if tag == _ORIENTATION:
            value = _value(exif, at, kind)
            return value if 1 <= value <= 8 else 1
    return 1


def upright_exif(exif: bytes | None) -> bytes | None:
    """The EXIF block for pixels already turned upright: orientation 1, width and height tags
    swapped when the turn swapped them, no thumbnail (IFD0's link to IFD1 cleared; its bytes
    stay, unreferenced). Everything else byte for byte, without JPEG's ``Exif\\0\\0``; None for
    bytes that are no EXIF block."""
    exif = _checked_exif(exif)
    if exif is None:
        return None
    ifd = _first_ifd(exif)
    order, out = _byte_order(exif), bytearray(exif)
    turned = exif_orientation(exif) >= 5  # 5-8 transpose: width and height trade places
    ifds = [ifd]
    for tag, kind, at in _entries(exif, ifd):
        if tag == _ORIENTATION:
            out[at + 8:at + 12] = (1).to_bytes(4 if kind == 4 else 2, order).ljust(4, b"\x00")
        elif tag == _EXIF_IFD and _value(exif, at, 4) + 2 <= len(exif):
            ifds.append(_value(exif, at, 4))
    if turned:
        for where in ifds:
            entries = {tag: at for tag, _, at in _entries(exif, where)}
            for width, height in _WIDTH_HEIGHT:
                if width in entries and height in entries:
                    # Type, count and value trade places whole (one may be SHORT, the other LONG).
                    a, b = entries[width], entries[height]
                    out[a + 2:a + 12], out[b + 2:b + 12] = exif[b + 2:b + 12], exif[a + 2:a + 12]
    link = ifd + 2 + 12 * int.from_bytes(exif[ifd:ifd + 2], order)
    if link + 4 <= len(exif):
        out[link:link + 4] = bytes(4)
    return bytes(out)


# ------------------------------------------------------------------ writing


def embed_metadata(encoded: bytes, icc: bytes | None = None, exif: bytes | None = None,
                   dpi: tuple[float, float] | None = None, nclx: tuple[int, int, int, int] | None = None) -> bytes:
    """JPEG, PNG, WebP or TIFF bytes (as OpenCV encodes them: bare) with ``icc`` and ``exif``
    embedded, and the print resolution ``dpi`` (x, y) set (WebP has no field for it); PNG also
    takes H.273 colour tags (``nclx``, as :attr:`Metadata.nclx`) as its cICP chunk."""
    if not (icc or exif or dpi or nclx):
        return encoded
    if encoded[:3] == b"\xff\xd8\xff":
        return _jpeg_with(_jfif_with(encoded, dpi) if dpi else encoded, icc, exif)
    if encoded[:8] == _PNG_SIGNATURE:
        return _png_with(encoded, icc, exif, dpi, nclx)
    if encoded[:4] == b"RIFF" and encoded[8:12] == b"WEBP":
        return _webp_with(encoded, icc, exif) if icc or exif else encoded
    if encoded[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_with(encoded, icc, _checked_exif(exif), _tiff_dpi_entries(dpi, _byte_order(encoded)) if dpi else [])
    raise ValueError("embed_metadata takes JPEG, PNG, WebP or TIFF bytes")


def _jpeg_segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + (2 + len(body)).to_bytes(2, "big") + body


def _jpeg_with(encoded: bytes, icc: bytes | None, exif: bytes | None) -> bytes:
    segments = b""
    if exif:
        if len(exif) > MAX_JPEG_EXIF_BYTES:
            raise ValueError(f"an EXIF block of {len(exif)} bytes does not fit a JPEG's APP1 segment "
                             f"(at most {MAX_JPEG_EXIF_BYTES})")
        segments += _jpeg_segment(0xE1, _JPEG_EXIF + exif)
    if icc:
        pieces = [icc[i:i + _JPEG_ICC_CHUNK] for i in range(0, len(icc), _JPEG_ICC_CHUNK)]
        if len(pieces) > 255:
            raise ValueError(f"an ICC profile of {len(icc)} bytes does not fit a JPEG's 255 segments "
                             f"(at most {MAX_ICC_BYTES})")
        segments += b"".join(_jpeg_segment(0xE2, _JPEG_ICC + bytes([i + 1, len(pieces)]) + piece)
                             for i, piece in enumerate(pieces))
    # After SOI and the JFIF APP0 that must follow it directly.
    pos = 2
    if encoded[2:4] == b"\xff\xe0":
        pos = 4 + int.from_bytes(encoded[4:6], "big")
    return encoded[:pos] + segments + encoded[pos:]


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


def _jfif_with(encoded: bytes, dpi: tuple[float, float]) -> bytes:
    # OpenCV writes JFIF 1.01 with density 1:1, units 0 (aspect only): set dots per inch.
    if encoded[2:4] != b"\xff\xe0" or encoded[6:11] != b"JFIF\x00":
        return encoded
    x, y = (min(65535, max(1, round(v))) for v in dpi)
    return encoded[:13] + bytes([1]) + x.to_bytes(2, "big") + y.to_bytes(2, "big") + encoded[18:]


def _tiff_dpi_entries(dpi: tuple[float, float], order: str) -> list[tuple[int, int, int, bytes]]:
    # RATIONALs to a hundredth of a dot; ResolutionUnit 2: inch.
    rational = [round(v * 100).to_bytes(4, order) + (100).to_bytes(4, order) for v in dpi]
    return [(0x011A, 5, 1, rational[0]), (0x011B, 5, 1, rational[1]), (0x0128, 3, 1, (2).to_bytes(2, order))]


# Names of H.273 colour tags (a HEIF's nclx, a PNG's cICP, a video's colour tags).
_H273_PRIMARIES = {1: "BT.709", 9: "BT.2020", 11: "DCI-P3", 12: "Display P3"}
_H273_TRANSFER = {1: "BT.709", 13: "sRGB", 16: "PQ (HDR10)", 18: "HLG"}
# Tags a viewer shows as sRGB anyway: BT.709/sRGB primaries, unspecified (2), and the
# BT.709/BT.601/sRGB transfers. The matrix and range only describe the file's YUV coding.
_SRGB_LIKE = ({1, 2}, {1, 2, 6, 13})


def unlike_srgb(nclx: tuple[int, int, int, int] | None) -> str:
    """What a picture tagged ``nclx`` shows that sRGB would not ("BT.2020 primaries, HLG
    transfer"); empty when a viewer shows it as sRGB anyway (then no tag is worth writing)."""
    if not nclx:
        return ""
    primaries, transfer = nclx[:2]
    lost = []
    if primaries not in _SRGB_LIKE[0]:
        name = _H273_PRIMARIES.get(primaries)
        lost.append(f"{name} primaries" if name else f"H.273 primaries {primaries}")
    if transfer not in _SRGB_LIKE[1]:
        name = _H273_TRANSFER.get(transfer)
        lost.append(f"{name} transfer" if name else f"H.273 transfer {transfer}")
    return ", ".join(lost)


def _png_cicp(body: bytes | None) -> tuple[int, int, int, int] | None:
    """A PNG's cICP chunk (H.273 primaries, transfer, matrix 0 for RGB, full range) as nclx."""
    if body is None or len(body) != 4 or body[2] != 0:
        return None
    return body[0], body[1], body[2], body[3]


def _png_with(encoded: bytes, icc: bytes | None, exif: bytes | None, dpi: tuple[float, float] | None = None,
              nclx: tuple[int, int, int, int] | None = None) -> bytes:
    per_metre = [round(v / 0.0254).to_bytes(4, "big") for v in dpi] if dpi else None
    # cICP: the pixels' primaries and transfer (HDR's PQ/HLG, which no ICC profile describes
    # well); RGB pixels, so matrix 0, and full range as decoded from YUV (an RGB source's own).
    full = nclx[3] if nclx and nclx[2] == 0 else 1
    chunks = (_png_chunk(b"cICP", bytes([nclx[0], nclx[1], 0, full])) if nclx else b"") + \
             (_png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc)) if icc else b"") + \
             (_png_chunk(b"eXIf", exif) if exif else b"") + \
             (_png_chunk(b"pHYs", per_metre[0] + per_metre[1] + bytes([1])) if per_metre else b"")
    ihdr_end = 8 + 12 + int.from_bytes(encoded[8:12], "big")  # IHDR is always first
    return encoded[:ihdr_end] + chunks + encoded[ihdr_end:]


def _riff_chunk(kind: bytes, body: bytes) -> bytes:
    return kind + len(body).to_bytes(4, "little") + body + b"\x00" * (len(body) & 1)


def _webp_with(encoded: bytes, icc: bytes | None, exif: bytes | None) -> bytes:
    # Metadata needs the extended format, in this order: VP8X (flags, canvas size), ICCP, the
    # image chunks, EXIF. OpenCV writes a simple file (one VP8L or VP8 chunk), or VP8X + ALPH
    # + VP8 for lossy with alpha.
    kind = encoded[12:16]
    body = encoded[20:20 + int.from_bytes(encoded[16:20], "little")]
    if kind == b"VP8X":
        flags, canvas, image = body[0], body[4:10], encoded[20 + len(body) + (len(body) & 1):]
    else:
        if kind == b"VP8L":  # 0x2f, then 14 bits width-1, 14 bits height-1, 1 bit alpha (LSB first)
            bits = int.from_bytes(body[1:5], "little")
            width, height, alpha = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, (bits >> 28) & 1
        elif kind == b"VP8 ":  # frame tag (3 bytes), start code (3), then 14-bit width and height
            width, height, alpha = (int.from_bytes(body[6:8], "little") & 0x3FFF,
                                    int.from_bytes(body[8:10], "little") & 0x3FFF, 0)
        else:
            raise ValueError(f"embed_metadata: a WebP with a {kind!r} chunk first is not one OpenCV writes")
        flags = 0x10 if alpha else 0
        canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        image = encoded[12:]
    flags |= (0x20 if icc else 0) | (0x08 if exif else 0)  # ICC profile, EXIF
    chunks = (_riff_chunk(b"VP8X", bytes([flags, 0, 0, 0]) + canvas) + (_riff_chunk(b"ICCP", icc) if icc else b"")
              + image + (_riff_chunk(b"EXIF", exif) if exif else b""))
    return b"RIFF" + (4 + len(chunks)).to_bytes(4, "little") + b"WEBP" + chunks


def tiff_with_straight_alpha(encoded: bytes) -> bytes:
    """OpenCV's TIFF of 4 samples, marked as colour + unassociated (straight) alpha: it writes
    no ExtraSamples tag, so readers could not tell the 4th sample is alpha (libtiff warns)."""
    return _tiff_with(encoded, None, None, [(TIFF_EXTRA_SAMPLES, 3, 1, (2).to_bytes(2, _byte_order(encoded)))])


def _tiff_with(encoded: bytes, icc: bytes | None, exif: bytes | None,
               extra: list[tuple[int, int, int, bytes]]) -> bytes:
    # The first IFD is rewritten at the end of the file with ``extra`` entries (tag, type,
    # count, value in the file's byte order), the profile's and the EXIF block's descriptive
    # tags added, in that precedence, replacing the file's own; their values and sub-IFDs go
    # before it, the header points at it, the old IFD stays behind unreferenced. Entries point
    # at data by absolute offsets, which nothing here moves.
    order = _byte_order(encoded)
    ifd = int.from_bytes(encoded[4:8], order)
    count = int.from_bytes(encoded[ifd:ifd + 2], order)
    entries = [encoded[ifd + 2 + 12 * i:ifd + 14 + 12 * i] for i in range(count)]
    next_ifd = encoded[ifd + 2 + 12 * count:ifd + 6 + 12 * count]
    out = bytearray(encoded)
    if icc:
        extra = [*extra, (_TIFF_ICC, 7, len(icc), icc)]
    added: list[bytes] = []
    for tag, kind, n, value in extra:
        head = tag.to_bytes(2, order) + kind.to_bytes(2, order) + n.to_bytes(4, order)
        if len(value) <= 4:
            added.append(head + value.ljust(4, b"\x00"))
        else:
            out += b"\x00" * (len(out) & 1)
            added.append(head + len(out).to_bytes(4, order))
            out += value
    if exif:
        have = {int.from_bytes(entry[:2], order) for entry in added}
        added += _copy_ifd(exif, _first_ifd(exif), out, order, _IFD0_TAGS - have)
    replaced = {int.from_bytes(entry[:2], order) for entry in added}
    entries = [e for e in entries if int.from_bytes(e[:2], order) not in replaced] + added
    out[4:8] = _append_ifd(out, entries, order, next_ifd).to_bytes(4, order)
    return bytes(out)

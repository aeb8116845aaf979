"""ICC colour profiles: read from JPEG/PNG/WebP files, embed into encoded JPEG/PNG/WebP bytes.

OpenCV decodes pixel values and writes none of a file's metadata. A phone photo tagged
Display P3 whose result comes back untagged is shown as sRGB by colour-managed viewers:
duller and shifted. The profile is copied byte for byte (the pixels keep their colour space,
only their sharpness changes); nothing here interprets it.
"""

from __future__ import annotations

import zlib

import numpy as np

ICC_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")  # the outputs this module can tag
_JPEG_ICC = b"ICC_PROFILE\x00"
_JPEG_ICC_CHUNK = 65535 - 2 - len(_JPEG_ICC) - 2  # segment length field, tag, sequence bytes
MAX_ICC_BYTES = 255 * _JPEG_ICC_CHUNK  # what a JPEG can carry (16.7 MB; real profiles: 0.5-600 kB)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_icc(data: bytes | np.ndarray) -> bytes | None:
    """The embedded ICC profile of JPEG or PNG bytes, or None (none, other format, damaged,
    or not a well-formed profile). Never raises: a bad profile is no profile."""
    view = memoryview(data).cast("B")
    if bytes(view[:3]) == b"\xff\xd8\xff":
        return _checked(_jpeg_icc(view))
    if bytes(view[:8]) == _PNG_SIGNATURE:
        return _checked(_png_icc(view))
    if bytes(view[:4]) == b"RIFF" and bytes(view[8:12]) == b"WEBP":
        return _checked(_webp_chunk(view, b"ICCP"))
    return None


def _checked(profile: bytes | None) -> bytes | None:
    # An ICC header: its own size first, the 'acsp' signature at 36 (ICC.1, section 7.2).
    if (profile is None or not 128 <= len(profile) <= MAX_ICC_BYTES or profile[36:40] != b"acsp"
            or int.from_bytes(profile[:4], "big") != len(profile)):
        return None
    return profile


def colour_space(profile: bytes) -> str:
    """The profile's data colour space: 'RGB', 'GRAY', 'CMYK', ... (header bytes 16-19)."""
    return profile[16:20].decode("latin-1").strip()


def _jpeg_icc(view: memoryview) -> bytes | None:
    # APP2 "ICC_PROFILE" segments, each numbered (1-based) of the same count, before the scan.
    chunks: dict[int, bytes] = {}
    counts = set()
    pos = 2
    while pos + 4 <= len(view) and view[pos] == 0xFF:
        marker, length = view[pos + 1], int.from_bytes(view[pos + 2:pos + 4], "big")
        if marker == 0xDA or length < 2:  # start of scan: no more metadata
            break
        if pos + 2 + length > len(view):
            return None  # truncated segment
        body = bytes(view[pos + 4:pos + 2 + length])
        if marker == 0xE2 and body.startswith(_JPEG_ICC) and len(body) > len(_JPEG_ICC) + 2:
            number, count = body[len(_JPEG_ICC)], body[len(_JPEG_ICC) + 1]
            if number in chunks:
                return None  # two segments claim the same place
            chunks[number] = body[len(_JPEG_ICC) + 2:]
            counts.add(count)
        pos += 2 + length
    if not chunks or counts != {len(chunks)} or sorted(chunks) != list(range(1, len(chunks) + 1)):
        return None  # none, or a sequence with gaps: better no profile than a broken one
    return b"".join(chunks[i] for i in sorted(chunks))


def _png_icc(view: memoryview) -> bytes | None:
    pos = 8
    while pos + 12 <= len(view):
        length, kind = int.from_bytes(view[pos:pos + 4], "big"), bytes(view[pos + 4:pos + 8])
        if kind == b"iCCP":
            body = bytes(view[pos + 8:pos + 8 + length])
            crc = int.from_bytes(view[pos + 8 + length:pos + 12 + length], "big")
            if len(body) != length or zlib.crc32(kind + body) != crc:
                return None  # truncated or damaged chunk
            name_end = body.find(b"\x00")
            if name_end < 0 or name_end + 2 > len(body) or body[name_end + 1] != 0:
                return None  # no name terminator, or not zlib (the only method PNG defines)
            inflate = zlib.decompressobj()
            try:  # bounded: a small chunk must not inflate to gigabytes
                profile = inflate.decompress(body[name_end + 2:], MAX_ICC_BYTES + 1)
            except zlib.error:
                return None
            return None if inflate.unconsumed_tail else profile
        if kind in (b"IDAT", b"IEND"):
            break  # iCCP must come before the image data
        pos += 12 + length
    return None


def _webp_chunk(view: memoryview, wanted: bytes) -> bytes | None:
    """The first top-level chunk of kind ``wanted`` of a RIFF WebP file; only it is copied."""
    pos = 12
    while pos + 8 <= len(view):
        kind, length = bytes(view[pos:pos + 4]), int.from_bytes(view[pos + 4:pos + 8], "little")
        if pos + 8 + length > len(view):
            return None  # truncated
        if kind == wanted:
            return bytes(view[pos + 8:pos + 8 + length])
        pos += 8 + length + (length & 1)
    return None


def embed_icc(encoded: bytes, icc: bytes) -> bytes:
    """JPEG, PNG or WebP bytes (as OpenCV encodes them: untagged) with ``icc`` embedded."""
    if encoded[:3] == b"\xff\xd8\xff":
        return _jpeg_with_icc(encoded, icc)
    if encoded[:8] == _PNG_SIGNATURE:
        return _png_with_icc(encoded, icc)
    if encoded[:4] == b"RIFF" and encoded[8:12] == b"WEBP":
        return _webp_with_icc(encoded, icc)
    raise ValueError("embed_icc takes JPEG, PNG or WebP bytes")


def _jpeg_with_icc(encoded: bytes, icc: bytes) -> bytes:
    pieces = [icc[i:i + _JPEG_ICC_CHUNK] for i in range(0, len(icc), _JPEG_ICC_CHUNK)]
    if len(pieces) > 255:
        raise ValueError(f"an ICC profile of {len(icc)} bytes does not fit a JPEG's 255 segments "
                         f"(at most {MAX_ICC_BYTES})")
    segments = b"".join(
        b"\xff\xe2" + (2 + len(_JPEG_ICC) + 2 + len(piece)).to_bytes(2, "big") + _JPEG_ICC
        + bytes([i + 1, len(pieces)]) + piece for i, piece in enumerate(pieces))
    # After SOI and the JFIF APP0 that must follow it directly.
    pos = 2
    if encoded[2:4] == b"\xff\xe0":
        pos = 4 + int.from_bytes(encoded[4:6], "big")
    return encoded[:pos] + segments + encoded[pos:]


def _png_with_icc(encoded: bytes, icc: bytes) -> bytes:
    body = b"icc\x00\x00" + zlib.compress(icc)
    chunk = len(body).to_bytes(4, "big") + b"iCCP" + body + zlib.crc32(b"iCCP" + body).to_bytes(4, "big")
    ihdr_end = 8 + 12 + int.from_bytes(encoded[8:12], "big")  # IHDR is always first
    return encoded[:ihdr_end] + chunk + encoded[ihdr_end:]


def _riff_chunk(kind: bytes, body: bytes) -> bytes:
    return kind + len(body).to_bytes(4, "little") + body + b"\x00" * (len(body) & 1)


def _webp(chunks: bytes) -> bytes:
    return b"RIFF" + (4 + len(chunks)).to_bytes(4, "little") + b"WEBP" + chunks


def _webp_with_icc(encoded: bytes, icc: bytes) -> bytes:
    # A profile needs the extended format: VP8X (flags, canvas size), ICCP, then the image
    # chunk. OpenCV writes a simple file: one VP8L (lossless) or VP8 (lossy) chunk.
    kind = encoded[12:16]
    body = encoded[20:20 + int.from_bytes(encoded[16:20], "little")]
    if kind == b"VP8X":  # already extended (lossy with alpha): flag the profile, ICCP right after
        end = 20 + len(body) + (len(body) & 1)
        return _webp(_riff_chunk(b"VP8X", bytes([body[0] | 0x20]) + body[1:]) + _riff_chunk(b"ICCP", icc)
                     + encoded[end:])
    if kind == b"VP8L":  # 0x2f, then 14 bits width-1, 14 bits height-1, 1 bit alpha (LSB first)
        bits = int.from_bytes(body[1:5], "little")
        width, height, alpha = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, (bits >> 28) & 1
    elif kind == b"VP8 ":  # frame tag (3 bytes), start code (3), then 14-bit width and height
        width, height, alpha = (int.from_bytes(body[6:8], "little") & 0x3FFF,
                                int.from_bytes(body[8:10], "little") & 0x3FFF, 0)
    else:
        raise ValueError(f"embed_icc: a WebP with a {kind!r} chunk first is not one OpenCV writes")
    flags = 0x20 | (0x10 if alpha else 0)  # ICC profile, alpha
    vp8x = bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return _webp(_riff_chunk(b"VP8X", vp8x) + _riff_chunk(b"ICCP", icc) + encoded[12:])

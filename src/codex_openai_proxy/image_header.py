"""The width and height an image declares in its header, for the formats Codex reads (pure).

Codex decodes every image it is given in full before scaling it down (to 2048x768 at most), so
what an image costs it is its pixel count, not its file size: a 2.6 MB PNG of 30000x30000
pixels made the Codex child take 3.4 GB. Reading the header is enough to know that cost before
anything is decoded or any child starts.

Only the header is read, never the image data; a header that cannot be read gives None (the
image is then refused: Codex could not decode it either).

* PNG: the IHDR chunk, which must come first.
* JPEG: the first start-of-frame marker (SOF0-SOF15 but DHT, JPG and DAC), walking the
  segments before it by their lengths.
* GIF: the logical screen descriptor (the canvas every frame is drawn on).
* WebP: the VP8 (lossy) frame header, the VP8L (lossless) header, or the VP8X (extended) canvas.
"""

from __future__ import annotations

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: JPEG start-of-frame markers: C0-CF, except C4 (DHT), C8 (JPG) and CC (DAC).
JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: Markers that stand alone, without a length: RST0-RST7, TEM (and SOI).
JPEG_STANDALONE_MARKERS = frozenset({*range(0xD0, 0xD8), 0x01, 0xD8})
#: Markers after which no frame header may come: EOI, and SOS (the image data starts).
JPEG_END_MARKERS = frozenset({0xD9, 0xDA})


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of a PNG, JPEG, GIF or WebP image; None if unreadable."""
    if data.startswith(PNG_SIGNATURE):
        return _png_size(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return _gif_size(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    return None


def _png_size(data: bytes) -> tuple[int, int] | None:
    # signature (8), then the IHDR chunk: length (4), "IHDR", width (4), height (4), big-endian.
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    return _positive(_be(data, 16, 4), _be(data, 20, 4))


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    index = 2
    while index + 4 <= len(data):
        if data[index] != 0xFF:
            return None
        marker = data[index + 1]
        if marker == 0xFF:  # a fill byte before the marker
            index += 1
            continue
        if marker in JPEG_STANDALONE_MARKERS:
            index += 2
            continue
        if marker in JPEG_END_MARKERS:
            return None
        length = _be(data, index + 2, 2)
        if length < 2:
            return None
        if marker in JPEG_SOF_MARKERS:
            # length (2), precision (1), height (2), width (2)
            if index + 9 > len(data):
                return None
            return _positive(_be(data, index + 7, 2), _be(data, index + 5, 2))
        index += 2 + length
    return None


def _gif_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 10:
        return None
    return _positive(_le(data, 6, 2), _le(data, 8, 2))


def _webp_size(data: bytes) -> tuple[int, int] | None:
    # RIFF header (12), then the first chunk: fourcc (4), size (4), payload from offset 20.
    chunk = data[12:16]
    if chunk == b"VP8 ":
        # frame tag (3), start code 9d 01 2a, then 14-bit width and height (2 scale bits each).
        if len(data) < 30 or data[23:26] != b"\x9d\x01\x2a":
            return None
        return _positive(_le(data, 26, 2) & 0x3FFF, _le(data, 28, 2) & 0x3FFF)
    if chunk == b"VP8L":
        # signature 0x2f, then width-1 and height-1 in 14 bits each, little-endian bit order.
        if len(data) < 25 or data[20] != 0x2F:
            return None
        bits = _le(data, 21, 4)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        # flags (1), reserved (3), canvas width-1 (3), canvas height-1 (3), little-endian.
        if len(data) < 30:
            return None
        return _le(data, 24, 3) + 1, _le(data, 27, 3) + 1
    return None


def _be(data: bytes, start: int, size: int) -> int:
    return int.from_bytes(data[start:start + size], "big")


def _le(data: bytes, start: int, size: int) -> int:
    return int.from_bytes(data[start:start + size], "little")


def _positive(width: int, height: int) -> tuple[int, int] | None:
    # A zero dimension is no image Codex can decode (a JPEG's height of 0 defers it to a DNL
    # marker, which decoders do not take).
    return (width, height) if width > 0 and height > 0 else None

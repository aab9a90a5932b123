"""Unit tests for image_header.py: the size an image declares, read without decoding it."""

from __future__ import annotations

import pytest

from codex_openai_proxy.image_header import image_size

from conftest import gif_header, jpeg_header, png_header, webp_header

SIZES = [(1, 1), (640, 480), (30000, 30000), (16383, 16383)]


@pytest.mark.parametrize(("width", "height"), SIZES)
@pytest.mark.parametrize("header", [png_header, jpeg_header, gif_header],
                         ids=["png", "jpeg", "gif"])
def test_the_declared_size_is_read(header, width, height) -> None:
    assert image_size(header(width, height)) == (width, height)


@pytest.mark.parametrize(("width", "height"), [(1, 1), (640, 480), (16383, 16383)])
@pytest.mark.parametrize("kind", ["VP8 ", "VP8L", "VP8X"])
def test_webp_sizes_in_each_of_its_three_headers(kind, width, height) -> None:
    # 16383 is the most the 14 bits of VP8 and VP8L hold; VP8X goes further, below.
    assert image_size(webp_header(width, height, kind)) == (width, height)


def test_png_sizes_beyond_what_other_formats_hold() -> None:
    assert image_size(png_header(2**31 - 1, 7)) == (2**31 - 1, 7)


def test_webp_extended_canvas_up_to_24_bits() -> None:
    assert image_size(webp_header(2**24, 2**24, "VP8X")) == (2**24, 2**24)


def test_jpeg_frame_after_other_segments_fill_bytes_and_restart_markers() -> None:
    # EXIF (APP1) and a comment before the frame header, padding 0xFF bytes, a standalone
    # marker: the walk goes by segment lengths and finds the progressive SOF2.
    exif = b"\xff\xe1\x00\x08Exif\x00\x00"
    comment = b"\xff\xfe\x00\x05hi!"
    sof2 = b"\xff\xc2\x00\x0b\x08\x01\x2c\x02\x58\x01\x01\x11\x00"
    data = b"\xff\xd8" + exif + b"\xff\xff" + comment + b"\xff\xd0" + sof2 + b"\xff\xd9"
    assert image_size(data) == (600, 300)


def test_jpeg_huffman_table_is_no_frame_header() -> None:
    # DHT (C4) is in the SOF range of markers but is not one: skipped, the SOF0 after it read.
    dht = b"\xff\xc4\x00\x04\x00\x00"
    data = jpeg_header(20, 10)
    assert image_size(data[:2] + dht + data[2:]) == (20, 10)


@pytest.mark.parametrize("data", [
    b"",
    b"\x89PNG\r\n\x1a\n",  # no IHDR
    png_header(10, 10)[:20],  # IHDR cut short
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIDAT" + bytes(8),  # IHDR is not first
    png_header(0, 10),
    png_header(10, 0),
    jpeg_header(10, 10)[:22],  # the frame header cut short
    jpeg_header(10, 0),  # height deferred to a DNL marker
    b"\xff\xd8\xff\xda\x00\x02" + jpeg_header(10, 10)[2:],  # image data before any frame
    b"\xff\xd8\xff\xe0\x00\x01",  # a segment length below its own size
    b"\xff\xd8\x00\x00\x00\x00",  # no marker where one must be
    b"GIF89a\x0a",
    gif_header(0, 5),
    b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(4),
    b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(16),  # no VP8 start code
    b"RIFF\x00\x00\x00\x00WEBPVP8L\x00\x00\x00\x00\x00" + bytes(4),  # no VP8L signature
    b"RIFF\x00\x00\x00\x00WEBPALPH" + bytes(20),
    b"BM" + bytes(40),
])
def test_unreadable_or_empty_headers_give_none(data: bytes) -> None:
    assert image_size(data) is None

"""Limits that keep one request from taking the server down.

An image's pixel count is read from its header, before anything decodes
it: a 100 KB PNG can claim 50,000 x 50,000 pixels (a decompression bomb),
and decoding it would allocate 10 GB.
"""

import dataclasses
import struct

from mmkeras.serving.errors import ServingError


@dataclasses.dataclass
class ServingLimits:
    max_request_bytes: int = 64 * 1024 * 1024
    max_image_pixels: int = 40_000_000


# The BMP info-header sizes that exist; text starting with "BM" has none of them.
_BMP_HEADER_SIZES = {12, 40, 52, 56, 64, 108, 124}
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data):
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        if marker == 0xD8 or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            i += 2
            continue
        if marker == 0xDA:  # image data starts before any frame header: not a valid JPEG
            return None
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    return None


def image_size(data):
    """(width, height) from a PNG, JPEG, GIF or BMP header; None for other bytes."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:2] == b"BM" and len(data) >= 26 and struct.unpack("<I", data[14:18])[0] in _BMP_HEADER_SIZES:
        if struct.unpack("<I", data[14:18])[0] == 12:
            return struct.unpack("<HH", data[18:22])
        width, height = struct.unpack("<ii", data[18:26])
        return abs(width), abs(height)
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    return None


def check_image_sizes(name, values, limits):
    """Refuses any image among `values` (bytes) larger than the pixel limit."""
    for row, value in enumerate(values):
        size = image_size(value) if isinstance(value, bytes) else None
        if size and size[0] * size[1] > limits.max_image_pixels:
            raise ServingError(
                f"input `{name}`, row {row}: the image is {size[0]} x {size[1]} = "
                f"{size[0] * size[1]:,} pixels, "
                f"more than this server's limit of {limits.max_image_pixels:,} (--max-image-pixels); "
                "resize it before sending."
            )

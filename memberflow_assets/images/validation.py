"""Is this upload an acceptable image? Decided from the bytes, never from a name or a declared type. No Dagster.

`inspect_image` reads only what is cheap: the magic bytes, the header Pillow parses on open (format,
dimensions — without decoding a pixel), and the file's framing (JPEG segments up to the scan and an
end-of-image marker after it, PNG chunk chain to IEND, the RIFF length of WebP, TIFF strip/tile
extents, the GIF trailer). That catches unsupported types, decompression bombs and truncated bodies in
well under a millisecond for a 200 KB JPEG. Corruption *inside* the compressed data is only found by a
full decode, which processing does (the image is then marked `rejected` in the registry) — see
docs/images_ingestion.md, "Truncated and corrupt images".
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

from PIL import Image, TiffImagePlugin

# Pillow format name -> (MIME type, landing file extension)
ACCEPTED_FORMATS = {
    "JPEG": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "WEBP": ("image/webp", "webp"),
    "GIF": ("image/gif", "gif"),
    "TIFF": ("image/tiff", "tif"),
}
_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),  # BigTIFF
    (b"MM\x00+", "TIFF"),
)
_OBJECT_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")  # a memory address says nothing to a client
DEFAULT_MAX_PIXELS = 100_000_000  # width x height from the header; ~400 MB decoded as RGBA


class ImageRejected(Exception):
    """The bytes are not an acceptable image. `status` is the HTTP status the API answers with."""

    def __init__(self, status: int, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


def unsupported(detail: str) -> ImageRejected:
    return ImageRejected(415, "unsupported_type", detail)


def corrupt(detail: str) -> ImageRejected:
    return ImageRejected(422, "corrupt", detail)


def truncated(detail: str) -> ImageRejected:
    return ImageRejected(422, "truncated", detail)


@dataclass(frozen=True)
class ImageFacts:
    format: str  # Pillow format name
    content_type: str
    ext: str
    width: int
    height: int


def sniff_format(data: bytes) -> str | None:
    """The accepted format the magic bytes announce, or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for magic, fmt in _MAGIC if data.startswith(magic)), None)


def inspect_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageFacts:
    """Format and size of an acceptable image; raises ImageRejected (415, 422) for anything else."""
    if not data:
        raise ImageRejected(400, "empty", "the body is empty")
    announced = sniff_format(data)
    if announced is None:
        raise unsupported("the content is not a JPEG, PNG, WebP, GIF or TIFF image")
    try:
        with Image.open(io.BytesIO(data), formats=[announced]) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise _too_many_pixels(width, height, max_pixels)
            _check_complete(announced, data, image)
    except ImageRejected:
        raise
    except Image.DecompressionBombError as error:  # Pillow's own (global) limit, checked on open
        raise ImageRejected(422, "too_many_pixels", str(error)) from error
    except Exception as error:  # whatever a plugin raises on a bad header: never a crash, always a 422
        message = _OBJECT_REPR.sub("the upload", str(error))  # e.g. "<_io.BytesIO object at 0x7f...>"
        raise corrupt(f"{announced} header cannot be read: {type(error).__name__}: {message}") from error
    content_type, ext = ACCEPTED_FORMATS[announced]
    return ImageFacts(announced, content_type, ext, width, height)


def _too_many_pixels(width: int, height: int, max_pixels: int) -> ImageRejected:
    return ImageRejected(
        422, "too_many_pixels", f"{width}x{height} = {width * height:,} pixels exceeds the limit of {max_pixels:,}"
    )


def _check_complete(fmt: str, data: bytes, image: Image.Image) -> None:
    if fmt == "JPEG":
        _check_jpeg(data)
    elif fmt == "PNG":
        _check_png(data)
    elif fmt == "WEBP":
        declared = int.from_bytes(data[4:8], "little") + 8
        if declared > len(data):
            raise truncated(f"WebP declares {declared} bytes, the body has {len(data)}")
    elif fmt == "GIF":
        if not data.rstrip(b"\x00").endswith(b";"):
            raise truncated("GIF has no trailer")
    elif fmt == "TIFF":
        _check_tiff(data, image)


def _check_jpeg(data: bytes) -> None:
    """Walk the marker segments to the first start-of-scan, then require an end-of-image after it.

    Walking (rather than searching for FF DA) skips an EXIF thumbnail, which has its own scan and EOI.
    Inside entropy-coded data 0xFF is always followed by 0x00 or a restart marker, so an FF D9 after
    the first scan can only be the image's own end.
    """
    position = 2
    while True:
        if position + 4 > len(data):
            raise truncated("JPEG ends before its image data")
        if data[position] != 0xFF:
            raise corrupt(f"JPEG marker expected at byte {position}")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            position += 2
        elif marker == 0xD9:
            raise corrupt("JPEG ends before its image data")
        elif marker == 0xDA:
            break
        else:
            position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    if data.rfind(b"\xff\xd9", position) == -1:
        raise truncated("JPEG has no end-of-image marker after its image data")


def _check_png(data: bytes) -> None:
    position = 8
    while position + 8 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        position += 12 + length
        if kind == b"IEND":
            if position > len(data):
                break
            return
    raise truncated("PNG ends before its IEND chunk")


def _check_tiff(data: bytes, image: Image.Image) -> None:
    tags = image.tag_v2 if isinstance(image, TiffImagePlugin.TiffImageFile) else {}
    offsets = tags.get(273) or tags.get(324)  # StripOffsets / TileOffsets
    counts = tags.get(279) or tags.get(325)  # StripByteCounts / TileByteCounts
    if not offsets or not counts:
        raise corrupt("TIFF has no strip or tile offsets")
    offsets = offsets if isinstance(offsets, tuple) else (offsets,)
    counts = counts if isinstance(counts, tuple) else (counts,)
    end = max(offset + count for offset, count in zip(offsets, counts, strict=False))
    if end > len(data):
        raise truncated(f"TIFF image data extends to byte {end}, the body has {len(data)}")

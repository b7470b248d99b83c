"""Image bytes for tests and benchmarks: real encodings made with Pillow, and broken ones; and landing them
as the ingestion contract says (image bytes, then the sidecar)."""

import io
import struct
import uuid
import zlib
from datetime import datetime
from functools import cache

import numpy as np
from PIL import ExifTags, Image

from memberflow_assets.images.layout import Sidecar
from memberflow_assets.images.processing.one_image import sha256_hex
from memberflow_assets.zones import Zones

FORMAT_INFO = {  # Pillow format -> (content type, extension), as the ingestion API records them
    "JPEG": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "WEBP": ("image/webp", "webp"),
    "GIF": ("image/gif", "gif"),
    "TIFF": ("image/tiff", "tif"),
    "BMP": ("image/bmp", "bmp"),
}


def encode(image: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def picture(width: int = 320, height: int = 240, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """A photo-like picture: a gradient with noise, and a red block in the top-left corner (to tell which
    way up an output is)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width, 1), y * 255 // max(height, 1), (x + y + seed * 40) % 256], axis=-1)
    noisy = (base + rng.integers(0, 24, base.shape)).clip(0, 255).astype(np.uint8)
    noisy[: height // 4, : width // 4] = (255, 0, 0)
    image = Image.fromarray(noisy, "RGB")
    return image if mode == "RGB" else image.convert(mode)


def jpeg(width: int = 320, height: int = 240, seed: int = 0, **params) -> bytes:
    return encode(picture(width, height, seed), "JPEG", quality=85, **params)


def exif_with_gps(orientation: int = 1) -> Image.Exif:
    """EXIF a phone would write: orientation, make, serial number and a GPS position."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.Make] = "PhoneMaker"
    exif[ExifTags.Base.BodySerialNumber] = "SN-123456"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (1.0, 17.0, 30.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (103.0, 51.0, 0.0)
    return exif


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth gradients plus noise: compresses like a photo, not like a flat colour."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width, 1), y * 255 // max(height, 1), (x + y) * 127 // max(width + height, 1)], -1)
    pixels = np.clip(base + rng.normal(0, 24, (height, width, 3)), 0, 255).astype("uint8")
    return Image.fromarray(pixels, "RGB")


def small_image(fmt: str, seed: int = 0) -> bytes:
    """A small valid image in `fmt` (JPEG, PNG, WEBP, GIF, TIFF, BMP)."""
    return encode(noise_image(64, 48, seed), fmt)


@cache
def jpeg_of_about(size_bytes: int, seed: int = 0) -> bytes:
    """A JPEG of roughly `size_bytes` (within ~10%)."""
    width = 640
    height = 32
    while True:
        data = encode(noise_image(width, height, seed), "JPEG", quality=85)
        if len(data) >= size_bytes * 0.95:
            return data
        height = max(height + 8, int(height * size_bytes / len(data)))


def unique_jpeg(base: bytes, number: int) -> bytes:
    """`base` with a JPEG comment segment naming `number` after SOI: distinct bytes, same picture."""
    comment = f"memberflow test image {number}".encode()
    return base[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + base[2:]


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb by its header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def jpeg_with_exif_thumbnail() -> bytes:
    """A JPEG whose EXIF segment carries a complete small JPEG (its own SOS and EOI), as thumbnails do."""
    thumbnail = encode(noise_image(32, 24, 7), "JPEG")
    exif = Image.Exif()
    exif[0x010E] = "with thumbnail"
    raw_exif = exif.tobytes()
    main = encode(noise_image(320, 240, 8), "JPEG", exif=raw_exif + thumbnail)
    assert main.count(b"\xff\xd9") >= 2
    return main


def _scan_bounds(jpeg: bytes) -> tuple[int, int]:
    """Where the (last) scan's entropy-coded data starts and ends (before EOI)."""
    scan = jpeg.rindex(b"\xff\xda")
    return scan + 2 + int.from_bytes(jpeg[scan + 2 : scan + 4], "big"), jpeg.rindex(b"\xff\xd9")


def jpeg_with_garbage_scan(jpeg: bytes, seed: int = 0) -> bytes:
    """`jpeg` with its entropy-coded data replaced by random bytes free of 0xFF: every marker and length
    is intact (validation accepts it), only a decoder notices that the data makes no sense."""
    start, end = _scan_bounds(jpeg)
    garbage = np.random.default_rng(seed).integers(0, 255, end - start, dtype=np.uint8).tobytes()  # 0..254
    return jpeg[:start] + garbage + jpeg[end:]


def jpeg_with_cut_scan(jpeg: bytes) -> bytes:
    """`jpeg` with the second half of its entropy-coded data missing, but an end-of-image marker."""
    start, end = _scan_bounds(jpeg)
    return jpeg[: (start + end) // 2] + jpeg[end:]


def jpeg_with_empty_segments(jpeg: bytes, count: int) -> bytes:
    """`jpeg` with `count` empty APP1 segments (4 bytes each) after SOI: a valid structure, and one that
    Pillow's header parser walks segment by segment in Python (~12 µs each)."""
    return jpeg[:2] + b"\xff\xe1\x00\x02" * count + jpeg[2:]


def land_files(
    zones: Zones,
    data: bytes,
    received_at: datetime,
    *,
    client: str,
    fmt: str = "JPEG",
    image_id: str | None = None,
    source: str = "api",
    with_sidecar: bool = True,
) -> Sidecar:
    """Land one image's files in landing/: its bytes, then (unless `with_sidecar` is false) its sidecar."""
    content_type, ext = FORMAT_INFO[fmt]
    sidecar = Sidecar(
        image_id=image_id or uuid.uuid4().hex,
        source=source,
        client=client,
        received_at=received_at.isoformat(),
        sha256=sha256_hex(data),
        size_bytes=len(data),
        content_type=content_type,
        format=fmt,
        ext=ext,
    )
    zones.write_bytes(sidecar.image_relpath, data)
    if with_sidecar:
        zones.write_bytes(sidecar.relpath, sidecar.to_json())
    return sidecar

"""The image processing code (memberflow_assets.images.processing.one_image) on good and bad images, no Dagster."""

import io
import struct
import zlib
from datetime import UTC, datetime

import numpy as np
import pytest
from PIL import ExifTags, Image

from memberflow_assets.images.layout import Sidecar
from memberflow_assets.images.processing import one_image
from memberflow_assets.testing.images import (
    encode,
    exif_with_gps,
    jpeg,
    jpeg_with_cut_scan,
    jpeg_with_garbage_scan,
    picture,
)
from memberflow_assets_tests.images.helpers import CLIENT

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def sidecar_for(data: bytes, fmt: str = "JPEG", **changes) -> Sidecar:
    fields = {
        "image_id": "img-1",
        "source": "kafka",
        "client": CLIENT,
        "received_at": "2026-11-20T09:15:00+00:00",
        "sha256": one_image.sha256_hex(data),
        "size_bytes": len(data),
        "content_type": "image/jpeg",
        "format": fmt,
        "ext": "jpg",
    }
    return Sidecar(**{**fields, **changes})


def process(data: bytes, **changes) -> one_image.ProcessedImage:
    return one_image.process_image(data, sidecar_for(data, **changes), NOW)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that announces width x height pixels but carries no pixel data (a decompression bomb's header)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_a_rotated_photo_with_gps_gives_an_upright_thumbnail_without_any_exif():
    # Stored 640x480 with EXIF orientation 6: a viewer shows it turned 90° clockwise, 480 wide and 640 high.
    data = jpeg(640, 480, exif=exif_with_gps(orientation=6).tobytes())

    result = process(data)

    row = result.row
    assert row["status"] == "processed" and row["error"] is None
    assert (row["format"], row["mode"], row["width"], row["height"], row["orientation"]) == ("JPEG", "RGB", 480, 640, 6)
    assert row["bytes"] == len(data) and row["sha256"] == one_image.sha256_hex(data)
    assert row["gps_removed"] is True
    assert len(row["phash"]) == 16 and int(row["phash"], 16) >= 0
    assert (row["source"], row["client"], row["received_at"]) == (
        "kafka",
        CLIENT,
        datetime(2026, 11, 20, 9, 15, tzinfo=UTC),
    )
    with Image.open(io.BytesIO(result.thumbnail)) as thumbnail:
        assert thumbnail.format == "JPEG" and thumbnail.size == (192, 256)
        assert len(thumbnail.getexif()) == 0 and "xmp" not in thumbnail.info
        # The red block was top-left as stored; turned clockwise it is top-right as shown.
        top_right = thumbnail.convert("RGB").getpixel((thumbnail.width - 10, 10))
        top_left = thumbnail.convert("RGB").getpixel((10, 10))
        assert top_right[0] > 200 and top_right[1] < 60 and top_left[0] < 200
    assert row["thumbnail_bytes"] == len(result.thumbnail)
    assert b"SN-123456" not in result.thumbnail and b"PhoneMaker" not in result.thumbnail
    assert one_image.inspect_thumbnail(result.thumbnail).has_location is False


def test_gps_in_xmp_is_detected_and_not_carried_over():
    xmp = b'<x:xmpmeta><rdf:Description exif:GPSLatitude="1,17.5N" exif:GPSLongitude="103,51E"/></x:xmpmeta>'
    data = encode(picture(), "JPEG", xmp=xmp)
    with Image.open(io.BytesIO(data)) as original:
        assert one_image.has_location(original, one_image.readable_exif(original))

    result = process(data)

    assert result.row["gps_removed"] is True
    assert b"GPSLatitude" not in result.thumbnail


@pytest.mark.parametrize(
    ("fmt", "image", "params"),
    [
        ("PNG", picture(900, 300, mode="RGBA"), {}),
        ("GIF", picture(300, 900, mode="P"), {}),
        ("WEBP", picture(1000, 800), {"quality": 80}),
        ("TIFF", picture(600, 600), {}),
        ("JPEG", picture(800, 600, mode="CMYK"), {}),
        ("JPEG", picture(2000, 1000, mode="L"), {}),
        ("PNG", picture(100, 60), {}),  # smaller than a thumbnail: never enlarged
    ],
)
def test_every_supported_format_and_mode_is_processed(fmt, image, params):
    data = encode(image, fmt, **params)

    result = process(data, fmt=fmt)

    row = result.row
    assert row["status"] == "processed", row["error_detail"]
    assert (row["format"], row["mode"], row["width"], row["height"]) == (fmt, image.mode, *image.size)
    with Image.open(io.BytesIO(result.thumbnail)) as thumbnail:
        thumbnail.load()
        expected_long_side = min(max(image.size), one_image.THUMBNAIL_SIZE)
        assert max(thumbnail.size) == expected_long_side
        assert thumbnail.mode in ("RGB", "L")


def truncated_jpeg() -> bytes:
    data = jpeg(640, 480)
    return data[: len(data) * 2 // 3]


def broken_jpeg_table() -> bytes:
    """A JPEG whose quantisation table segment has an impossible length."""
    data = bytearray(jpeg(640, 480))
    table = data.find(b"\xff\xdb")
    data[table + 2 : table + 4] = b"\x00\x02"
    return bytes(data)


def truncated_png() -> bytes:
    data = encode(picture(640, 480), "PNG")
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", "not_an_image"),
        (b"Dear team, please find the picture attached." * 20, "not_an_image"),
        (b"\xff\xd8\xff\xe0" + bytes(2000), "not_an_image"),  # a JPEG signature, then nothing sensible
        (broken_jpeg_table(), "corrupt"),
        (jpeg_with_garbage_scan(jpeg(640, 480)), "corrupt"),  # Pillow alone: "processed", a garbage thumbnail
        (jpeg_with_garbage_scan(encode(picture(640, 480), "JPEG", progressive=True)), "corrupt"),
        (jpeg_with_garbage_scan(encode(picture(320, 240, mode="L"), "JPEG")), "corrupt"),
        (jpeg_with_garbage_scan(encode(picture(320, 240, mode="CMYK"), "JPEG")), "corrupt"),
        (jpeg_with_cut_scan(jpeg(640, 480)), "corrupt"),  # ends early, but with an end-of-image marker
        (truncated_jpeg(), "truncated"),
        (truncated_png(), "truncated"),
        (png_header_only(20_000, 20_000), "too_many_pixels"),  # Pillow's DecompressionBombError (> 2x limit)
        (png_header_only(11_000, 10_000), "too_many_pixels"),  # above the limit, below Pillow's error
        (encode(picture(64, 64), "BMP"), "unsupported_format"),
    ],
    ids=[
        "empty",
        "text",
        "jpeg-signature-only",
        "bad-jpeg-table",
        "garbage-entropy-data",
        "garbage-entropy-data-progressive",
        "garbage-entropy-data-grey",
        "garbage-entropy-data-cmyk",
        "cut-scan-with-eoi",
        "truncated-jpeg",
        "truncated-png",
        "bomb",
        "over-limit",
        "bmp",
    ],
)
def test_bad_images_become_rejected_rows_never_exceptions(data, error):
    result = process(data)

    assert result.thumbnail is None
    assert result.row["status"] == "rejected"
    assert result.row["error"] == error, result.row["error_detail"]
    assert result.row["error_detail"]
    assert result.row["image_id"] == "img-1" and result.row["bytes"] == len(data)


def test_bytes_that_differ_from_the_sidecar_are_rejected():
    data = jpeg()
    result = one_image.process_image(data, sidecar_for(jpeg(seed=5)), NOW)
    assert (result.row["status"], result.row["error"]) == ("rejected", "checksum_mismatch")
    assert result.thumbnail is None


def test_the_perceptual_hash_matches_near_copies_and_separates_different_pictures():
    original = process(jpeg(800, 600, seed=1)).row["phash"]
    recompressed = process(encode(picture(800, 600, seed=1), "JPEG", quality=40)).row["phash"]
    resized = process(encode(picture(800, 600, seed=1).resize((400, 300)), "PNG"), fmt="PNG").row["phash"]
    different = process(encode(picture(800, 600, seed=1).transpose(Image.Transpose.ROTATE_180), "JPEG")).row["phash"]

    assert one_image.hamming_distance(original, recompressed) <= 4
    assert one_image.hamming_distance(original, resized) <= 4
    assert one_image.hamming_distance(original, different) >= 20


def test_a_thumbnail_with_gps_or_that_does_not_decode_is_noticed():
    with_gps = encode(picture(), "JPEG", exif=exif_with_gps().tobytes())
    assert one_image.inspect_thumbnail(with_gps).has_location
    assert one_image.inspect_thumbnail(with_gps).has_exif
    broken = one_image.inspect_thumbnail(with_gps[: len(with_gps) // 2])
    assert broken.undecodable and "truncated" in broken.undecodable
    clean = one_image.inspect_thumbnail(process(jpeg()).thumbnail)
    assert (clean.undecodable, clean.has_location, clean.has_exif) == (None, False, False)


def test_the_orientation_tag_alone_is_not_personal_but_is_applied():
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 3  # upside down
    result = process(jpeg(400, 200, exif=exif.tobytes()))
    assert result.row["gps_removed"] is False and result.row["orientation"] == 3
    with Image.open(io.BytesIO(result.thumbnail)) as thumbnail:
        bottom_right = thumbnail.convert("RGB").getpixel((thumbnail.width - 5, thumbnail.height - 5))
        assert bottom_right[0] > 200 and bottom_right[1] < 60  # the red block, turned 180°


def raw_exif(entries: list[tuple[int, int, int, bytes]]) -> bytes:
    """An EXIF block of one directory, each entry (tag, type, count, 4-byte value) exactly as given."""
    directory = struct.pack("<H", len(entries))
    directory += b"".join(struct.pack("<HHI", *entry[:3]) + entry[3] for entry in entries)
    return b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + directory + b"\x00\x00\x00\x00"


@pytest.mark.parametrize(
    ("entries", "orientation"),
    [
        # rotated, and a SHORT tag (ResolutionUnit) holding a LONG beyond 65535: rewriting the EXIF, as
        # ImageOps.exif_transpose does, raised struct.error, which failed the whole hour
        ([(274, 3, 1, struct.pack("<HH", 6, 0)), (296, 4, 1, struct.pack("<I", 100_000))], 6),
        # an orientation no picture has (the metadata column is int16): as stored
        ([(274, 3, 1, struct.pack("<HH", 40_000, 0))], 1),
    ],
    ids=["a tag beyond its type", "orientation 40000"],
)
def test_a_photo_with_crafted_exif_is_processed(entries, orientation):
    result = process(encode(picture(640, 480), "JPEG", exif=raw_exif(entries)))
    assert (result.row["status"], result.row["orientation"]) == ("processed", orientation)
    assert (result.row["width"], result.row["height"]) == ((480, 640) if orientation == 6 else (640, 480))


def test_whatever_one_image_raises_makes_it_a_rejected_row(monkeypatch):
    def unexpected(_):
        raise RuntimeError("a bug of a plugin")

    monkeypatch.setattr(one_image, "dhash", unexpected)
    result = process(jpeg(64, 48))
    assert (result.row["status"], result.row["error"]) == ("rejected", "corrupt") and result.thumbnail is None
    assert "RuntimeError" in result.row["error_detail"]


@pytest.mark.parametrize("fmt", ["JPEG", "GIF"])
def test_a_comment_in_the_original_never_reaches_the_thumbnail(fmt):
    comment = b"Owner: Jane Doe, 12 Main St, 51.5007N 0.1246W"
    result = process(encode(picture(320, 240), fmt, comment=comment), fmt=fmt)
    assert result.row["status"] == "processed" and comment not in result.thumbnail
    with Image.open(io.BytesIO(result.thumbnail)) as thumbnail:
        assert "comment" not in thumbnail.info


def test_a_multi_picture_jpeg_is_processed_as_a_jpeg():
    buffer = io.BytesIO()
    picture(320, 240).save(buffer, "MPO", save_all=True, append_images=[picture(160, 120)])
    result = process(buffer.getvalue())
    assert (result.row["status"], result.row["format"], result.row["width"]) == ("processed", "JPEG", 320)


def test_16_bit_grey_and_a_png_colour_key_give_true_thumbnails():
    ramp = Image.fromarray((np.arange(256 * 64, dtype=np.uint16).reshape(64, 256) * 4).astype(np.uint16))
    grey = process(encode(ramp, "PNG"), fmt="PNG")
    with Image.open(io.BytesIO(grey.thumbnail)) as thumbnail:
        values = np.asarray(thumbnail.convert("L"))
    assert values.min() < 20 and values.max() > 230 and (values == 255).mean() < 0.1  # scaled, not clipped

    keyed = picture(64, 64).convert("RGB")
    keyed.paste((0, 255, 1), (0, 0, 32, 32))  # the colour key: transparent
    buffer = io.BytesIO()
    keyed.save(buffer, "PNG", transparency=(0, 255, 1))
    result = process(buffer.getvalue(), fmt="PNG")
    with Image.open(io.BytesIO(result.thumbnail)) as thumbnail:
        red, green, blue = thumbnail.convert("RGB").getpixel((5, 5))
    assert min(red, green, blue) > 230  # flattened on white


def test_an_exif_too_large_to_read_is_not_read():
    """20 MB of EXIF values (a PNG's eXIf chunk) took seconds to decode: beyond MAX_EXIF_BYTES it is ignored,
    and counted as location data the outputs do not carry."""
    values = b"\x01\x00\x00\x00" * 2 * 40_000  # 40,000 RATIONALs
    entries = struct.pack("<H", 1) + struct.pack("<HHII", 0x8298, 5, 40_000, 26) + b"\x00\x00\x00\x00"
    exif = b"II*\x00" + struct.pack("<I", 8) + entries + values
    assert len(exif) > one_image.MAX_EXIF_BYTES
    result = process(encode(picture(64, 48), "PNG", exif=exif), fmt="PNG")
    assert (result.row["status"], result.row["orientation"], result.row["gps_removed"]) == ("processed", 1, True)

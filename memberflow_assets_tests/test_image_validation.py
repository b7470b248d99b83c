"""Content validation of uploads: formats by their bytes, bombs by their header, truncation by framing."""

import pytest

from memberflow_assets.images.validation import ImageRejected, inspect_image, sniff_format
from memberflow_assets_tests.image_bytes import (
    encode,
    jpeg_of_about,
    jpeg_with_exif_thumbnail,
    noise_image,
    png_claiming,
    small_image,
)


def rejection(data: bytes, **options) -> ImageRejected:
    with pytest.raises(ImageRejected) as caught:
        inspect_image(data, **options)
    return caught.value


@pytest.mark.parametrize(
    "fmt, content_type, ext",
    [
        ("JPEG", "image/jpeg", "jpg"),
        ("PNG", "image/png", "png"),
        ("WEBP", "image/webp", "webp"),
        ("GIF", "image/gif", "gif"),
        ("TIFF", "image/tiff", "tif"),
    ],
)
def test_accepted_formats_are_recognised_by_content(fmt, content_type, ext):
    facts = inspect_image(small_image(fmt))
    assert (facts.format, facts.content_type, facts.ext, facts.width, facts.height) == (fmt, content_type, ext, 64, 48)


def test_compressed_multi_strip_tiff_is_accepted():
    data = encode(noise_image(200, 300, 3), "TIFF", compression="tiff_lzw")
    assert inspect_image(data).height == 300


@pytest.mark.parametrize(
    "data",
    [
        small_image("BMP"),
        b"%PDF-1.7\n1 0 obj << >> endobj\n",
        b"this is a text file that someone named holiday.jpg\n",
        b"PK\x03\x04" + b"\0" * 100,  # a zip
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
    ],
    ids=["bmp", "pdf", "text", "zip", "svg"],
)
def test_anything_else_is_unsupported_415(data):
    error = rejection(data)
    assert (error.status, error.code) == (415, "unsupported_type")


def test_empty_body_is_400():
    assert (rejection(b"").status, rejection(b"").code) == (400, "empty")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "TIFF"])
def test_truncated_images_are_422(fmt):
    data = encode(noise_image(160, 120, 1), fmt)
    for cut in (len(data) // 2, len(data) - 3):
        error = rejection(data[:cut])
        assert error.status == 422 and error.code in ("truncated", "corrupt"), (fmt, cut, error)


def test_truncated_jpeg_with_complete_exif_thumbnail_is_still_truncated():
    data = jpeg_with_exif_thumbnail()
    assert inspect_image(data).width == 320
    main_scan = data.rfind(b"\xff\xda")
    error = rejection(data[: main_scan + 200])  # the thumbnail's SOS and EOI are still inside
    assert (error.status, error.code) == (422, "truncated")


def test_jpeg_with_data_after_its_end_is_accepted():
    """Motion photos and some cameras append data after EOI; the image itself is complete."""
    assert inspect_image(jpeg_of_about(20_000) + b"\0" * 1000 + b"trailer").format == "JPEG"


def test_corrupt_header_is_422():
    data = small_image("PNG")
    broken = data[:16] + b"\xff" * 8 + data[24:]  # IHDR width/height garbage, CRC wrong
    error = rejection(broken)
    assert (error.status, error.code) == (422, "corrupt")
    assert rejection(b"\xff\xd8\xff\xe0\x00\x10JFIF").status == 422  # JPEG magic, no image


def test_a_rejection_names_no_memory_address():
    gif = small_image("GIF")
    blocks = 13 + 3 * 2 ** ((gif[10] & 7) + 1)  # after the header and the global colour table
    error = rejection(gif[:blocks] + b"\x21\xff\x00" + gif[blocks:])  # Pillow: "cannot identify <_io.BytesIO at 0x..>"
    assert error.code == "corrupt" and "0x" not in error.detail and "BytesIO" not in error.detail, error.detail


def test_png_claiming_ten_billion_pixels_is_refused_from_its_header():
    error = rejection(png_claiming(100_000, 100_000))
    assert (error.status, error.code) == (422, "too_many_pixels")


def test_pixel_limit_is_configurable():
    data = small_image("JPEG")  # 64 x 48 = 3072 pixels
    assert inspect_image(data, max_pixels=3072).width == 64
    error = rejection(data, max_pixels=3071)
    assert (error.status, error.code) == (422, "too_many_pixels")


def test_sniffing_ignores_everything_but_the_bytes():
    assert sniff_format(small_image("WEBP")) == "WEBP"
    assert sniff_format(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None  # RIFF, but audio

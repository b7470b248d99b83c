"""Content validation of uploads: formats by their bytes, bombs by their header, truncation by framing,
and bounded work whatever the structure."""

import io
import struct
import zlib

import pytest
from PIL import Image

from memberflow_assets.images.ingestion import content
from memberflow_assets.images.ingestion.content import ImageRejected, inspect_image, sniff_format
from memberflow_assets.testing.images import (
    encode,
    jpeg_of_about,
    jpeg_with_empty_segments,
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


@pytest.mark.parametrize("data", [b"II*\x00", b"MM\x00*\x00\x00\x00", b"II+\x00\x08\x00\x00\x00\x10\x00"])
def test_a_tiff_that_ends_inside_its_header_is_truncated(data):
    """Not `too_complex` (the missing directory offset read as 0, the header itself as 18,761 entries)."""
    error = rejection(data)
    assert (error.status, error.code) == (422, "truncated"), error


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


def jpeg_with_second_frame(width: int, height: int) -> bytes:
    """A 16x16 JPEG with a second frame header (SOF0) of `width` x `height` after its own."""
    jpeg = small_image("JPEG")
    at = jpeg.index(b"\xff\xc0")
    end = at + 2 + int.from_bytes(jpeg[at + 2 : at + 4], "big")
    return jpeg[:end] + jpeg[at : at + 5] + struct.pack(">HH", height, width) + jpeg[at + 9 : end] + jpeg[end:]


def test_every_jpeg_frame_header_counts_and_the_last_one_is_the_size():
    """Pillow (and processing) takes the last frame header: a small one first hid a 60000x60000 one."""
    error = rejection(jpeg_with_second_frame(60_000, 60_000))
    assert (error.code, error.status) == ("too_many_pixels", 422) and "60000x60000" in error.detail
    facts = inspect_image(jpeg_with_second_frame(30, 20))
    assert (facts.width, facts.height) == (30, 20)
    assert Image.open(io.BytesIO(jpeg_with_second_frame(30, 20))).size == (30, 20)


def test_pixel_limit_is_configurable():
    data = small_image("JPEG")  # 64 x 48 = 3072 pixels
    assert inspect_image(data, max_pixels=3072).width == 64
    error = rejection(data, max_pixels=3071)
    assert (error.status, error.code) == (422, "too_many_pixels")


def test_sniffing_ignores_everything_but_the_bytes():
    assert sniff_format(small_image("WEBP")) == "WEBP"
    assert sniff_format(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None  # RIFF, but audio


# -- bounded work: structures no real image has are refused before Pillow parses them -----------------
def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_with_chunks(chunk: bytes, count: int, before_data: bool = True) -> bytes:
    png = small_image("PNG")
    at = 33 if before_data else png.index(b"IEND") - 4  # after IHDR, or before IEND
    return png[:at] + chunk * count + png[at:]


def gif_with_blocks(blocks: bytes) -> bytes:
    gif = small_image("GIF")
    at = 13 + 3 * 2 ** ((gif[10] & 7) + 1)  # after the header and the global colour table
    return gif[:at] + blocks + gif[at:]


def tiff_with_strips(count: int) -> bytes:
    return encode(Image.new("L", (1, count)), "TIFF", tiffinfo={278: 1})  # one row per strip


def bigtiff_directory(entries: int) -> bytes:
    """A BigTIFF whose first directory claims `entries` entries (the count is 8 bytes there)."""
    return b"II+\x00\x08\x00\x00\x00" + struct.pack("<Q", 16) + struct.pack("<Q", entries) + bytes(20 * 4)


def tiff_with_tag(tag: int, kind: int, count: int, value: int = 1) -> bytes:
    """A 16x16 grey TIFF (one strip) whose directory also holds `tag` with `count` values of type `kind`."""
    one = {1: "<B", 2: "<B", 3: "<H", 4: "<I", 5: "<II", 7: "<B", 10: "<ii", 12: "<d"}[kind]
    values = struct.pack(one, *[value] * len(one[1:])) * count
    unit = len(values) // count
    tags = {256: (3, 1, 16), 257: (3, 1, 16), 258: (3, 1, 8), 262: (3, 1, 1), 277: (3, 1, 1), 279: (4, 1, 256)}
    tags[tag] = (kind, count, None)
    entries = sorted({**tags, 273: (4, 1, 0)}.items())
    table_end = 8 + 2 + 12 * len(entries) + 4
    values_at, pixels_at = table_end, table_end + unit * count
    directory = struct.pack("<H", len(entries))
    for number, (kind_, count_, value) in entries:
        if value is None:  # the crafted tag's values, after the directory
            directory += struct.pack("<HHII", number, kind_, count_, values_at)
        else:
            value = pixels_at if number == 273 else value
            directory += struct.pack("<HHI", number, kind_, count_) + struct.pack(
                "<I" if kind_ == 4 else "<H", value
            ).ljust(4, b"\0")
    return b"II*\0" + struct.pack("<I", 8) + directory + bytes(4) + values + b"\x80" * 256


CRAFTED = {
    "jpeg-many-empty-app1-segments": jpeg_with_empty_segments(small_image("JPEG"), 100_000),
    "jpeg-many-fill-bytes": small_image("JPEG")[:2] + b"\xff" * 100_000 + small_image("JPEG")[2:],
    "jpeg-many-scans": small_image("JPEG")[:-2] + b"\xff\xda\x00\x02" * 1_000 + b"\xff\xd9",
    "png-many-chunks-before-data": png_with_chunks(png_chunk(b"prIv", b""), 50_000),
    "png-many-text-chunks": png_with_chunks(png_chunk(b"tEXt", b"k\x00v"), 50_000),
    "png-many-empty-idat": png_with_chunks(png_chunk(b"IDAT", b""), 50_000, before_data=False),
    "gif-many-comments": gif_with_blocks(b"\x21\xfe\x01a\x00" * 50_000),
    "gif-one-comment-of-tiny-blocks": gif_with_blocks(b"\x21\xfe" + b"\x01a" * 50_000 + b"\x00"),
    "tiff-many-strips": tiff_with_strips(50_000),
    "bigtiff-huge-directory": bigtiff_directory(1_000_000),
    # Pillow makes an object of each value of the tags it reads on open (10M of BitsPerSample: 0.57 s)
    "tiff-bits-per-sample-of-100k-values": tiff_with_tag(258, 3, 100_000),
    "tiff-sample-format-of-100k-values": tiff_with_tag(339, 3, 100_000),
    "tiff-extra-samples-of-100k-values": tiff_with_tag(338, 3, 100_000),
    "tiff-resolution-of-10k-rationals": tiff_with_tag(282, 5, 10_000),
    "tiff-unknown-tag-of-100k-doubles": tiff_with_tag(40_000, 12, 100_000),
    "tiff-colormap-of-rationals": tiff_with_tag(320, 5, 3 * 65_536),
    "tiff-bits-per-sample-of-100k-bytes": tiff_with_tag(258, 1, 100_000),
}


@pytest.mark.parametrize("name", CRAFTED)
def test_crafted_structures_are_refused_as_too_complex(name):
    error = rejection(CRAFTED[name])
    assert (error.status, error.code) == (422, "too_complex"), error


def test_real_images_with_much_structure_are_accepted():
    progressive = encode(noise_image(640, 480), "JPEG", progressive=True)
    big_icc = encode(noise_image(64, 48), "JPEG", icc_profile=bytes(300_000))  # five APP2 segments
    frames = [noise_image(64, 48, seed) for seed in range(40)]
    animated = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], comment=b"x" * 20_000)
    texts = png_with_chunks(png_chunk(b"tEXt", b"Comment\x00" + b"v" * 100), 200)
    for data in (progressive, big_icc, animated, texts, tiff_with_strips(5_000), jpeg_with_exif_thumbnail()):
        assert inspect_image(data).format in content.ACCEPTED_FORMATS


def test_tiff_tags_that_are_byte_strings_or_tables_may_be_large():
    """Values Pillow reads as one bytes object (an ICC profile, XMP, a description, an unknown tag's bytes)
    are bounded by the file only; a 16-bit palette's ColorMap has 3 x 65,536 values."""
    icc_and_xmp = encode(noise_image(64, 48), "TIFF", icc_profile=bytes(1_000_000), tiffinfo={700: b"x" * 200_000})
    palette = encode(noise_image(64, 48).convert("P"), "TIFF")
    for data in (
        icc_and_xmp,
        palette,
        tiff_with_tag(270, 2, 100_000),  # ImageDescription
        tiff_with_tag(40_000, 7, 1_000_000),
        tiff_with_tag(320, 3, 3 * 65_536),
        tiff_with_tag(258, 3, content.MAX_TIFF_TAG_VALUES, value=8),
    ):
        assert inspect_image(data).format == "TIFF"


def tiled_tiff(width: int, height: int, tile: int) -> bytes:
    """A grey TIFF of width x height pixels in one Deflate tile of tile x tile pixels (zeros)."""
    pixels = zlib.compress(bytes(tile * tile), 9)
    tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 8), (262, 3, 1), (277, 3, 1)]
    tags += [(322, 4, tile), (323, 4, tile), (324, 4, 0), (325, 4, len(pixels))]
    directory_end = 8 + 2 + 12 * len(tags) + 4
    entries = b"".join(
        struct.pack("<HHI", tag, kind, 1)
        + struct.pack("<I" if kind == 4 else "<HH", *((value,) if kind == 4 else (value, 0)))
        if tag != 324
        else struct.pack("<HHII", tag, kind, 1, directory_end)
        for tag, kind, value in tags
    )
    return b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(tags)) + entries + b"\x00" * 4 + pixels


def test_a_tile_far_larger_than_its_image_is_too_complex():
    """A tile is decoded whole: a 16x16 TIFF with a 16368 x 16368 tile of zeros (800 KB) took processing
    900 MB. Tiles larger than the image are allowed up to MAX_TIFF_TILE_PIXELS (real TIFFs have them)."""
    assert rejection(tiled_tiff(16, 16, 2048)).code == "too_complex"
    for width, height, tile in ((100, 100, 256), (16, 16, 1024), (2048, 2048, 2048)):
        assert inspect_image(tiled_tiff(width, height, tile)).format == "TIFF"

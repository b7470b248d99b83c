"""The company's image processing code, hosted by the platform: one landed image in, a thumbnail and one
metadata row out. No Dagster, no database: `hour_partition.py` runs it over an hour's images.

Per image: verify the bytes against the landing sidecar's SHA-256; decode it fully (a truncated or
corrupt file, a decompression bomb, an unsupported format all become a `rejected` row with an error
code, never an exception); make a JPEG thumbnail of at most THUMBNAIL_SIZE px on the long side, turned
upright by its EXIF orientation and carrying no EXIF or XMP at all (so no GPS position, camera serial,
owner name or timestamps leave the landing zone); compute a 64-bit perceptual difference hash (dHash)
of the upright picture; and describe the original (format, mode, upright width and height, bytes).

Decoding is the cost: JPEGs are decoded by libjpeg-turbo (simplejpeg) with DCT scaling at the smallest
scale that still covers the thumbnail, which reads the whole file at a fraction of the work of a
full-size decode, and strictly: libjpeg only *warns* about garbage entropy-coded data or a premature
end (Pillow's decoder ignores those warnings and returns garbage pixels); here they reject the image.
Other formats are decoded by Pillow, whose PNG, GIF, WebP and TIFF decoders raise on such damage.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import simplejpeg
from PIL import ExifTags, Image, ImageFile, UnidentifiedImageError

from memberflow_assets.images.layout import ACCEPTED_FORMATS, MAX_PIXELS, Sidecar

Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow raises DecompressionBombError above twice this
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never a half-grey picture

THUMBNAIL_SIZE = 256
THUMBNAIL_FORMAT = "JPEG"
THUMBNAIL_EXT = "jpg"
THUMBNAIL_QUALITY = 85
HASH_SIZE = 8  # dHash of an 8 x 8 grid of differences: 64 bits, 16 hex digits
MAX_EXIF_BYTES = 256 << 10  # a camera's EXIF fits one JPEG segment (64 KB); more is there to be costly to read

PROCESSED = "processed"
REJECTED = "rejected"

# Error codes of rejected images (the `error` column; `error_detail` has the decoder's message).
CHECKSUM_MISMATCH = "checksum_mismatch"  # bytes differ from the sidecar's sha256
MISSING_IMAGE = "missing_image"  # sidecar without its image file
INVALID_SIDECAR = "invalid_sidecar"
NOT_AN_IMAGE = "not_an_image"  # Pillow cannot identify the bytes
UNSUPPORTED_FORMAT = "unsupported_format"
TOO_MANY_PIXELS = "too_many_pixels"  # decompression bomb
TRUNCATED = "truncated"
CORRUPT = "corrupt"  # anything else the decoder refuses

_GPS_IN_XMP = re.compile(rb"exif:GPS|GPSLatitude|GPSLongitude", re.IGNORECASE)


@dataclass(frozen=True)
class ProcessedImage:
    """What processing one image produced: its metadata row, and the thumbnail unless rejected."""

    row: dict
    thumbnail: bytes | None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def readable_exif(image: Image.Image) -> Image.Exif | None:
    """The image's EXIF, or None when it is too large to read (MAX_EXIF_BYTES): reading decodes every value
    of its first directory, as many as a crafted file holds (a 20 MB eXIf chunk took seconds)."""
    raw = image.info.get("exif")
    return None if isinstance(raw, bytes) and len(raw) > MAX_EXIF_BYTES else image.getexif()


def has_location(image: Image.Image, exif: Image.Exif | None) -> bool:
    """True when the image's EXIF points to GPS data (or is too large to read: it may) or its XMP packet
    mentions GPS coordinates. The GPS directory itself is not read: its values would all be decoded."""
    if exif is None or exif.get(ExifTags.IFD.GPSInfo):
        return True
    xmp = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp") or b""
    return bool(_GPS_IN_XMP.search(xmp if isinstance(xmp, bytes) else xmp.encode()))


def dhash(image: Image.Image) -> str:
    """64-bit difference hash: does brightness rise from each pixel to its right neighbour on a
    9 x 8 greyscale reduction. Near-identical pictures (re-encoded, resized) differ in few bits;
    compare with the Hamming distance (`bit_count(xor(...))` in DuckDB on the integer value)."""
    small = image.convert("L").resize((HASH_SIZE + 1, HASH_SIZE), Image.Resampling.BILINEAR)
    pixels = np.asarray(small, dtype=np.int16)
    bits = pixels[:, 1:] > pixels[:, :-1]
    return np.packbits(bits.ravel()).tobytes().hex()


def hamming_distance(hash_a: str, hash_b: str) -> int:
    return (int(hash_a, 16) ^ int(hash_b, 16)).bit_count()


class JpegDataError(Exception):
    """libjpeg found damaged image data (a warning it would otherwise decode past)."""


_LIBJPEG_COLORSPACES = {"L": "GRAY", "RGB": "RGB"}  # Pillow mode -> libjpeg-turbo output


def decode_jpeg_strictly(data: bytes, image: Image.Image) -> Image.Image:
    """The pixels of an opened JPEG, decoded at the smallest DCT scale that covers its thumbnail.

    Raises JpegDataError where libjpeg warns (corrupt entropy data, extraneous bytes, premature end).
    CMYK/YCCK pictures, which libjpeg-turbo does not convert, are checked the same way at 1/8 scale and
    then decoded by Pillow.
    """
    colorspace = _LIBJPEG_COLORSPACES.get(image.mode)
    width, height = _thumbnail_size(image.size)
    try:
        if colorspace is None:
            simplejpeg.decode_jpeg(data, colorspace="CMYK", min_width=1, min_height=1)
            return image
        pixels = simplejpeg.decode_jpeg(data, colorspace=colorspace, min_width=width, min_height=height)
    except ValueError as error:
        raise JpegDataError(str(error)) from error
    decoded = Image.fromarray(pixels[:, :, 0] if colorspace == "GRAY" else pixels, image.mode)
    decoded.info = dict(image.info)  # the ICC profile (and transparency) the thumbnail uses
    return decoded


def _thumbnail_size(size: tuple[int, int]) -> tuple[int, int]:
    scale = min(1.0, THUMBNAIL_SIZE / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def make_thumbnail(image: Image.Image) -> None:
    """Shrink an opened, not yet loaded image in place to THUMBNAIL_SIZE on its long side.

    `draft` makes libjpeg decode a JPEG at 1/2, 1/4 or 1/8 scale (still reading every byte, so a
    truncated file still fails); `reducing_gap` box-reduces other formats before the bicubic resize.
    """
    image.draft(None, (THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.BICUBIC, reducing_gap=2.0)


def decode_thumbnail(data: bytes, image: Image.Image) -> Image.Image:
    """The opened, not yet loaded `image` (of `data`) decoded and shrunk to thumbnail size (not yet upright)."""
    picture = decode_jpeg_strictly(data, image) if image.format == "JPEG" else image
    make_thumbnail(picture)
    return picture


def _thumbnail_bytes(thumbnail: Image.Image, icc_profile: bytes | None) -> bytes:
    if thumbnail.mode in _SIXTEEN_BIT_MODES:  # 16-bit samples: scaled to 8, not clipped at 255
        eight_bit = np.clip(np.asarray(thumbnail, dtype=np.int64) >> 8, 0, 255).astype(np.uint8)
        thumbnail, icc_profile = Image.fromarray(eight_bit, "L"), None
    if thumbnail.mode not in ("RGB", "L") or "transparency" in thumbnail.info:  # incl. a PNG's colour key
        if thumbnail.mode in ("RGBA", "LA", "PA") or "transparency" in thumbnail.info:
            rgba = thumbnail.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
            thumbnail, icc_profile = flat, None
        else:
            thumbnail, icc_profile = thumbnail.convert("RGB"), None  # e.g. CMYK: its profile no longer applies
    buffer = io.BytesIO()
    # Only what is passed here is written: no EXIF, XMP or comment (Pillow's JPEG writer copies a comment
    # or XMP of the image's `info`, which the original's COM segment or GIF comment fills).
    thumbnail.info = {}
    thumbnail.save(buffer, THUMBNAIL_FORMAT, quality=THUMBNAIL_QUALITY, icc_profile=icc_profile)
    return buffer.getvalue()


# EXIF orientation -> the transposition that turns the picture upright (1, and any other value, as it is).
# Done here rather than by ImageOps.exif_transpose, which rewrites the EXIF it is given and fails on
# values its tags' types do not hold (struct.error): the thumbnail carries no EXIF anyway.
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I")


def orientation_of(exif: Image.Exif | None) -> int:
    """The EXIF orientation (1-8); 1 for none, for an EXIF too large to read, or for a value no picture has."""
    value = 1 if exif is None else exif.get(ExifTags.Base.Orientation, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright(picture: Image.Image, orientation: int) -> Image.Image:
    return picture.transpose(_UPRIGHT[orientation]) if orientation in _UPRIGHT else picture


def rejected(row: dict, error: str, detail: str) -> ProcessedImage:
    """A metadata row marked rejected with an error code and detail; no thumbnail."""
    return ProcessedImage({**row, "status": REJECTED, "error": error, "error_detail": detail[:500]}, None)


def base_row(sidecar: Sidecar, processed_at: datetime) -> dict:
    """The metadata fields known from the landing sidecar alone."""
    return {
        "image_id": sidecar.image_id,
        "source": sidecar.source,
        "client": sidecar.client,
        "received_at": sidecar.received_datetime,
        "processed_at": processed_at,
        "status": None,
        "error": None,
        "error_detail": None,
        "format": None,
        "mode": None,
        "width": None,
        "height": None,
        "orientation": None,
        "bytes": sidecar.size_bytes,
        "sha256": sidecar.sha256,
        "phash": None,
        "gps_removed": False,
        "thumbnail_bytes": None,
    }


def process_image(data: bytes, sidecar: Sidecar, processed_at: datetime) -> ProcessedImage:
    """Verify, decode and describe one landed image; never raises for bad image data."""
    row = {**base_row(sidecar, processed_at), "bytes": len(data), "sha256": sha256_hex(data)}
    if row["sha256"] != sidecar.sha256:
        return rejected(row, CHECKSUM_MISMATCH, f"landed bytes hash to {row['sha256']}, sidecar says {sidecar.sha256}")
    try:
        with warnings.catch_warnings():
            # Between MAX_PIXELS and twice that Pillow only warns: a bomb all the same.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        return rejected(row, TOO_MANY_PIXELS, str(error))
    except UnidentifiedImageError:
        return rejected(row, NOT_AN_IMAGE, "Pillow cannot identify the bytes as an image")
    except Exception as error:  # OSError, ValueError, SyntaxError, ... of a malformed header
        return rejected(row, CORRUPT, f"{type(error).__name__}: {error}")
    with image:
        # a multi-picture JPEG (MPO, as phones write) is a JPEG: its first picture is the image
        row["format"], row["mode"] = ("JPEG" if image.format == "MPO" else image.format), image.mode
        if row["format"] not in ACCEPTED_FORMATS:
            return rejected(row, UNSUPPORTED_FORMAT, f"format {image.format}")
        try:
            exif = readable_exif(image)
            orientation = orientation_of(exif)
            row["gps_removed"] = has_location(image, exif)
            row["width"], row["height"] = (
                (image.height, image.width) if orientation in (5, 6, 7, 8) else (image.width, image.height)
            )
            icc_profile = image.info.get("icc_profile")
            picture = upright(decode_thumbnail(data, image), orientation)
            thumbnail = _thumbnail_bytes(picture, icc_profile)
            row["phash"] = dhash(picture)
        except Image.DecompressionBombError as error:
            return rejected(row, TOO_MANY_PIXELS, str(error))
        except JpegDataError as error:  # "Corrupt JPEG data: ..." (incl. a scan cut short), or the file ends
            code = TRUNCATED if str(error).startswith("Premature end of JPEG file") else CORRUPT
            return rejected(row, code, f"libjpeg: {error}")
        except OSError as error:
            code = TRUNCATED if "truncated" in str(error).lower() else CORRUPT
            return rejected(row, code, f"{type(error).__name__}: {error}")
        except Exception as error:
            # Pillow's plugins signal malformed structures with many exception types (ValueError, SyntaxError,
            # EOFError, IndexError, KeyError, TypeError, ZeroDivisionError, struct.error, OverflowError, ...):
            # whatever one image raises makes it a rejected row, never a failure of its hour
            return rejected(row, CORRUPT, f"{type(error).__name__}: {error}")
    row.update(
        status=PROCESSED,
        orientation=orientation,
        thumbnail_bytes=len(thumbnail),
    )
    return ProcessedImage(row, thumbnail)


@dataclass(frozen=True)
class ThumbnailProblems:
    undecodable: str | None  # the decoder's error, None when it decodes
    has_location: bool
    has_exif: bool
    size: tuple[int, int] | None


def inspect_thumbnail(data: bytes) -> ThumbnailProblems:
    """What the asset checks verify about a stored thumbnail: it decodes, and carries no location."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            location = has_location(image, readable_exif(image))
            exif = len(image.getexif()) > 0 or "comment" in image.info  # metadata a thumbnail never carries
            image.load()
            return ThumbnailProblems(None, location, exif, image.size)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        return ThumbnailProblems(f"{type(error).__name__}: {error}", False, False, None)

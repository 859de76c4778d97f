"""Opening user images safely: size limits, decompression-bomb protection, one clear error.

Every failure is a DataError naming the file and saying what is wrong, never a decoder traceback:
image decoders raise a zoo of exceptions on hostile bytes (OSError, SyntaxError, struct.error,
EOFError, ...), so decoding is wrapped as a whole.
"""
from __future__ import annotations

import math
import re
import stat
import struct
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .config import describe_os_error
from .errors import DataError

MAX_PIXELS = 40_000_000  # larger decodes are refused (a 20000x20000 upload would need 1.2 GB as RGB)
# Photos for face detection are decoded to at most this longest side (JPEGs at 1/2..1/8 scale by the decoder
# itself). Detection runs on a 640-px copy and finds faces of ~80 px there, i.e. 1/8 of the longest side: at
# 2048 px such a face spans 256 px, more than the 224-px aligned crop needs, so a larger decode adds only cost.
# A 50 MP phone JPEG is then decoded at half scale (12.5 MP).
UPLOAD_MAX_SIDE = 2048
# A complete JPEG codes every 8x8 block with at least one bit (512 pixels a byte for grey); a file declaring more
# than twice that is missing its picture data, which the decoder would fill with grey at full size.
JPEG_MAX_PIXELS_PER_BYTE = 1024
JPEG_FORMATS = ("JPEG", "MPO")
ORIENTATION = 0x0112  # EXIF tag
MIN_SIDE = 16  # smaller images cannot hold a face worth scoring
READABLE = "JPEG, PNG, WebP, BMP, GIF, TIFF"  # what is read (HEIC/AVIF/SVG are not)
# Formats accepted, as Pillow names what it finds in the bytes (not the file name): exactly READABLE (MPO is a
# phone JPEG with a second picture). Pillow decodes more (AVIF, ICO, PPM, TGA...): each is more decoder surface.
FORMATS = {"JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF", "TIFF"}
Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow raises DecompressionBombError above 2x this, even on a bare open
# Between 1x and 2x Pillow only warns; check_image_file refuses those itself, so the warning is noise.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def _declared_size(path: Path) -> tuple[int, int] | None:
    """Width and height from a PNG/GIF/BMP header, read without any decoder (for bomb messages)."""
    try:
        with open(path, "rb") as f:
            head = f.read(32)
    except OSError:
        return None
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return struct.unpack("<HH", head[6:10])
    if head[:2] == b"BM" and len(head) >= 26:
        w, h = struct.unpack("<ii", head[18:26])
        return abs(w), abs(h)
    return None


def _too_large(name: str, size: tuple[int, int] | None, pixels: int | None = None) -> DataError:
    dims = f"{size[0]}x{size[1]}" if size else "its declared size"
    pixels = pixels if pixels is not None else (size[0] * size[1] if size else None)
    mp = f" = {pixels / 1e6:,.0f} MP" if pixels else ""
    return DataError(f"{name}: image too large ({dims}{mp}); the limit is {MAX_PIXELS // 1_000_000} megapixels. "
                     "Refused without decoding (decompression-bomb protection); downscale it first")


def check_image_file(path: str | Path, max_side: int = 0) -> tuple[str, tuple[int, int]]:
    """(format, (width, height)) from the header alone; DataError if the file cannot be a usable image.

    Cheap (nothing is decoded), so it can run before anything else touches an upload. max_side: the image
    will be opened with open_image(max_side=...), so the pixel limit applies to what that decodes (a JPEG
    at reduced scale), not to the declared size.
    """
    path = Path(path)
    try:
        st = path.stat()
    except OSError as err:
        raise DataError(f"{path}: {describe_os_error(err)}") from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{path}: not a regular file")
    if st.st_size == 0:
        raise DataError(f"{path.name}: the file is empty (0 bytes)")
    try:
        with Image.open(path) as im:
            fmt, size = im.format or "?", im.size
            decoded = _draft(im, max_side).size if fmt in JPEG_FORMATS else size
    except Image.DecompressionBombError as err:
        m = re.search(r"\((\d+) pixels\)", str(err))
        raise _too_large(path.name, _declared_size(path), int(m.group(1)) if m else None) from None
    except UnidentifiedImageError:
        raise DataError(f"{path.name}: not an image format this tool can read ({READABLE})") from None
    except OSError as err:
        if err.errno is not None:  # the file could not be read (permission, I/O), which is not damage
            raise DataError(f"{path.name}: {describe_os_error(err)}") from None
        raise DataError(f"{path.name}: the image is damaged or truncated ({type(err).__name__}: {err})") from None
    except Exception as err:  # noqa: BLE001 - hostile headers raise anything; the message says what happened
        raise DataError(f"{path.name}: the image is damaged or truncated ({type(err).__name__}: {err})") from None
    if fmt not in FORMATS:
        raise DataError(f"{path.name}: {fmt} images are not accepted; use {READABLE}")
    if decoded[0] * decoded[1] > MAX_PIXELS:
        raise _too_large(path.name, size)
    if fmt in JPEG_FORMATS and size[0] * size[1] > JPEG_MAX_PIXELS_PER_BYTE * max(st.st_size, 1000):
        raise DataError(f"{path.name}: declares {size[0]}x{size[1]} pixels in only {st.st_size / 1000:.0f} KB, too few "
                        "bytes to hold that picture (the rest would be decoded as grey); refused without decoding")
    if min(size) < MIN_SIDE:
        raise DataError(f"{path.name}: image too small ({size[0]}x{size[1]}); need at least {MIN_SIDE}x{MIN_SIDE} "
                        "pixels")
    return fmt, size


def _draft(im: Image.Image, max_side: int) -> Image.Image:
    """Ask the JPEG decoder for the smallest of 1/1, 1/2, 1/4, 1/8 scale that keeps the longest side >= max_side
    (nothing is decoded yet; im.size becomes the size it will decode to)."""
    w, h = im.size
    if max_side and max(w, h) > max_side and im.format in JPEG_FORMATS:
        k = max_side / max(w, h)
        im.draft(im.mode if im.mode in ("L", "RGB") else None, (math.ceil(w * k), math.ceil(h * k)))
    return im


def _shrink(im: Image.Image, max_side: int) -> Image.Image:
    k = max_side / max(im.size)
    return im.resize((max(1, round(im.width * k)), max(1, round(im.height * k))), Image.Resampling.BICUBIC,
                     reducing_gap=3.0)


_TRUNCATION_SWITCH = threading.Lock()


@contextmanager
def truncated_images(allowed: bool):
    """PIL's LOAD_TRUNCATED_IMAGES is one process-wide switch. Training frames decode as far as they go, as in
    the reference (src/dataset/deepfake.py:18); a user's image must be refused when cut short. Each decode
    holds the switch it needs, so a demo build training in one thread never lets an upload through in another."""
    with _TRUNCATION_SWITCH:
        before = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = allowed
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = before


def open_image(path: str | Path, max_side: int = 0) -> Image.Image:
    """Decode an image into RGB (first frame of animations), or raise DataError saying why.

    max_side: at most this longest side (UPLOAD_MAX_SIDE for photos whose faces are detected): a JPEG is
    decoded at the reduced scale that still covers it, then anything larger is downscaled. 0 = full size.
    """
    path = Path(path)
    check_image_file(path, max_side)
    try:
        with truncated_images(False), Image.open(path) as im:
            im.seek(0)
            _draft(im, max_side)
            im = ImageOps.exif_transpose(im) if im.getexif().get(ORIENTATION, 1) != 1 else im
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                im = im.point(lambda v: v / 256).convert("L")
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")  # palette transparency must go through RGBA to be dropped cleanly
            if max_side and max(im.size) > max_side and im.mode in ("L", "RGB", "RGBA"):
                im = _shrink(im, max_side)  # before the RGB copy: one small copy instead of a full one
            rgb = im.convert("RGB")
            rgb.load()
            if max_side and max(rgb.size) > max_side:
                rgb = _shrink(rgb, max_side)
    except Image.DecompressionBombError:
        raise _too_large(path.name, _declared_size(path)) from None
    except OSError as err:
        if err.errno is not None:
            raise DataError(f"{path.name}: {describe_os_error(err)}") from None
        raise DataError(f"{path.name}: the image is damaged or truncated ({err or type(err).__name__})") from None
    except Exception as err:  # noqa: BLE001 - see the module docstring
        raise DataError(f"{path.name}: the image is damaged or truncated ({err or type(err).__name__})") from None
    return rgb

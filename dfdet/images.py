"""Opening user images safely: size limits, decompression-bomb protection, one clear error.

Every failure is a DataError naming the file and saying what is wrong, never a decoder traceback:
image decoders raise a zoo of exceptions on hostile bytes (OSError, SyntaxError, struct.error,
EOFError, ...), so decoding is wrapped as a whole.
"""
from __future__ import annotations

import re
import stat
import struct
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from .config import describe_os_error
from .errors import DataError

MAX_PIXELS = 40_000_000  # larger images are refused (a 20000x20000 upload would need 1.2 GB as RGB)
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


def check_image_file(path: str | Path) -> tuple[str, tuple[int, int]]:
    """(format, (width, height)) from the header alone; DataError if the file cannot be a usable image.

    Cheap (nothing is decoded), so it can run before anything else touches an upload.
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
    if size[0] * size[1] > MAX_PIXELS:
        raise _too_large(path.name, size)
    if min(size) < MIN_SIDE:
        raise DataError(f"{path.name}: image too small ({size[0]}x{size[1]}); need at least {MIN_SIDE}x{MIN_SIDE} "
                        "pixels")
    return fmt, size


def open_image(path: str | Path) -> Image.Image:
    """Decode an image fully into RGB (first frame of animations), or raise DataError saying why."""
    path = Path(path)
    check_image_file(path)
    try:
        with Image.open(path) as im:
            im.seek(0)
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                im = im.point(lambda v: v / 256).convert("L")
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")  # palette transparency must go through RGBA to be dropped cleanly
            rgb = im.convert("RGB")
            rgb.load()
    except Image.DecompressionBombError:
        raise _too_large(path.name, _declared_size(path)) from None
    except OSError as err:
        if err.errno is not None:
            raise DataError(f"{path.name}: {describe_os_error(err)}") from None
        raise DataError(f"{path.name}: the image is damaged or truncated ({err or type(err).__name__})") from None
    except Exception as err:  # noqa: BLE001 - see the module docstring
        raise DataError(f"{path.name}: the image is damaged or truncated ({err or type(err).__name__})") from None
    return rgb

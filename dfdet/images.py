"""Opening user images safely: size limits, decompression-bomb protection, one clear error."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import DataError

MAX_PIXELS = 40_000_000  # larger images are refused (a 20000x20000 upload would need 1.2 GB as RGB)
Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow raises DecompressionBombError above 2x this


def open_image(path: str | Path) -> Image.Image:
    """Decode an image fully into RGB (first frame of animations), or raise DataError saying why."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path.name}: the file is empty (0 bytes)")
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_PIXELS:
                raise DataError(f"{path.name}: image too large ({im.width}x{im.height}); "
                                f"the limit is {MAX_PIXELS // 1_000_000} megapixels")
            im.seek(0)
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                im = im.point(lambda v: v / 256).convert("L")
            rgb = im.convert("RGB")
            rgb.load()
    except DataError:
        raise
    except Image.DecompressionBombError:
        raise DataError(f"{path.name}: refused: declared image size is a decompression bomb") from None
    except UnidentifiedImageError:
        raise DataError(f"{path.name}: not an image format this tool can read (JPEG, PNG, WebP, BMP, GIF, TIFF)") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path.name}: the image is damaged or truncated ({err})") from None
    if min(rgb.size) < 16:
        raise DataError(f"{path.name}: image too small ({rgb.width}x{rgb.height}); need at least 16x16 pixels")
    return rgb

"""Images and videos the dashboard touches: upload checks, safe paths under a data root, thumbnails."""
from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image

from ..errors import DataError
from ..images import open_image

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")  # accepted photo uploads
VIDEO_EXTS = (".mp4", ".webm", ".mov", ".avi", ".mkv")  # accepted video uploads (decoded with PyAV)
MAX_UPLOAD_MB = 50  # per file; the app passes the same limit to gradio's launch(max_file_size=...)


def check_upload(path: str | Path | None, kind: str) -> Path:
    """An uploaded file of an accepted format and size, or a DataError that says what is accepted."""
    if not path:
        raise DataError(f"no {kind} given: upload one first")
    path = Path(path)
    exts = IMAGE_EXTS if kind == "image" else VIDEO_EXTS
    if path.suffix.lower() not in exts:
        raise DataError(f"{path.name}: not an accepted {kind} format; use one of {', '.join(exts)}")
    if not path.is_file():
        raise DataError(f"{path.name}: the upload did not arrive; try again")
    size_mb = path.stat().st_size / 2 ** 20
    if size_mb > MAX_UPLOAD_MB:
        raise DataError(f"{path.name}: {size_mb:.0f} MB is over the {MAX_UPLOAD_MB} MB limit")
    return path


def under_root(root: str | Path, relative: str) -> Path:
    """root/relative, refusing anything that resolves outside root (manifest paths are data, not trust)."""
    root = Path(root).resolve()
    full = (root / relative).resolve()
    if not full.is_relative_to(root):
        raise DataError(f"path {relative!r} points outside the data root {root}")
    return full


def load_face(root: str | Path, relative: str) -> Image.Image:
    """A face image listed in a manifest or run, opened with the library's size/bomb limits."""
    path = under_root(root, relative)
    if not path.is_file():
        raise DataError(f"image not found: {path} (is the data root right? set $DFDET_SHARED or --data-root)")
    return open_image(path)


def data_uri(image: Image.Image, size: int = 48, quality: int = 70) -> str:
    """A small JPEG thumbnail as a data: URI, so plot hovers can show faces without file serving."""
    im = image.convert("RGB")
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def placeholder(size: int = 64) -> Image.Image:
    """Grey square shown where a face file is missing on this machine."""
    return Image.new("RGB", (size, size), (128, 128, 128))

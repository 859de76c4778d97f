"""Images and videos the dashboard touches: upload checks, safe paths under a data root, thumbnails."""
from __future__ import annotations

import atexit
import base64
import hashlib
import io
import os
import shutil
import tempfile
import time
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


IMAGE_FILES_KEEP_S = 3600  # image outputs older than this are removed (gradio has copied them by then)
_image_dir: Path | None = None
_last_prune = 0.0


def image_dir() -> Path:
    """This process's folder of image outputs; removed when the process exits (and, after a kill -9, by the
    next process that starts: see remove_stale_image_dirs)."""
    global _image_dir
    if _image_dir is None:
        remove_stale_image_dirs()
        _image_dir = Path(tempfile.mkdtemp(prefix=f"dfdet_images_{os.getpid()}_"))
        atexit.register(shutil.rmtree, _image_dir, True)
    return _image_dir


def remove_stale_image_dirs(folder: str | Path | None = None) -> list[Path]:
    """Delete image-output folders of processes that are gone (named by pid); unnamed ones older than an hour."""
    gone = []
    for d in Path(folder or tempfile.gettempdir()).glob("dfdet_images_*"):
        pid = d.name.split("_")[2]
        try:
            if pid.isdigit():
                os.kill(int(pid), 0)  # raises if no such process
                continue
            if time.time() - d.stat().st_mtime < IMAGE_FILES_KEEP_S:
                continue
        except ProcessLookupError:
            pass
        except OSError:
            continue  # alive under another user, or unreadable: not ours to delete
        shutil.rmtree(d, ignore_errors=True)
        gone.append(d)
    return gone


APP_DIR_PREFIX = "dfdet_app_"  # this app's per-process folder for gradio's uploads and outputs
OWNER_FILE = ".owner"  # locked (flock) by the process that made the folder, for as long as it lives
_app_dir: Path | None = None
_owner_fd: int | None = None


def app_temp_dir(base: str | Path | None = None) -> Path:
    """This process's own folder under `base` ($GRADIO_TEMP_DIR, else <tmp>/gradio), for app.py to hand to gradio
    as its upload and cache folder; removed at exit, and by the next start after a kill -9.

    gradio names files by content only, so instances sharing its folder cannot tell whose an upload is, and
    no one deletes the files of an instance that was killed. Each instance holds an flock on its folder's
    owner file instead: the kernel drops it when the process dies, however it dies (a pid can be reused).
    """
    global _app_dir, _owner_fd
    if _app_dir is None:
        import fcntl
        base = Path(base or os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")
        base.mkdir(parents=True, exist_ok=True)
        remove_stale_app_dirs(base)
        folder = Path(tempfile.mkdtemp(prefix=f"{APP_DIR_PREFIX}{os.getpid()}_", dir=base))
        fd = os.open(folder / f"{OWNER_FILE}.new", os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.replace(folder / f"{OWNER_FILE}.new", folder / OWNER_FILE)  # appears locked: never free while we live
        _app_dir, _owner_fd = folder, fd
        atexit.register(shutil.rmtree, folder, True)
    return _app_dir


def remove_stale_app_dirs(base: str | Path) -> list[Path]:
    """Delete the app folders under `base` whose owner is gone (their lock is free). Only folders this app makes
    (prefix and owner file); a live instance's folder is never touched, nor one still being made (no owner
    file yet) unless it is an hour old."""
    import fcntl
    gone = []
    for folder in Path(base).glob(f"{APP_DIR_PREFIX}*"):
        if folder == _app_dir or folder.is_symlink() or not folder.is_dir():
            continue
        try:
            fd = os.open(folder / OWNER_FILE, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            try:
                if time.time() - folder.stat().st_mtime < IMAGE_FILES_KEEP_S:
                    continue
            except OSError:
                continue
        except OSError:
            continue  # not ours to judge (permissions, a symlink)
        else:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # held: its owner is alive
            finally:
                os.close(fd)
        shutil.rmtree(folder, ignore_errors=True)
        gone.append(folder)
    return gone


def image_file(image: Image.Image, fmt: str = "PNG") -> str:
    """An image output as a file named by its content, written once and atomically.

    Handing gradio a PIL image makes it re-write its cached copy on every request (truncate, then
    write), so two requests showing the same face can serve a half-written file (a broken download).
    A path is instead copied into gradio's cache under a temp name and renamed: always whole.
    """
    global _last_prune
    buf = io.BytesIO()
    image.save(buf, format=fmt, **({"compress_level": 1} if fmt == "PNG" else {}))  # lossless; level 6 is 4x slower
    data = buf.getvalue()
    folder = image_dir()
    path = folder / f"{hashlib.sha256(data).hexdigest()[:32]}.{fmt.lower()}"
    if not path.is_file():
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    now = time.time()
    if now - _last_prune > 600:  # a public app must not fill the disk one image per request
        _last_prune = now
        for old in folder.glob(f"*.{fmt.lower()}"):
            try:
                if now - old.stat().st_mtime > IMAGE_FILES_KEEP_S:
                    old.unlink()
            except OSError:
                pass
    return str(path)

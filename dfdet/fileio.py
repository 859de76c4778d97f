"""Atomic writes: a crash or Ctrl-C mid-write leaves the old file (or none), never half a file."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from .errors import DataError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file (mkstemp's files are 0600)


def atomic_write(path: str | Path, write: Callable[[str], object]) -> Path:
    """Call write(tmp_path) on a temp file beside `path`, then rename it over `path` (with the usual mode)."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"cannot write {path}: it is a folder; give a file name")
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        write(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except OSError as err:
        from .config import describe_os_error
        raise DataError(f"cannot write {path}: {describe_os_error(err)}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temp files atomic_write leaves behind when a process is killed mid-write (SIGKILL)."""
    gone = []
    for p in Path(folder).glob(".*.tmp"):
        if p.is_file():
            p.unlink(missing_ok=True)
            gone.append(p)
    return gone

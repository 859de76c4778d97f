"""Files a visitor sends to the app: only what was uploaded to this server is ever opened.

A client names a file by its server path, and nothing in an API payload proves the file was uploaded
(a payload without gradio's `meta` skips gradio's own check). So every file input passes here first,
with the server's upload folder: the path is resolved (symlinks followed) and must land inside it.
Every other case gets the same message, so a refusal never tells whether a path exists.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import DataError

REFUSED = ("this file was not uploaded to this app; upload it with the form (API clients: send the file "
           "with gradio_client.handle_file)")


def check_uploaded(path: object, upload_folder: str | Path) -> Path:
    """The real path of an uploaded regular file inside `upload_folder`, or DataError(REFUSED)."""
    if not isinstance(path, (str, os.PathLike)) or not os.path.isabs(path) or "\x00" in str(path):
        raise DataError(REFUSED)
    try:
        folder = Path(os.path.realpath(upload_folder))
        real = Path(os.path.realpath(path))
        inside = real != folder and real.is_relative_to(folder) and real.is_file()
    except (OSError, ValueError):
        inside = False
    if not inside:
        raise DataError(REFUSED)
    return real


def check_payload(value: object, upload_folder: str | Path, file_input: bool = False) -> None:
    """Check every file a request payload names (JSON as received: dicts with `path`/`url`, at any depth).

    A file reference must name an upload by its server path; a `data:` URL (which gradio would decode to a
    new file, past the upload size limit) or a bare URL (which gradio would fetch) is refused the same way.
    file_input: the value is for a file input, so anything but nothing or a file reference is refused too.
    """
    if file_input and value is not None and not isinstance(value, (dict, list)):
        raise DataError(REFUSED)
    if isinstance(value, list):
        for item in value:
            check_payload(item, upload_folder)
        return
    if not isinstance(value, dict):
        return
    if "path" in value or "url" in value:
        url = value.get("url")
        if url is not None and (not isinstance(url, str) or url.lower().lstrip().startswith("data:")):
            raise DataError(REFUSED)
        check_uploaded(value.get("path"), upload_folder)
    for item in value.values():
        if isinstance(item, (dict, list)):
            check_payload(item, upload_folder)

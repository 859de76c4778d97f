"""Files a visitor sends to the app: only what was uploaded to this server is ever opened.

A client names a file by its server path, and nothing in an API payload proves the file was uploaded
(a payload without gradio's `meta` skips gradio's own check). So every file input passes here first,
with the server's upload folder: the path is resolved (symlinks followed) and must land inside it.
Every other case gets the same message, so a refusal never tells whether a path exists.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
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


# ------------------------------------------------------------------------------------------ upload budget
UPLOAD_PATHS = ("/gradio_api/upload",)  # routes that keep what they receive on disk (gradio's upload route)
MIN_FILE_BYTES = 4096  # a kept file costs at least one disk block, however small


@dataclass
class UploadLimits:
    """Bytes a visitor may have in request bodies in flight plus uploads kept on disk (gradio keeps an upload
    until its cache cleaner deletes it, up to an hour). gradio's own max_file_size is per file only."""

    client_mb: float = 200.0  # one client (IP address): 4 files at the 50 MB per-file limit
    total_mb: float = 2000.0  # all clients together
    min_rate_kb: float = 32.0  # a body must arrive at this many KB/s on average (a 256 kbit/s link)...
    grace_s: float = 10.0  # ...counted after this many seconds (slow starts, small bodies)

    ENV = {"client_mb": "DFDET_UPLOAD_CLIENT_MB", "total_mb": "DFDET_UPLOAD_TOTAL_MB"}

    @classmethod
    def from_env(cls, **given: float | None) -> "UploadLimits":
        """Given values, else $DFDET_UPLOAD_CLIENT_MB / $DFDET_UPLOAD_TOTAL_MB, else the defaults."""
        values = {}
        for name, env in cls.ENV.items():
            raw = given.get(name)
            if raw is None:
                raw = os.environ.get(env)
            if raw is None or raw == "":
                continue
            where = env if given.get(name) is None else f"--upload-{name.replace('_', '-')}"
            try:
                values[name] = float(raw)
            except ValueError:
                raise DataError(f"{where}={raw!r}: expected a number of megabytes") from None
            if not values[name] > 0:
                raise DataError(f"{where}={raw!r}: must be more than 0 MB")
        return cls(**values)


class UploadBudget:
    """The ledger: request bytes in flight per client, and uploaded files kept on disk per client.

    Used from the server's event loop only (no awaits inside), so it needs no lock. A kept file stops
    counting once it is gone from disk; that is checked, oldest first, only when a request would not fit.
    """

    def __init__(self, limits: UploadLimits, upload_folder: str | Path):
        self.limits = limits
        self.upload_folder = Path(upload_folder)
        self.in_flight: dict[str, int] = {}  # client -> bytes of request bodies being received
        self.kept: dict[str, tuple[str, int]] = {}  # path -> (client, bytes), oldest first
        self.kept_by_client: dict[str, int] = {}
        self.uploads_in_flight = 0
        self.orphans_possible = False  # an upload ended without an answer: gradio may have left its temp file

    def client_bytes(self, client: str) -> int:
        return self.in_flight.get(client, 0) + self.kept_by_client.get(client, 0)

    def total_bytes(self) -> int:
        return sum(self.in_flight.values()) + sum(self.kept_by_client.values())

    def refusal(self, client: str, size: int) -> str:
        """'' if a request body of `size` bytes fits, else the reason it does not (one line)."""
        reason = self._over(client, size)
        if reason:
            self.forget_deleted()
            reason = self._over(client, size)
        return reason

    def _over(self, client: str, size: int) -> str:
        mb = 2 ** 20
        client_limit, total_limit = self.limits.client_mb * mb, self.limits.total_mb * mb
        if self.client_bytes(client) + size > client_limit:
            return (f"upload refused: {size / mb:.1f} MB more would pass this visitor's limit of "
                    f"{self.limits.client_mb:g} MB of uploads in flight and kept ({self.client_bytes(client) / mb:.1f} "
                    "MB now); uploads are deleted within an hour, then there is room again")
        if self.total_bytes() + size > total_limit:
            return (f"upload refused: the server holds {self.limits.total_mb:g} MB of uploads from all visitors, "
                    "its limit; uploads are deleted within an hour, try again later")
        return ""

    def start(self, client: str, size: int, upload: bool) -> None:
        self.in_flight[client] = self.in_flight.get(client, 0) + size
        self.uploads_in_flight += upload

    def finish(self, client: str, size: int, upload: bool, kept_paths: list[str] | None) -> None:
        """A request ended; kept_paths: the files an upload answered with (None if it did not succeed)."""
        left = self.in_flight.get(client, 0) - size
        if left > 0:
            self.in_flight[client] = left
        else:
            self.in_flight.pop(client, None)
        if not upload:
            return
        for path in kept_paths or []:
            self.keep(client, path)
        if kept_paths is None:
            self.orphans_possible = True
        if self.orphans_possible and self.uploads_in_flight == 1:
            self.remove_orphans()
        self.uploads_in_flight -= 1  # last: a reader that sees 0 sees the orphans gone

    def keep(self, client: str, path: str) -> None:
        try:
            size = max(MIN_FILE_BYTES, os.stat(path).st_size)
        except OSError:
            return
        if path in self.kept:  # the same content again (gradio names uploads by their hash): one file, re-dated
            self._drop(path)
        self.kept[path] = (client, size)
        self.kept_by_client[client] = self.kept_by_client.get(client, 0) + size

    def _drop(self, path: str) -> None:
        client, size = self.kept.pop(path)
        left = self.kept_by_client.get(client, 0) - size
        if left > 0:
            self.kept_by_client[client] = left
        else:
            self.kept_by_client.pop(client, None)

    def forget_deleted(self) -> None:
        """Stop counting kept files that are gone (gradio deletes the oldest first); stops at the first one left."""
        for path in list(self.kept):
            if os.path.exists(path):
                break
            self._drop(path)

    def remove_orphans(self) -> list[Path]:
        """gradio's upload parser writes each file to a temp file in the upload folder first and deletes it only
        on a parse error: a client that hangs up mid-upload leaves it there for good. With no upload in flight,
        every such temp file is an orphan."""
        self.orphans_possible = False
        gone = []
        try:
            entries = list(os.scandir(self.upload_folder))
        except OSError:
            return gone
        for entry in entries:
            # the parser's NamedTemporaryFile: "tmp" + random, no suffix (gradio's .vtt and other files have one)
            if entry.name.startswith("tmp") and "." not in entry.name and entry.is_file(follow_symlinks=False):
                try:
                    os.unlink(entry.path)
                    gone.append(Path(entry.path))
                except OSError:
                    pass
        return gone


class UploadGate:
    """ASGI middleware in front of the app: every request body is admitted against the UploadBudget by its
    declared length before any byte of it is read (refused with 413 and the reason), and then counted as it
    arrives, whatever the headers say: a body that runs past its declared length is cut off (413), and so is
    one that arrives slower than the limits' minimum rate (408), which would hold its share of the budget.
    A body without a length (chunked) is refused with 411: its size could not be known in advance; a request
    with both Content-Length and Transfer-Encoding (or two lengths) is refused with 400, as HTTP/1.1 allows."""

    def __init__(self, app, budget: UploadBudget, clock=None):
        import time
        self.app = app
        self.budget = budget
        self.clock = clock or time.monotonic

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if not route_open(scope["method"], scope.get("path", "")):
            return await _answer(send, 404, "not served by this app")
        raw = scope.get("headers") or []
        lengths = [v for k, v in raw if k.lower() == b"content-length"]
        chunked = any(k.lower() == b"transfer-encoding" for k, _ in raw)
        if lengths and chunked:
            return await _answer(send, 400, "a request may not carry both Content-Length and Transfer-Encoding")
        if len(lengths) > 1:
            return await _answer(send, 400, "a request may carry one Content-Length header")
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE") and not lengths and not chunked:
            return await self.app(scope, receive, send)
        if chunked:
            return await _answer(send, 411, "a request body needs a Content-Length header on this server")
        try:
            size = int(lengths[0]) if lengths else 0
            if size < 0 or not lengths[0].strip().isdigit():
                raise ValueError
        except ValueError:
            return await _answer(send, 400, "bad Content-Length")
        client = (scope.get("client") or ("unknown",))[0]
        upload = scope.get("path", "").rstrip("/").endswith(UPLOAD_PATHS)
        if not upload and size > MAX_JSON_BYTES:
            return await _answer(send, 413, f"request body too large ({size:,} bytes; at most {MAX_JSON_BYTES:,} "
                                            "outside an upload)")
        reason = self.budget.refusal(client, size)
        if reason:
            return await _answer(send, 413, reason)
        body = _Body(self, size, receive, send, upload)
        self.budget.start(client, size, upload)
        try:
            await self.app(scope, body.receive, body.send)
        except Exception as err:
            if not body.cut and type(err).__name__ != "ClientDisconnect":
                raise  # the app's own error; a client gone mid-body (cut off here or hung up) is not one
        finally:
            self.budget.finish(client, size, upload, body.kept_paths())


class _Body:
    """One request's body as it arrives: bytes counted against the declared length, and a deadline from the
    minimum rate (limits.min_rate_kb per second on average, after limits.grace_s). Past either, the client
    gets the refusal and the app a disconnect."""

    def __init__(self, gate: UploadGate, size: int, receive, send, upload: bool):
        self.gate, self.size, self._receive, self._send, self.upload = gate, size, receive, send, upload
        self.got, self.started, self.cut, self.status, self.body = 0, gate.clock(), False, 0, []
        self.answered = self.done = False

    def deadline(self) -> float:
        limits = self.gate.budget.limits
        return self.started + limits.grace_s + self.got / (limits.min_rate_kb * 1024)

    async def receive(self):
        import asyncio
        if self.cut:
            return {"type": "http.disconnect"}
        if self.done:  # the body is in: later receives wait for a disconnect (streamed answers), unbounded
            return await self._receive()
        wait = self.deadline() - self.gate.clock()
        try:
            message = await asyncio.wait_for(self._receive(), timeout=max(wait, 0.001))
        except asyncio.TimeoutError:
            return await self._cut(408, self._slow())
        if message.get("type") == "http.request":
            self.got += len(message.get("body", b""))
            if self.got > self.size:
                return await self._cut(413, f"request body larger than its Content-Length ({self.size:,} bytes)")
            self.done = not message.get("more_body", False)
            if self.gate.clock() > self.deadline() and not self.done:
                return await self._cut(408, self._slow())
        return message

    def _slow(self) -> str:
        return (f"request body too slow: under {self.gate.budget.limits.min_rate_kb:g} KB/s on average; "
                "it held upload room other visitors need")

    async def _cut(self, status: int, text: str):
        self.cut = True
        if not self.answered:
            self.answered = True
            await _answer(self._send, status, text)
        return {"type": "http.disconnect"}

    async def send(self, message):
        if self.cut:
            return  # the client already has the refusal
        if message["type"] == "http.response.start":
            self.answered, self.status = True, message["status"]
        elif self.upload and message["type"] == "http.response.body" and self.status == 200:
            self.body.append(message.get("body", b""))
        await self._send(message)

    def kept_paths(self) -> list[str] | None:
        return _paths(b"".join(self.body)) if self.upload and self.status == 200 and not self.cut else None


# ------------------------------------------------------------------------------------------ gradio's routes
# gradio mounts about 80 routes. The dashboard needs only these (audited in tests/test_security_http.py, which
# fails when gradio adds a route, so each new one is looked at); every other /gradio_api route, and gradio's
# login, logout and monitoring pages, answer 404 before gradio sees the request. Closed, among others:
# process_recording (kept every body it spooled), vibe-edit/vibe-code (edits the app's code), run-history,
# proxy=, custom_component, stream (webcam streaming), component_server, dev/reload, token, monitoring.
OPEN_GET = re.compile(r"/gradio_api/(info/?|openapi\.json|file=.+|file/.+|heartbeat/[^/]+|queue/data|queue/status"
                      r"|upload_progress|call/(v2/)?[^/]+/[^/]+|startup-events|theme\.css|app_id/?|deep_link"
                      r"|login_check/?)")
OPEN_POST = re.compile(r"/gradio_api/(queue/join|upload|cancel|reset/?|(call/v2|call|run|api)/[^/]+/?)")
CLOSED_PAGES = re.compile(r"/(monitoring(/.*)?|login/?|logout/?)")
MAX_JSON_BYTES = 2 << 20  # a request body that is not an upload (event payloads name uploaded files, never hold them)


def route_open(method: str, path: str) -> bool:
    """Whether the dashboard serves `method path` at all (gradio's own checks come after)."""
    if method in ("GET", "HEAD"):
        if path.startswith("/gradio_api/") or path == "/gradio_api":
            return bool(OPEN_GET.fullmatch(path))
        return not CLOSED_PAGES.fullmatch(path)
    if method == "OPTIONS":
        return True  # CORS preflight: answered by the CORS middleware, never a handler
    return bool(OPEN_POST.fullmatch(path))


def _paths(body: bytes) -> list[str] | None:
    import json
    try:
        paths = json.loads(body)
    except ValueError:
        return None
    return [p for p in paths if isinstance(p, str)] if isinstance(paths, list) else None


async def _answer(send, status: int, text: str) -> None:
    data = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close"),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})

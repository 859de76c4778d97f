"""Issue 19, items 1, 2 and 5: the upload gate counts bytes as they arrive whatever the headers say, refuses a
request with both Content-Length and Transfer-Encoding, cuts off bodies slower than a minimum rate, and every
route gradio mounts is either needed by the dashboard or closed (audited here). Loopback only.

The gate is driven at the ASGI level with a scripted body and a scripted clock (each message says how many
seconds passed before it), so the rate rules are tested at known points of progress, never against a timer.
"""
from __future__ import annotations

import asyncio
import re
import socket
import urllib.parse
from pathlib import Path

import httpx
import pytest

from dfdet.uploads import UploadBudget, UploadGate, UploadLimits, route_open
from test_reliability_helpers import deadline, serve

MB = 2 ** 20


class Script:
    """A client's body as (seconds before it, bytes) steps; after the last step it goes silent (hangs)."""

    def __init__(self, steps: list[tuple[float, bytes]], ends: bool = True):
        self.steps, self.now, self.ends = list(steps), 0.0, ends  # ends: the last step closes the body

    def clock(self) -> float:
        return self.now

    async def receive(self):
        if not self.steps:
            await asyncio.Event().wait()  # silent for good
        wait, data = self.steps.pop(0)
        self.now += wait
        return {"type": "http.request", "body": data, "more_body": bool(self.steps) or not self.ends}


def drive(headers: dict, script: Script, limits: UploadLimits | None = None, path: str = "/gradio_api/upload",
          listen_after: bool = False):
    """One request through the gate to an app that reads the whole body (as gradio's upload parser does) and
    answers 200. Returns (status, text, bytes the app read, app called, the budget)."""
    seen = {"bytes": 0, "called": False, "disconnect": False}

    async def app(scope, receive, send):
        seen["called"] = True
        while True:
            m = await receive()
            if m["type"] == "http.disconnect":
                seen["disconnect"] = True
                raise ConnectionResetError("client gone")  # as starlette's ClientDisconnect ends a handler
            seen["bytes"] += len(m.get("body", b""))
            if not m.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b'["/nowhere/x.png"]'})
        if listen_after:
            assert (await receive())["type"] == "http.disconnect"
            seen["listened"] = True

    sent = []

    async def send(message):
        sent.append(message)
    budget = UploadBudget(limits or UploadLimits(client_mb=100, total_mb=1000), "/nonexistent-upload-folder")
    gate = UploadGate(app, budget, clock=script.clock)
    scope = {"type": "http", "method": "POST", "path": path, "client": ("203.0.113.5", 1),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    asyncio.run(asyncio.wait_for(gate(scope, script.receive, send), 30))
    status = next((m["status"] for m in sent if m["type"] == "http.response.start"), 0)
    text = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body").decode()
    return status, text, seen, budget


# ------------------------------------------------------------------------------------------------ item 1
def test_a_request_with_both_content_length_and_transfer_encoding_is_refused():
    status, text, seen, _ = drive({"Content-Length": "10", "Transfer-Encoding": "chunked"},
                                  Script([(0, b"x" * MB)] * 3))
    assert status == 400 and "both Content-Length and Transfer-Encoding" in text and not seen["called"]


def test_two_content_lengths_are_refused():
    assert first_status([(b"content-length", b"10"), (b"content-length", b"5")]) == 400


def first_status(headers) -> int:
    sent = []

    async def app(scope, receive, send):
        raise AssertionError("never reached")

    async def send(m):
        sent.append(m)
    gate = UploadGate(app, UploadBudget(UploadLimits(), "/nonexistent"))
    asyncio.run(gate({"type": "http", "method": "POST", "path": "/gradio_api/upload", "client": ("h", 1),
                      "headers": headers}, None, send))
    return sent[0]["status"]


def test_bytes_are_counted_as_they_arrive_and_a_body_past_its_length_is_cut_off():
    """The red team's bypass: a body longer than its declared length (chunked under a Content-Length) was
    read in full; 546 MB on disk against a 200 MB limit. Now the app never reads past the declared length."""
    status, text, seen, budget = drive({"Content-Length": str(MB)}, Script([(0, b"x" * MB)] * 20))
    assert status == 413 and "larger than its Content-Length" in text
    assert seen["bytes"] <= MB and seen["disconnect"]
    assert budget.total_bytes() == 0 and budget.uploads_in_flight == 0  # the reservation is released


def test_an_honest_body_still_passes():
    status, _, seen, budget = drive({"Content-Length": str(3 * MB)}, Script([(0.1, b"x" * MB)] * 3))
    assert status == 200 and seen["bytes"] == 3 * MB and budget.total_bytes() == 0


# ------------------------------------------------------------------------------------------------ item 5
def test_a_trickling_body_is_cut_off_and_releases_its_budget():
    """18 sockets that declared 2,000 MB and sent a trickle blocked every upload for 50 s. A body must keep a
    minimum average rate after a short grace; the script says 1 KB every 5 s (0.2 KB/s)."""
    limits = UploadLimits(client_mb=100, total_mb=1000, min_rate_kb=32, grace_s=10)
    status, text, seen, budget = drive({"Content-Length": str(50 * MB)}, Script([(5, b"x" * 1024)] * 100), limits)
    assert status == 408 and "too slow" in text and seen["disconnect"]
    assert seen["bytes"] <= 4 * 1024  # cut at the first message past 10 s + 3 KB / 32 KB/s
    assert budget.total_bytes() == 0


def test_a_silent_body_is_cut_off_at_its_deadline():
    """A client that sends its headers and then nothing: the wait for the next byte ends at the deadline
    (grace 0.2 s here; the script's clock stands still, so the deadline is the grace itself)."""
    limits = UploadLimits(client_mb=100, total_mb=1000, min_rate_kb=32, grace_s=0.2)
    status, text, seen, budget = drive({"Content-Length": str(10 * MB)}, Script([(0, b"x" * 100)], ends=False),
                                       limits)
    assert status == 408 and "too slow" in text and seen["bytes"] == 100 and budget.total_bytes() == 0


def test_once_the_body_is_in_a_long_wait_for_the_client_is_not_cut():
    """A streamed answer listens for the client's disconnect for as long as it streams: no rate applies then."""
    limits = UploadLimits(client_mb=100, total_mb=1000, min_rate_kb=32, grace_s=0.2)
    status, _, seen, _ = drive({"Content-Length": "100"}, Listened([(0, b"x" * 100)]), limits,
                               path="/gradio_api/queue/join", listen_after=True)
    assert status == 200 and seen.get("listened")


class Listened(Script):
    """The body, then (after a long wait, as a streamed answer has) the client leaves."""

    async def receive(self):
        if self.steps:
            return await super().receive()
        self.now += 1000
        return {"type": "http.disconnect"}


# ------------------------------------------------------------------------------------------------ item 2
@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_cfg, shared):
    tmp = tmp_path_factory.mktemp("http")
    mp = pytest.MonkeyPatch()
    mp.setenv("GRADIO_TEMP_DIR", str(tmp / "gradio"))
    mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    s = serve(tmp, tiny_cfg)
    yield s
    s.close()
    mp.undo()


@pytest.fixture(autouse=True)
def _gradio_tmp():
    yield  # one server per module keeps one upload folder


def mounted_routes(app) -> set[tuple[str, str]]:
    """(method, path template) of every route the gradio app mounts, included routers unfolded."""
    found = set()

    def walk(routes, prefix=""):
        for r in routes:
            sub = getattr(getattr(r, "original_router", None), "routes", None) or getattr(r, "routes", None)
            path = prefix + (getattr(r, "path", "") or "")
            if sub:
                walk(sub, path)
            else:
                for m in getattr(r, "methods", None) or ["GET"]:
                    found.add((m, path))
    walk(app.routes)
    return found


def example(template: str) -> str:
    """A concrete path for a route template: each {param} filled in (a :path one with two segments)."""
    import re
    return re.sub(r"\{[^}:]+:path\}", "a/b.png", re.sub(r"\{[^}:]+\}", "x1", template))


NEEDED = {  # every route the dashboard serves, and why
    ("GET", "/"), ("HEAD", "/"), ("GET", "/config"), ("GET", "/config/"),  # the page and its layout
    ("GET", "/svelte/{path:path}"), ("GET", "/static/{path:path}"), ("GET", "/assets/{path:path}"),  # its code
    ("GET", "/favicon.ico"), ("GET", "/theme.css"), ("GET", "/gradio_api/theme.css"), ("GET", "/robots.txt"),
    ("GET", "/pwa_icon"), ("GET", "/pwa_icon/{size}"), ("GET", "/manifest.json"),
    ("GET", "/openapi.json"), ("HEAD", "/openapi.json"), ("GET", "/gradio_api/openapi.json"),  # the API page
    ("GET", "/gradio_api/info"), ("GET", "/gradio_api/info/"),
    ("GET", "/gradio_api/deep_link"), ("GET", "/gradio_api/app_id"), ("GET", "/gradio_api/app_id/"),
    ("GET", "/gradio_api/login_check"), ("GET", "/gradio_api/login_check/"), ("GET", "/gradio_api/startup-events"),
    ("GET", "/gradio_api/file={path_or_url:path}"), ("HEAD", "/gradio_api/file={path_or_url:path}"),  # outputs
    ("GET", "/gradio_api/file/{path:path}"),
    ("GET", "/gradio_api/heartbeat/{session_hash}"), ("GET", "/gradio_api/queue/data"),  # the event queue
    ("GET", "/gradio_api/queue/status"), ("POST", "/gradio_api/queue/join"), ("POST", "/gradio_api/cancel"),
    ("POST", "/gradio_api/reset"), ("POST", "/gradio_api/reset/"),
    ("POST", "/gradio_api/upload"), ("GET", "/gradio_api/upload_progress"),  # uploads (the gate bounds them)
    *(("POST", f"/gradio_api/{k}/{{api_name}}{s}") for k in ("api", "run", "call", "call/v2") for s in ("", "/")),
    ("GET", "/gradio_api/call/{api_name}/{event_id}"), ("GET", "/gradio_api/call/v2/{api_name}/{event_id}"),
}
MUST_BE_CLOSED = {("POST", "/gradio_api/process_recording"), ("POST", "/gradio_api/vibe-edit"),
                  ("POST", "/gradio_api/vibe-code"), ("GET", "/gradio_api/proxy={url_path:path}"),
                  ("GET", "/monitoring"), ("POST", "/gradio_api/component_server"),
                  ("POST", "/gradio_api/stream/{event_id}"), ("GET", "/gradio_api/dev/reload"),
                  ("POST", "/login"), ("POST", "/gradio_api/run-history/connect"), ("GET", "/gradio_api/token")}


def test_every_route_gradio_mounts_is_audited(served):
    """Open exactly the routes the dashboard needs; a route a gradio upgrade adds is closed until looked at."""
    routes = mounted_routes(served.app.server_app)
    assert len(routes) > 60 and MUST_BE_CLOSED <= routes
    open_now = {(m, t) for m, t in routes if route_open(m, example(t))}
    assert open_now == NEEDED & routes, (sorted(open_now - NEEDED), sorted((NEEDED & routes) - open_now))


def upload_files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def test_process_recording_and_the_other_unneeded_routes_answer_404(served):
    """POST /gradio_api/process_recording spooled every body to a temp file it never removed."""
    url = served.app.local_url
    before = upload_files(served.upload_dir)
    for _ in range(3):
        r = httpx.post(url + "gradio_api/process_recording", files={"video": ("v.mp4", b"\0" * 200_000, "video/mp4")},
                       timeout=30)
        assert r.status_code == 404 and r.text == "not served by this app"
    for method, path in (("POST", "gradio_api/vibe-edit"), ("GET", "monitoring"), ("GET", "gradio_api/proxy=x"),
                         ("POST", "gradio_api/component_server"), ("GET", "gradio_api/dev/reload")):
        assert httpx.request(method, url + path, timeout=30).status_code == 404, path
    assert upload_files(served.upload_dir) == before
    assert httpx.get(url, timeout=30).status_code == 200  # the page itself
    assert httpx.get(url + "gradio_api/info", timeout=30).status_code == 200
    up = httpx.post(url + "gradio_api/upload", files={"files": ("a.png", b"\x89PNG" + b"\0" * 100, "image/png")},
                    timeout=30)
    assert up.status_code == 200 and up.json()[0].startswith(str(served.upload_dir))


def raw_request(url: str, head: str, body: bytes = b"") -> bytes:
    parts = urllib.parse.urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as s:
        s.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        answer = b""
        with deadline(60):  # the answer comes from the headers alone; the body is offered after it
            while b"\r\n\r\n" not in answer and (chunk := s.recv(65536)):
                answer += chunk
            # ...and the whole answer body before offering ours: a server that closes without reading it may
            # reset the connection, and a reset discards what was not yet read (the answer's text, often a
            # packet of its own).
            head_end = answer.find(b"\r\n\r\n") + 4
            length = re.search(rb"(?im)^content-length:\s*(\d+)", answer[:head_end])
            while length and len(answer) - head_end < int(length.group(1)) and (chunk := s.recv(65536)):
                answer += chunk
            try:
                s.sendall(body)
                while chunk := s.recv(65536):
                    answer += chunk
            except OSError:  # the server closed the connection without reading the body: what it should do
                pass
    return answer


def test_both_headers_over_the_wire_are_refused_before_a_byte_is_stored(served):
    url = served.app.local_url
    before = upload_files(served.upload_dir)
    chunk = b"\0" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(16)) + b"0\r\n\r\n"
    head = ("POST /gradio_api/upload HTTP/1.1\nHost: x\nContent-Type: multipart/form-data; boundary=b\n"
            "Content-Length: 100\nTransfer-Encoding: chunked\nConnection: close\n")
    answer = raw_request(url, head, body)
    assert answer.startswith(b"HTTP/1.1 400") and b"both Content-Length and Transfer-Encoding" in answer, answer[:200]
    assert upload_files(served.upload_dir) == before
    assert served.app.upload_budget.total_bytes() == sum(served.app.upload_budget.kept_by_client.values())


def test_a_large_body_outside_an_upload_is_refused_by_its_length(served):
    head = ("POST /gradio_api/queue/join HTTP/1.1\nHost: x\nContent-Type: application/json\n"
            f"Content-Length: {3 * MB}\nConnection: close\n")
    answer = raw_request(served.app.local_url, head)  # not one byte of the body sent: refused at the headers
    assert answer.startswith(b"HTTP/1.1 413") and b"outside an upload" in answer


def test_status_names_no_server_folder(served):
    """/status showed the server's checkpoint path (and every refused folder's)."""
    bad = served.checkpoints / "broken"
    bad.mkdir(exist_ok=True)
    (bad / "dfdet.json").write_text("{")
    served.session.startup.load_models(clip=served.session.bank.clip)
    banner, details = served.client.predict(api_name="/status")
    text = banner + details
    assert "checkpoints from checkpoints" in text and "broken" in text, text  # names stay
    assert str(served.checkpoints.parent) not in text and "/tmp" not in text, text


def test_a_client_that_hangs_up_mid_body_leaves_no_traceback():
    """A real hang-up (not a cut by the gate) ends the app with starlette's ClientDisconnect: the gate ends the
    request quietly (the server log showed one traceback per hang-up) and releases its bytes."""
    class ClientDisconnect(Exception):
        pass

    async def app(scope, receive, send):
        await receive()
        raise ClientDisconnect()

    async def receive():
        return {"type": "http.request", "body": b"x" * 10, "more_body": True}

    async def send(m):
        raise AssertionError("nothing is sent to a client that is gone")
    budget = UploadBudget(UploadLimits(), "/nonexistent")
    gate = UploadGate(app, budget)
    asyncio.run(gate({"type": "http", "method": "POST", "path": "/gradio_api/upload", "client": ("h", 1),
                      "headers": [(b"content-length", b"100")]}, receive, send))
    assert budget.total_bytes() == 0 and budget.uploads_in_flight == 0
